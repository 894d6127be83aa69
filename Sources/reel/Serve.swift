import ArgumentParser
import Foundation
import Logging
import ReelCore
import ReelCPU
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
        """
    )

    @OptionGroup var models: ModelOptions
    @OptionGroup var backendOptions: BackendOptions

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port).")
    var port = 8080
    @Option(help: "Sessions generating at once on the device.")
    var maxSessions = 1
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

    mutating func validate() throws {
        if maxSessions <= 0 { throw ValidationError("--max-sessions must be positive, got \(maxSessions).") }
        if maxQueued < 0 { throw ValidationError("--max-queued must not be negative, got \(maxQueued).") }
        if !(idleTimeout > 0) { throw ValidationError("--idle-timeout must be positive, got \(idleTimeout).") }
        if !(0...65535).contains(port) { throw ValidationError("--port must be in 0...65535, got \(port).") }
        if !(1...100).contains(quality) { throw ValidationError("--quality must be in 1...100, got \(quality).") }
        if !(inputTimeout > 0) { throw ValidationError("--input-timeout must be positive, got \(inputTimeout).") }
        if maxPromptBytes <= 0 { throw ValidationError("--max-prompt-bytes must be positive, got \(maxPromptBytes).") }
        if let maxSeconds, !(maxSeconds > 0) { throw ValidationError("--max-seconds must be positive, got \(maxSeconds).") }
    }

    func run() async throws {
        let files: ModelFiles
        do { files = try models.resolve() } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
        let geometry = try video.geometry(folderSize: files.size)
        let (width, height) = (geometry.width, geometry.height)
        let fps = try video.framesPerSecond(folderFPS: files.fps)
        var logger = Logger(label: "reel.serve")
        logger.logLevel = .info
        let model: LoadedModel
        let device: String
        do {
            let backend = try backendOptions.make()
            let decoderDevice = backendOptions.decodeDevice.flatMap { $0 == backendOptions.device ? nil : ", decoder on cuda:\($0)" } ?? ""
            device = (backend as? CPUBackend).map { "cpu (\($0.threads) threads)" } ?? "cuda:\(backendOptions.device)" + decoderDevice
            // With an encoder, sessions take video and image inputs (video-to-video, image-to-video).
            model = try LoadedModel.load(files: files, encoder: LoadedModel.hasEncoder(files), backend: backend,
                                         decodeBackend: try backendOptions.makeDecodeBackend(), dtype: backendOptions.storageType,
                                         fp8: models.fp8)
        } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
        if !(model.dit.backend is CPUBackend) {
            // GPU kernels compiled and algorithms chosen now, each model alone, not by the first video.
            let t0 = Date()
            logger.info("reel serve: warming up at \(width)x\(height) (compiling kernels, choosing GPU algorithms)")
            do { try await model.warmUp(width: width, height: height) } catch let error as ReelError {
                printError("warm-up failed: \(error)")
                throw ExitCode.failure
            }
            logger.info("reel serve: warm in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s")
        }
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
        config.deviceName = device
        let server = try ReelServer(manager: SessionManager(model: model, config: config))
        let inputs = model.makeEncoder == nil ? "prompts only: the decoder file has no encoder" : "video, camera and image inputs"
        let dit = "DiT \(model.dit.config.layers) layers, dim \(model.dit.config.dim)"
        logger.info("reel serve: http://\(host):\(port)/ (\(dit); decoder \(model.decoderName); \(inputs))")
        try await server.run(host: host, port: port, logger: logger)
    }
}
