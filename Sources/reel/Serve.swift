import ArgumentParser
import Foundation
import Logging
import ReelCore
import ReelCPU
import ReelCUDA
import ReelModels
import ReelPipeline
import ReelServer

/// `reel serve`: the live studio (web page), a WebSocket API and an HTTP API over one loaded model.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the live studio page, the WebSocket API and the HTTP API.",
        discussion: """
        Open http://HOST:PORT/ for the studio; the API is described at /openapi.json. With an encoder in the \
        model (the shipped tiny model has one), the studio also takes the camera, a video file or an image as input. Each session has its \
        own generator and KV cache over the shared model; --max-sessions generate at once, --max-queued \
        wait (their clients are told their place), more are refused. SIGINT or SIGTERM stops every session \
        and exits.

        On a network: it listens on 127.0.0.1 unless --host says otherwise (--host 0.0.0.0: every interface). With an \
        API key (--api-key, REEL_API_KEY or --api-key-file), the API and /metrics need `Authorization: Bearer KEY` \
        (the WebSocket also takes ?key=KEY; the page takes ?key=KEY in its address, or asks); the page, \
        /openapi.json and /healthz stay open. TLS: put a reverse proxy in front (docs/deploy.md).

        Memory: buffers over 256 KiB get pages of their own, given back when freed, so that the resident size does \
        not creep up with each session; REEL_HEAP_POLICY overrides it (`system` for glibc's defaults, or e.g. \
        `mmap-threshold=1M,arenas=2`; docs/deploy.md, "Soak").
        """
    )

    @OptionGroup var models: ModelOptions
    @OptionGroup var backendOptions: BackendOptions

    @Option(help: "Address to listen on (0.0.0.0: every interface; then set an API key).")
    var host = "127.0.0.1"
    @OptionGroup(title: "Access") var access: AccessOptions
    @Option(help: "Port to listen on (0: any free port).")
    var port = 8080
    @Option(help: "Sessions generating at once on the device (on each engine with --session-devices).")
    var maxSessions = 1
    @Option(help: ArgumentHelp(
        "Spread sessions over engines: 0,1,2,3 puts one engine (the whole model) on each device; 0+1,2+3 puts one on "
            + "each group of devices joined by +, its DiT spread over them by sequence parallelism (exact, as --devices). "
            + "Every new session goes to the least busy engine; /metrics reports each group's and device's sessions and "
            + "memory. With --backend cpu: in-process CPU devices.",
        discussion: "A group's size must divide the DiT's attention heads (12 for Wan 1.3B, 40 for 14B). docs/multi-gpu.md",
        valueName: "devices"), transform: { try SessionGroups(parsing: $0) })
    var sessionDevices: SessionGroups?
    @Option(help: "Sessions waiting for a slot before requests are refused.")
    var maxQueued = 8
    @Option(help: "Seconds after which a paused or ended session is reclaimed.")
    var idleTimeout = 300.0
    @OptionGroup(title: "Default video") var video: VideoOptions
    @Option(help: "Longest prompt in UTF-8 bytes.")
    var maxPromptBytes = 2000
    @Option(help: "Longest session in seconds of video (default: live sessions run until stopped).")
    var maxSeconds: Double?
    @Option(help: "JPEG quality of the live frames (1-100).")
    var quality = 80
    @Option(help: "Seconds a live input may send no frame (with no output sent to it) before its session fails.")
    var inputTimeout = 15.0
    @Flag(help: ArgumentHelp("Sessions show a moving test pattern made in real time instead of the model's video "
                             + "(to measure the studio's JPEG and H.264 streams; docs/streaming.md). The model still loads."))
    var testPattern = false
    @Option(help: ArgumentHelp("Fail every Nth session with an injected device out-of-memory error "
                                   + "(soak tests; 0: none).", visibility: .private))
    var injectOomEvery = 0

    mutating func validate() throws {
        if maxSessions <= 0 { throw ValidationError("--max-sessions must be positive, got \(maxSessions).") }
        if maxQueued < 0 { throw ValidationError("--max-queued must not be negative, got \(maxQueued).") }
        if !(idleTimeout > 0) { throw ValidationError("--idle-timeout must be positive, got \(idleTimeout).") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535, got \(port).") }
        if !(1...100).contains(quality) { throw ValidationError("--quality must be in 1...100, got \(quality).") }
        if !(inputTimeout > 0) { throw ValidationError("--input-timeout must be positive, got \(inputTimeout).") }
        if maxPromptBytes <= 0 { throw ValidationError("--max-prompt-bytes must be positive, got \(maxPromptBytes).") }
        if injectOomEvery < 0 {
            throw ValidationError("--inject-oom-every must not be negative, got \(injectOomEvery).")
        }
        if let maxSeconds, !(maxSeconds > 0) { throw ValidationError("--max-seconds must be positive, got \(maxSeconds).") }
        if let sessionDevices {
            let o = backendOptions
            if o.devices != nil || o.decodeDevice != nil || o.encodeDevice != nil || o.textDevice != nil || o.pipeline != .exact {
                throw ValidationError("--session-devices \(sessionDevices) places whole engines (each group's DiT spread "
                                      + "by --session-devices itself); it does not combine with --devices, --pipeline, "
                                      + "--decode-device, --encode-device or --text-device yet.")
            }
            if o.gpuMemory != nil, sessionDevices.groups.contains(where: { $0.count > 1 }) {
                throw ValidationError("--gpu-memory places a model on one device; the groups of --session-devices "
                                      + "\(sessionDevices) spread the DiT (give one device an engine, or no cap).")
            }
        }
        if backendOptions.pipeline != .exact {
            throw ValidationError("reel serve runs LongLive's exact schedule; --pipeline \(backendOptions.pipeline.rawValue) "
                                  + "is for reel generate and reel bench.")
        }
        try access.validate()
        _ = try Self.heapPolicy()   // REEL_HEAP_POLICY, checked before the model loads
    }

    func run() async throws {
        var logger = Logger(label: "reel.serve")
        logger.logLevel = .info
        // Before the model loads and the sessions' threads allocate: the heap's settings hold for what comes after.
        let heapPolicy = try Self.heapPolicy()
        do { try heapPolicy.apply() } catch {
            logger.warning("reel serve: heap policy \(heapPolicy) not applied: \(error)")
        }
        logger.info("reel serve: heap policy \(heapPolicy)")
        let files: ModelFiles
        do { files = try models.resolve() } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
        // The DiT's shapes (headers only) pick the blocks: the default size must be one the model can make, and a
        // LongLive 2.0 model plays at 24 fps unless told otherwise.
        let ditConfig: WanDiTConfig
        let geometry: BlockGeometry
        do {
            ditConfig = try files.ditConfig(backend: CPUBackend())
            geometry = try video.geometry(folderSize: files.size).matching(ditConfig)
        } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
        let (width, height) = (geometry.width, geometry.height)
        let fps = try video.framesPerSecond(folderFPS: files.fps ?? (ditConfig.runsLongLive2 ? 24 : nil))
        var engines: [LoadedModel] = []
        let device: String
        do {
            // With an encoder, sessions take video and image inputs (video-to-video, image-to-video).
            func load(on backend: any Backend, decodeBackend: (any Backend)?, encodeBackend: (any Backend)? = nil,
                      communicator: (any Communicator)?) throws -> LoadedModel {
                try LoadedModel.load(files: files, encoder: LoadedModel.hasEncoder(files), backend: backend,
                                     decodeBackend: decodeBackend, encodeBackend: encodeBackend, communicator: communicator,
                                     parallelism: backendOptions.parallelism.scheme, dtype: backendOptions.storageType,
                                     quantization: models.quantization, kvCache: models.kvCache, attention: models.attention,
                                     textBackend: backendOptions.makeTextBackend(),
                                     residency: backendOptions.residency(geometry: geometry))
            }
            if let sessionDevices {
                for group in sessionDevices.groups {
                    let (backend, communicator) = try backendOptions.makeEngineDevices(group)
                    engines.append(try load(on: backend, decodeBackend: nil, communicator: communicator))
                }
                device = engines.map { e in
                    e.dit.parallelism.map { "DiT over \($0.communicator.name)" } ?? e.dit.backend.name
                }.joined(separator: ", ")
            } else {
                let backend = try backendOptions.make()
                if backendOptions.encodeDevice != nil, !LoadedModel.hasEncoder(files) {
                    throw ReelError.input("--encode-device places the input encoder, but the model has none (no "
                                          + "encoder.* weights in its TAEHV file)")
                }
                let communicator = try backendOptions.makeCommunicator()
                let model = try load(on: backend, decodeBackend: try backendOptions.makeDecodeBackend(),
                                     encodeBackend: try backendOptions.makeEncodeBackend(beside: backend),
                                     communicator: communicator)
                engines.append(model)
                let decoderDevice = model.decodeStream.device.isSame(as: backend.device)
                    ? "" : ", decoder on \(model.decodeStream.device.name)"
                device = (communicator.map { "DiT over \($0.name) (\(backendOptions.parallelism.rawValue) parallel)" }
                    ?? (backend as? CPUBackend).map { "cpu (\($0.threads) threads)" }
                    ?? "cuda:\(backendOptions.device)") + decoderDevice
                let placed = "DiT on \(backend.device.name), text encoder on \(model.prompts.textEncoder.backend.device.name), "
                    + "decoder on \(model.decodeStream.device.name)"
                    + (model.makeEncoder == nil ? "" : ", input encoder on \(model.encodeStream.device.name)")
                logger.info("reel serve: \(placed)")
            }
        } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
        if let plan = engines[0].placement?.plan {
            logger.info("reel serve: \(plan.description)")
            logger.info("reel serve: sessions larger than \(width)x\(height) are refused when the cap cannot hold them")
        }
        for model in engines where model.prompts.textEncoder.backend !== model.dit.backend {
            // The text encoder off the DiT's device: each new prompt pays its encode time (a prompt switch too).
            do {
                _ = try model.context(for: "a red circle moves left on a blue background")
                if let seconds = model.prompts.lastEncodeSeconds {
                    let (name, ms) = (model.prompts.textEncoder.backend.name, String(format: "%.0f", seconds * 1000))
                    logger.info("reel serve: text encoder on \(name): a new prompt takes \(ms) ms to encode (each session's new prompts do)")
                }
            } catch let error as ReelError {
                printError("text encoder failed: \(error)")
                throw ExitCode.failure
            }
        }
        for model in engines where !(model.dit.backend is CPUBackend) {
            // GPU kernels compiled and algorithms chosen now, each model alone, not by the first video.
            let t0 = Date()
            let what = "\(model.dit.backend.name) at \(width)x\(height) (compiling kernels, choosing GPU algorithms)"
            logger.info("reel serve: warming up \(what)")
            do { try await model.warmUp(width: width, height: height) } catch let error as ReelError {
                printError("warm-up failed: \(error)")
                throw ExitCode.failure
            }
            logger.info("reel serve: warm in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s")
        }
        let model = engines[0]
        var config = ServerConfiguration()
        config.maxActiveSessions = maxSessions
        config.maxQueuedSessions = maxQueued
        config.idleTimeout = .seconds(idleTimeout)
        config.defaultWidth = width
        config.defaultHeight = height
        config.maxPixels = max(config.maxPixels, width * height)
        config.defaultFPS = fps
        config.defaultNoiseScale = files.noiseScale ?? config.defaultNoiseScale
        config.maxPromptBytes = maxPromptBytes
        config.maxSeconds = maxSeconds
        config.jpegQuality = quality
        config.inputStallSeconds = inputTimeout
        config.testPattern = testPattern
        config.deviceName = device
        config.faults = FaultInjection(outOfMemoryEvery: injectOomEvery)
        if injectOomEvery > 0 {
            logger.warning("reel serve: every \(injectOomEvery)th session fails with an injected out-of-memory error")
        }
        config.access = try access.policy()
        if !Self.isLoopback(host), config.access.apiKey == nil {
            logger.warning("""
                reel serve: listening on \(host) without an API key: anyone who reaches this port may use the device \
                (set --api-key-file or REEL_API_KEY)
                """)
        }
        if config.access.apiKey != nil {
            logger.info("reel serve: the API needs its key (/healthz and the page stay open)")
        }
        let server = try ReelServer(manager: SessionManager(engines: engines, config: config))
        let inputs = model.makeEncoder == nil ? "prompts only: the decoder file has no encoder"
            : ditConfig.runsLongLive2 ? "image inputs (no video-to-video: LongLive 2.0)" : "video, camera and image inputs"
        let dit = "DiT \(model.dit.config.layers) layers, dim \(model.dit.config.dim)"
            + (ditConfig.runsLongLive2 ? ", LongLive 2.0 (blocks of \(geometry.latentFramesPerBlock) latent frames)" : "")
        logger.info("reel serve: http://\(host):\(port)/ (\(dit); decoder \(model.decoderName); \(inputs))")
        try await server.run(host: host, port: port, logger: logger)
    }
}

extension Serve {
    /// The C heap's tuning: REEL_HEAP_POLICY (`system` for glibc's defaults, or e.g. `mmap-threshold=256K,arenas=2`),
    /// else `HeapPolicy.server`.
    static func heapPolicy(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> HeapPolicy {
        guard let text = environment["REEL_HEAP_POLICY"] else { return .server }
        do { return try HeapPolicy(parsing: text) } catch let error as HeapPolicy.ParseError {
            throw ValidationError("REEL_HEAP_POLICY: \(error)")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// Who may use the server: the API key, allowed origins, per-client rates.
struct AccessOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The key API requests must carry (also REEL_API_KEY). Visible to other users in `ps`: "
                               + "prefer REEL_API_KEY or --api-key-file.", valueName: "key"))
    var apiKey: String?
    @Option(help: ArgumentHelp("A file whose content (trailing newline removed) is the API key.", valueName: "path"))
    var apiKeyFile: String?
    @Option(name: .customLong("allow-origin"),
            help: ArgumentHelp("An origin (https://studio.example.com) whose pages may call the API; repeatable, * for any. "
                               + "The server's own origin is always allowed.", valueName: "origin"))
    var allowedOrigins: [String] = []
    @Flag(help: "Serve /metrics without the API key (for a scraper that holds none).")
    var metricsOpen = false
    @Option(help: "HTTP requests a second per client address, in bursts of two seconds' worth; more get 429 (0: no limit).")
    var requestRate = 100.0
    @Option(help: "WebSocket control messages a second per client address; more are refused (0: no limit).")
    var messageRate = 50.0

    func validate() throws {
        if apiKey != nil, apiKeyFile != nil { throw ValidationError("give the API key once: --api-key or --api-key-file.") }
        if let apiKey, apiKey.isEmpty { throw ValidationError("--api-key must not be empty.") }
        if !(requestRate >= 0) { throw ValidationError("--request-rate must not be negative, got \(requestRate).") }
        if !(messageRate >= 0) { throw ValidationError("--message-rate must not be negative, got \(messageRate).") }
        for origin in allowedOrigins where origin != "*" && !(origin.hasPrefix("http://") || origin.hasPrefix("https://")) {
            throw ValidationError("--allow-origin takes an origin such as https://studio.example.com (scheme and host, "
                                  + "no path) or *, got '\(origin)'.")
        }
        _ = try policy()   // the key file and REEL_API_KEY, checked before the model loads
    }

    /// The policy, its key read from --api-key, --api-key-file or REEL_API_KEY (in that order).
    func policy(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> AccessPolicy {
        var policy = AccessPolicy()
        if let apiKey {
            policy.apiKey = apiKey
        } else if let apiKeyFile {
            guard let text = try? String(contentsOfFile: apiKeyFile, encoding: .utf8) else {
                throw ValidationError("cannot read the API key file \(apiKeyFile).")
            }
            let key = text.trimmingCharacters(in: .newlines)
            if key.isEmpty { throw ValidationError("the API key file \(apiKeyFile) is empty.") }
            policy.apiKey = key
        } else if let key = environment["REEL_API_KEY"] {
            if key.isEmpty { throw ValidationError("REEL_API_KEY is set but empty; unset it or give it a key.") }
            policy.apiKey = key
        }
        policy.allowedOrigins = allowedOrigins
        policy.metricsOpen = metricsOpen
        policy.requestsPerSecond = requestRate
        policy.messagesPerSecond = messageRate
        return policy
    }
}
