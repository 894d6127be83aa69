import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelCUDA
import ReelIO
import ReelModels
import ReelPipeline

/// `reel bench`: end-to-end streaming speed of the real architectures with random weights.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure end-to-end streaming generation: FPS, DiT-only FPS, first frame, switch stall, memory.",
        discussion: """
        Builds the chosen DiT and decoder with random weights of the real architecture (no weights are \
        read), encodes nothing (a random prompt embedding stands in for the text encoder's output), and \
        streams --blocks blocks through the decoder into a null sink, with one prompt switch (KV-recache) \
        at --switch-block. Every figure is printed with the floor it is held against: the model's FLOPs \
        divided by the matrix-multiply rate measured on the same backend in the same run. \
        With REEL_PROFILE=1 (CUDA) it ends with the GPU time of each op of the measured stream and what \
        the device memory held at its peak (docs/perf-notes.md, "Profiling").
        """
    )

    /// A random-weight architecture by name, or a model folder of any recognised layout.
    enum Model: ExpressibleByArgument, Equatable {
        case wan1_3b, wan14b, small
        /// Wan2.2-TI2V-5B under LongLive 2.0's schedule, and a small model of its structure (48 channels).
        case wan5b, small5b
        case folder(String)

        init?(argument: String) {
            switch argument {
            case "1.3b": self = .wan1_3b
            case "14b": self = .wan14b
            case "small": self = .small
            case "5b": self = .wan5b
            case "5b-small": self = .small5b
            default: self = .folder(argument)
            }
        }

        var name: String {
            switch self {
            case .wan1_3b: "1.3b"
            case .wan14b: "14b"
            case .small: "small"
            case .wan5b: "5b"
            case .small5b: "5b-small"
            case .folder(let path): path
            }
        }

        /// The architecture of a named model (a folder's comes from its weights).
        var config: WanDiTConfig? {
            switch self {
            case .folder: nil
            case .wan1_3b: .wan1_3B
            case .wan14b: .wan14B
            case .small: WanDiTConfig(dim: 256, ffnDim: 512, heads: 2, layers: 4, textDim: 256)
            case .wan5b: .wan5B
            case .small5b: WanDiTConfig(dim: 256, ffnDim: 512, heads: 2, layers: 4, inChannels: 48, outChannels: 48, textDim: 256)
            }
        }

        /// Whether the model runs LongLive 2.0's schedule (`Bench+LongLive2`).
        var isLongLive2: Bool { self == .wan5b || self == .small5b }
    }

    enum DecoderChoice: String, ExpressibleByArgument, CaseIterable {
        case vae, tiny, none

        /// Random weights of this decoder on `stream` (a new streaming decoder per video) and its FLOPs per latent
        /// frame at `lh` x `lw` latents. `wan22`: for Wan2.2's latents (the Wan2.2 VAE; TAEHV as taew2_2).
        func random(on stream: any Backend, dtype: DType, lh: Int, lw: Int, wan22: Bool = false) throws
            -> (newDecoder: () -> (any VideoDecoder)?, latentFLOPs: Double) {
            switch self {
            case .vae:
                let config: WanVAEConfig = wan22 ? .wan22 : .wan21
                let model = try WanVAEDecoder.load(from: WanVAEDecoder.randomWeights(config, on: stream, dtype: dtype), on: stream,
                                                   dtype: dtype)
                return ({ StreamingVAEDecoder(model: model) }, ComputeCost.vaeDecodeLatentFrame(config, height: lh, width: lw))
            case .tiny:
                let (z, p) = wan22 ? (48, 2) : (16, 1)
                let weights = try TinyDecoder.randomWeights(latentChannels: z, patchSize: p, on: stream, dtype: dtype)
                let model = try TinyDecoder.load(from: weights, on: stream, dtype: dtype)
                return ({ StreamingTinyDecoder(model: model) },
                        TinyDecoder.flopsPerLatentFrame(latentChannels: z, patchSize: p, height: lh, width: lw))
            case .none:
                return ({ nil }, 0)
            }
        }
    }

    @Option(help: ArgumentHelp("DiT: 1.3b, 14b or small (random weights of that architecture), 5b or 5b-small (LongLive 2.0 with the Wan2.2 VAE, default 1280x704), or a model folder.",
                               discussion: "A folder of any layout --model reads elsewhere (docs/model-folders.md): its DiT, decoder and video size; prompts are encoded by its text encoder before timing starts."))
    var model: Model = .small
    @Option(help: "Base folder for the parts a LongLive, Self-Forcing or CausVid --model folder lacks (Wan2.1; LongLive 2.0: Wan2.2-TI2V-5B).")
    var base: String?
    @Option(help: "Decoder: vae (Wan2.1 VAE; Wan2.2's for 5b), tiny (TAEHV: taew2_1; taew2_2 for 5b), both of the real size, or none (DiT only).")
    var decoder: DecoderChoice = .vae
    @Option(help: ArgumentHelp("Same as --model FOLDER (kept for older scripts).", visibility: .hidden))
    var weights: String?
    @OptionGroup var size: SizeOption
    @Option(help: "Blocks to generate (12 video frames each; 32 for 5b).")
    var blocks = 10
    @Option(help: "Block at whose start the prompt switches (with KV-recache; 5b: a scene cut); 0 for none.")
    var switchBlock = 6
    @Option(help: "Blocks left out of the steady state at the start (the cache is filling).")
    var warmup = 4
    @Option(help: "Print device and host memory every this many blocks (0: only at the end), to show it stays flat.")
    var memoryEvery = 0
    @Option(help: ArgumentHelp("A prompt switch (with its recache) every this many blocks besides --switch-block, the two prompts taking turns (0: none).",
                               discussion: "For long runs with --memory-every: memory must stay flat across recaches too. Every switch block is left out of the per-block medians."))
    var switchEvery = 0
    @Option(help: ArgumentHelp("LongLive 1.0's denoising steps on the 1000-step grid, comma separated (default 1000,750,500,250).",
                               discussion: "Fewer steps make a block cheaper without changing what is cached or streamed: a long memory run fits in less device time. The floors follow the steps.",
                               valueName: "t1,t2,..."))
    var denoisingSteps: String?
    @OptionGroup var quantizationOptions: QuantizationOptions
    /// The DiT's quantized layers, nil for none (`--fp8` or `--int8`, `--fp8-layers`).
    var quantization: LinearQuantization? { quantizationOptions.quantization }
    /// ", FFN in INT8; floors at the bf16 rate" for the headline (`allLinears`: what every block linear reads as),
    /// then ", KV cache in FP8" with `--kv-cache fp8`.
    func quantizationNote(allLinears: String = "every block linear") -> String {
        (quantization.map { ", \($0.layers == .allLinears ? allLinears : "FFN") in \($0.format.name); floors at the bf16 rate" } ?? "")
            + (kvCache == .fp8 ? ", KV cache in FP8" : "") + (attention == .fp8 ? ", self-attention in FP8" : "")
    }
    @Option(name: .customLong("kv-cache"),
            help: ArgumentHelp("The DiT's self-attention KV cache in bf16 (the model's dtype; default) or fp8 (E4M3, a scale per token and head).",
                               valueName: "bf16|fp8"))
    var kvCache = KVCacheStorage.model
    @Option(help: ArgumentHelp("The DiT's self-attention in bf16 (the model's dtype; default) or fp8 (cuDNN's FP8 attention, per-tensor scales).",
                               valueName: "bf16|fp8"))
    var attention = AttentionPrecision.model
    @Flag(help: ArgumentHelp("Video-to-video (StreamDiffusionV2's schedule): input frames from memory, encoded, restyled, decoded.",
                             discussion: "Random encoder and decoder of the real size (--decoder tiny: TAEHV, vae: the Wan2.1 VAE); --blocks input blocks of 4 frames."))
    var input = false
    @Option(help: "Video-to-video: denoising steps a block (the first N of 700, 500, 400, 200).")
    var steps = 1
    @Option(help: ArgumentHelp("Video-to-video: the live input's frame rate for the latency run (0: no paced run).",
                               discussion: "After the throughput run (frames as fast as the pipeline takes them), a second run releases the frames at this rate, as a camera does, and measures each block's latency from its last frame's release."))
    var inputFPS = 30.0
    @Option(help: ArgumentHelp("With --pipeline block-pipeline: each device's DiT layers, e.g. 0-15,15-30 (default: "
                               + "balanced from each layer's measured time on the first device).", valueName: "ranges"))
    var layerRanges: String?
    @OptionGroup var backendOptions: BackendOptions

    /// The model folder asked for, by --model or the older --weights.
    var folderPath: String? {
        if case .folder(let path) = model { return path }
        return weights
    }

    mutating func validate() throws {
        if kvCache == .fp8 && (model.isLongLive2 || input) {
            throw ValidationError("--kv-cache fp8 is LongLive 1.0's cache: LongLive 2.0 (--model 5b) and --input (video-to-video) keep theirs in the model's dtype.")
        }
        if attention == .fp8 && (model.isLongLive2 || input || backendOptions.pipeline == .timestepForcing
                                 || backendOptions.pipeline == .blockPipeline) {
            throw ValidationError("--attention fp8 is measured by LongLive 1.0's plain bench: not with --model 5b, --input or --pipeline.")
        }
        if attention == .fp8 && backendOptions.parallelism == .tensor {
            throw ValidationError("--attention fp8 does not combine with --parallelism tensor (its attention runs in bf16).")
        }
        if backendOptions.gpuMemory != nil && (input || model.isLongLive2 || backendOptions.devices != nil) {
            throw ValidationError("--gpu-memory in reel bench places a model folder, or random weights of --model 1.3b, 14b "
                                  + "or small, on one device.")
        }
        if let folderPath, !FileManager.default.fileExists(atPath: folderPath) {
            throw ValidationError("--model: \(folderPath) is neither 1.3b, 14b, small, 5b, 5b-small nor an existing folder.")
        }
        if let base, !FileManager.default.fileExists(atPath: base) { throw ValidationError("--base: \(base) does not exist.") }
        if blocks < 2 { throw ValidationError("--blocks must be at least 2.") }
        if warmup < 0 || warmup >= blocks { throw ValidationError("--warmup must be in 0..<\(blocks).") }
        if switchBlock < 0 || switchBlock >= blocks { throw ValidationError("--switch-block must be in 0..<\(blocks).") }
        if switchEvery < 0 { throw ValidationError("--switch-every must be 0 (none) or a number of blocks, got \(switchEvery).") }
        if switchEvery > 0 || denoisingSteps != nil {
            if model.isLongLive2 || input || backendOptions.pipeline != .exact {
                throw ValidationError("--switch-every and --denoising-steps belong to LongLive 1.0's plain bench: not with --model 5b, --input or --pipeline.")
            }
        }
        _ = try schedule()
        if backendOptions.encodeDevice != nil && !input {
            throw ValidationError("--encode-device places the input encoder: reel bench runs one with --input.")
        }
        if input {
            if decoder == .none { throw ValidationError("--input needs an encoder and decoder: --decoder tiny (TAEHV) or vae (Wan2.1).") }
            if folderPath != nil || model.isLongLive2 { throw ValidationError("--input runs random weights: give --model 1.3b, 14b or small.") }
            if !(1...4).contains(steps) { throw ValidationError("--steps must be 1 to 4, got \(steps).") }
            if !(inputFPS >= 0 && inputFPS <= 240) { throw ValidationError("--input-fps must be 0 to 240, got \(inputFPS).") }
        }
    }

    func run() async throws {
        do { try await bench() } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
    }

    private func bench() async throws {
        if backendOptions.pipeline == .timestepForcing { return try await benchTimestepForcing() }
        if backendOptions.pipeline == .blockPipeline { return try benchBlockPipeline() }
        if input { return try await benchVideoToVideo() }
        if model.isLongLive2, let config = model.config { return try await benchLongLive2(config) }
        let backend = try backendOptions.make()
        let dtype = backendOptions.storageType
        let folder = try folderPath.map { try ModelFiles.resolve(model: $0, base: base) }
        let geometry = try size.geometry(folderSize: folder?.size)
        let (width, height) = (geometry.width, geometry.height)
        let (lh, lw) = (geometry.latentHeight, geometry.latentWidth)

        // Measured with --gpu-memory lifted: the probes' matrices are not the model's and are freed at once.
        let rate = try backendOptions.withoutCap(on: backend) { try Rates.matmul(backend, dtype: dtype) }
        print(String(format: "matmul rate measured on this backend: %.2f TFLOP/s (the compute floors below use it)", rate / 1e12))

        let t0 = Date()
        let dit: WanDiT, newDecoder: () -> (any VideoDecoder)?, first: WanDiT.PromptContext, second: WanDiT.PromptContext
        // The decoder's own stream, as LoadedModel makes one: decode runs beside the DiT on the device.
        var decodeStream = backend
        let decodeLatentFLOPs: Double
        var linkRate: Double?     // the host-to-device rate, measured when DiT blocks stream (--gpu-memory)
        if let folder {
            let loaded = try LoadedModel.load(files: folder, decoder: decoder != .none, backend: backend,
                                              decodeBackend: try backendOptions.makeDecodeBackend(),
                                              communicator: try backendOptions.makeCommunicator(),
                                              parallelism: backendOptions.parallelism.scheme, dtype: dtype, quantization: quantization,
                                              kvCache: kvCache, residency: backendOptions.residency(geometry: geometry))
            if let plan = loaded.placement?.plan {
                print(plan.description)
                if plan.streamedLayers > 0 {
                    let rate = try backendOptions.withoutCap(on: backend) { try Self.hostToDeviceRate(try backend.device.makeStream()) }
                    print(String(format: "host-to-device rate measured with page-locked memory: %.1f GB/s", rate / 1e9))
                    linkRate = rate
                }
            }
            dit = loaded.dit
            decodeStream = loaded.decodeStream
            newDecoder = decoder == .none ? { nil } : { loaded.newDecoder() }
            decodeLatentFLOPs = decoder == .none ? 0 : loaded.decoderFLOPs?(lh, lw) ?? 0
            first = try loaded.context(for: "a red circle moves left on a blue background")
            // A new prompt's encode, as a prompt switch pays it before its recache (the text encoder where the plan put it).
            let encodeStart = ContinuousClock.now
            second = try loaded.context(for: "a large green square bounces around on a white background")
            try backend.synchronize()
            print(String(format: "text encoder on %@: a new prompt encoded in %.0f ms (a prompt switch waits for it)",
                         loaded.prompts.textEncoder.backend.name, (ContinuousClock.now - encodeStart).seconds * 1000))
            print("reel bench on \(backend.name) (\(dtype)\(quantizationNote())): \(folderPath ?? "") (DiT \(dit.config.layers) layers, dim \(dit.config.dim)), "
                  + "decoder \(decoder == .none ? "none" : loaded.decoderName), \(width)x\(height), \(blocks) blocks, \(switchNote)")
            print(String(format: "model loaded and prompts encoded in %.1f s", Date().timeIntervalSince(t0)))
        } else {
            guard let config = model.config else { throw ReelError.input("no model folder and no architecture named") }
            print("reel bench on \(backend.name) (\(dtype)\(quantizationNote())): DiT \(model.name) (\(config.layers) layers, dim \(config.dim)), "
                  + "decoder \(decoder.rawValue), \(width)x\(height), \(blocks) blocks, \(switchNote)")
            // Under --gpu-memory the weights are made on the device with the cap lifted, then placed under it.
            let placed = try backendOptions.withoutCap(on: backend) {
                let weights = try WanDiT.randomWeights(config, on: backend, dtype: dtype)
                let plain = try backendOptions.makeCommunicator().map {
                    try WanDiT.loadParallel(backendOptions.parallelism.scheme, from: weights, heads: config.heads,
                                            communicator: $0, dtype: dtype)
                } ?? WanDiT.load(from: weights, heads: config.heads, backend: backend, dtype: dtype)
                return try placedUnderCap(try (quantization.map { try plain.quantized($0) } ?? plain).withKVCache(kvCache),
                                          backend: backend, geometry: geometry)
            }
            dit = placed.0
            linkRate = placed.1
            decodeStream = try backendOptions.makeDecodeBackend() ?? backend.makeStream()
            let random = try decoder.random(on: decodeStream, dtype: dtype, lh: lh, lw: lw)
            newDecoder = random.newDecoder
            decodeLatentFLOPs = random.latentFLOPs
            func prompt(_ seed: UInt64) throws -> WanDiT.PromptContext {
                try dit.encodePrompt(try backend.randomNormal([32, config.textDim], seed: seed, offset: 0, dtype: dtype))
            }
            first = try prompt(1)
            second = try prompt(2)
            print(String(format: "random weights built in %.1f s", Date().timeIntervalSince(t0)))
        }
        dit.attentionPrecision = attention
        let config = dit.config
        if let p = dit.parallelism {
            let gb = try p.blockWeightBytes().map { String(format: "%.2f", Double($0) / 1e9) }.joined(separator: ", ")
            print("DiT spread over \(p.communicator.name) by \(p.scheme.name) (its floors at \(p.replicas.count)x the rate); "
                  + "blocks' weights per device: \(gb) GB")
        }
        (backend as? MemoryReporting)?.resetPeakMemory()

        // A warm engine, as `reel serve` has after its start and a first session: kernels compiled and
        // GEMM / convolution algorithms chosen with each model alone (EngineWarmUp; timed beside the
        // other model's stream, the choices varied from run to run: docs/perf-notes.md, session 4), then
        // a throwaway stream of 6 blocks with a switch at block 5 running both models, as a first
        // session leaves the two streams' memory pools. It is released before the measured one starts:
        // its KV cache (3.45 GB for the 1.3B model) would otherwise count in the measured peak.
        try await EngineWarmUp.run(dit: dit, prompt: first, switchTo: second, decoder: newDecoder(), decodeStream: decodeStream,
                                   geometry: geometry)
        let parts = ModelParts(dit: dit, newDecoder: newDecoder, decodeStream: decodeStream)
        let schedule = try schedule()
        var request = PipelineRequest(geometry: geometry, latentFrames: 18, granularity: .latentFrame, decode: decoder != .none)
        request.schedule = schedule
        do {
            let warm = try Pipeline(model: parts, request: request, prompt: first, noise: PhiloxNoise(seed: 9)) { frame in
                frame == 15 ? second : nil
            }
            for try await _ in warm.chunks() {}
        }
        try backend.synchronize()
        try decodeStream.synchronize()
        let twoDevices = !decodeStream.device.isSame(as: backend.device)
        (backend as? MemoryReporting)?.resetPeakMemory()
        if twoDevices { (decodeStream as? MemoryReporting)?.resetPeakMemory() }
        if let gpu = backend as? CUDABackend, let profiler = gpu.profiler {  // REEL_PROFILE: time the measured stream only
            profiler.reset()
            if let decoder = decodeStream as? CUDABackend, decoder !== gpu { profiler.name("DiT", for: gpu); profiler.name("decoder", for: decoder) }
        }
        var measured = request
        measured.latentFrames = blocks * geometry.latentFramesPerBlock
        // The switch blocks (--switch-block, every --switch-every'th): the k-th switch goes to the second prompt when
        // k is odd and back to the first when it is even.
        let switches = switchBlocks()
        let n = geometry.latentFramesPerBlock
        // Optional so that the measured stream's KV cache and decoder are released before the decoder runs alone
        // (under --gpu-memory both would not fit beside a second decoder).
        var pipeline: Pipeline? = try Pipeline(model: parts, request: measured, prompt: first, noise: PhiloxNoise(seed: 0)) { frame in
            guard frame % n == 0, let k = switches.firstIndex(of: frame / n) else { return nil }
            return k % 2 == 0 ? second : first
        }
        let uploadedBefore = dit.weightStreaming?.bytesUploaded ?? 0
        let (arrivals, ditSeconds, recache, decodeSeconds, frames, firstFrame) = try await measure(pipeline!, geometry: geometry,
                                                                                                   backend: backend)
        let cacheBytes = pipeline!.generator.cacheBytes
        let kvTraffic = pipeline!.generator.cacheHostTraffic

        // Steady state: blocks after the warm-up, the switch block left out of per-block medians.
        let steady = Array(warmup..<blocks)
        let fps = steadyFPS(arrivals: arrivals, frames: frames, warmup: warmup)
        let plainBlocks = steady.filter { !switches.contains($0) }
        let ditMedian = median(plainBlocks.map { ditSeconds[$0] })
        let decodeMedian = median(plainBlocks.map { decodeSeconds[$0] })
        let tokensPerFrame = (lh / 2) * (lw / 2)
        // A DiT spread over N devices (--devices) has N times one device's rate (its exchange is the cost).
        let ditRate = rate * Double(dit.parallelism?.replicas.count ?? 1)
        let ditFloor = ComputeCost.ditBlock(config, schedule: schedule, tokensPerFrame: tokensPerFrame) / ditRate
        let vaeFloor = 3 * decodeLatentFLOPs / rate
        // End to end, decode overlaps generation only where the backend runs both at once; the
        // floor is the sum of both models' compute per block.
        // On two devices (--decode-device) the slower of the two bounds it.
        let e2eFloorFPS = 12 / (twoDevices ? max(ditFloor, vaeFloor) : ditFloor + vaeFloor)
        // A switch's cost: the median over the switch blocks of what each adds to its block's DiT time.
        let switchExtra = switches.isEmpty ? 0 : median(switches.map { ditSeconds[$0] }) - ditMedian

        print("")
        print("figure                          measured      floor         measured/floor")
        row("end-to-end FPS (steady state)", fps, e2eFloorFPS, unit: "fps", higherIsBetter: true)
        row("DiT-only FPS", 12 / ditMedian, 12 / ditFloor, unit: "fps", higherIsBetter: true)
        row("DiT per block", ditMedian * 1000, ditFloor * 1000, unit: "ms", higherIsBetter: false)
        if decoder != .none { row("decode per block (12 frames)", decodeMedian * 1000, vaeFloor * 1000, unit: "ms", higherIsBetter: false) }
        // The first frame needs the first block's denoising steps (its clean pass runs later) and
        // a quarter of one latent frame's decode (1 frame of 4).
        let firstForward: Double = ComputeCost.ditForward(config, queries: 3 * tokensPerFrame, keys: 3 * tokensPerFrame)
        let firstSteps = Double(schedule.denoisingSteps.count)
        let firstFloor: Double = firstForward * firstSteps / ditRate + decodeLatentFLOPs * 0.25 / rate
        row("time to first frame", (firstFrame ?? arrivals[0]) * 1000, firstFloor * 1000, unit: "ms", higherIsBetter: false)
        if !switches.isEmpty {
            let recacheFloor = ComputeCost.ditForward(config, queries: 9 * tokensPerFrame, keys: 12 * tokensPerFrame) / ditRate
            row(switches.count > 1 ? "prompt switch: recache (mean)" : "prompt switch: recache", recache / Double(switches.count) * 1000,
                recacheFloor * 1000, unit: "ms", higherIsBetter: false)
            print(String(format: "prompt switch adds %.0f ms to its block (%.2f of a block's DiT time)", switchExtra * 1000, switchExtra / ditMedian))
        }
        if let memory = (backend as? MemoryReporting)?.memoryStatistics() {
            print(String(format: "peak device memory %.2f GB (in use at the end %.2f GB, reserved %.2f GB)",
                         Double(memory.peak) / 1e9, Double(memory.inUse) / 1e9, Double(memory.reserved) / 1e9))
        }
        if twoDevices, let memory = (decodeStream as? MemoryReporting)?.memoryStatistics() {
            print(String(format: "decoder's device (%@): peak %.2f GB (in use at the end %.2f GB)", decodeStream.name,
                         Double(memory.peak) / 1e9, Double(memory.inUse) / 1e9))
        }
        // Spread over N devices (either scheme) each holds its heads' 1/N of the cache.
        let ranks = dit.parallelism?.ranks ?? 1
        let perDevice = ranks > 1 ? String(format: " (%.2f GB on each of %d devices)",
                                           Double(cacheBytes) / Double(ranks) / 1e9, ranks) : ""
        print(String(format: "KV cache %.2f GB%@; blocks %@", Double(cacheBytes) / 1e9, perDevice,
                     Self.blockTimes(ditSeconds) + " ms (DiT)"))
        if let line = Self.streamingReport(dit, uploadedBefore: uploadedBefore, kvTraffic: kvTraffic, blocks: blocks, rate: linkRate,
                                           ditMedian: ditMedian) { print(line) }
        if let profiler = (backend as? CUDABackend)?.profiler { print("\n" + (try profiler.report()), terminator: "") }
        pipeline = nil
        try backend.synchronize()
        if decoder != .none, let vae = newDecoder() { try decoderAlone(vae, stream: decodeStream, latentHeight: lh, latentWidth: lw, floor: vaeFloor) }
    }

    /// Per-block figures of a measured stream (`measure`).
    typealias StreamTimes = (arrivals: [Double], ditSeconds: [Double], recache: Double, decodeSeconds: [Double],
                             frames: [Int], firstFrame: Double?)

    /// Runs `pipeline` to its end and times it: each block's arrival on the host (from the start), DiT time (from
    /// its events), decode time and video frames, the recaches' total and the first frame's arrival. With
    /// --memory-every, prints the device memory as it goes.
    func measure(_ pipeline: Pipeline, geometry: BlockGeometry, backend: any Backend) async throws -> StreamTimes {
        var arrivals: [Double] = [], ditSeconds: [Double] = [], recache = 0.0, decodeSeconds: [Double] = []
        var frames: [Int] = [], firstFrame: Double?
        var blockDecode = 0.0, blockFrames = 0
        let start = ContinuousClock.now
        // Frames are handed on a latent frame at a time, so the first frame arrives after one latent
        // frame's decode; the per-block figures sum a block's chunks.
        for try await chunk in pipeline.chunks() {
            if firstFrame == nil { firstFrame = (ContinuousClock.now - start).seconds }
            blockDecode += chunk.decodeSeconds
            let done = chunk.block.startFrame + chunk.latentFrames.lowerBound, count = chunk.latentFrames.count
            blockFrames += chunk.frames?.count ?? geometry.videoFrames(latentFrames: done + count) - geometry.videoFrames(latentFrames: done)
            guard chunk.endsBlock else { continue }
            arrivals.append((ContinuousClock.now - start).seconds)
            ditSeconds.append(chunk.block.timings.seconds)
            decodeSeconds.append(blockDecode)
            recache += chunk.block.timings.recacheSeconds
            frames.append(blockFrames)
            blockDecode = 0; blockFrames = 0
            if memoryEvery > 0, (chunk.block.index + 1) % memoryEvery == 0 {
                // The device's own count where the backend keeps one (CUDA); the host's resident set always.
                var device = ""
                if let m = (backend as? MemoryReporting)?.memoryStatistics() {
                    let (inUse, peak) = (Double(m.inUse) / 1e9, Double(m.peak) / 1e9)
                    device = String(format: ", device memory in use %.3f GB, peak %.3f GB", inUse, peak)
                }
                var host = ""
                if let resident = Self.hostResidentBytes() { host = String(format: ", host resident %.3f GB", Double(resident) / 1e9) }
                let videoFrames: Int = frames.reduce(0, +), seconds: Double = arrivals.last ?? 0
                print("block \(chunk.block.index): \(videoFrames) video frames" + device + host + String(format: ", %.1f s", seconds))
                fflush(nil)   // every stream: a long run cut short by a time limit keeps the lines it printed
            }
        }
        return (arrivals, ditSeconds, recache, decodeSeconds, frames, firstFrame)
    }

    /// The decoder by itself on its stream (nothing beside it on the device): blocks of `latentFrames` random
    /// latent frames after `warm` blocks, `timed` more each timed to its last frame on the host. With REEL_PROFILE
    /// its ops get a report of their own.
    func decoderAlone(_ vae: any VideoDecoder, stream: any Backend, latentHeight lh: Int, latentWidth lw: Int,
                      latentFrames: Int = 3, warm: Int = 2, timed: Int = 4, floor: Double) throws {
        vae.reset()
        let profiler = (stream as? CUDABackend)?.profiler
        var times: [Double] = []
        for block in 0..<(warm + timed) {
            if block == warm { profiler?.reset() }
            let latents = try stream.randomNormal([1, latentFrames, lh, lw, vae.latentChannels], seed: 100 + UInt64(block),
                                                  offset: 0, dtype: backendOptions.storageType)
            try stream.synchronize()
            let t0 = ContinuousClock.now
            _ = try vae.decode(latents)
            try stream.synchronize()
            if block >= warm { times.append((ContinuousClock.now - t0).seconds) }
        }
        vae.reset()
        print("")
        row("decoder alone per block", median(times) * 1000, floor * 1000, unit: "ms", higherIsBetter: false)
        if let profiler { print("decoder alone, " + (try profiler.report()), terminator: "") }
    }

    /// This process's resident set (host memory it holds, page-locked buffers included), from /proc/self/statm;
    /// nil where there is none (not Linux).
    static func hostResidentBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Each block's time in ms, in order; past 40 blocks the first and last 20 with the count left out between them.
    static func blockTimes(_ seconds: [Double]) -> String {
        func ms(_ xs: ArraySlice<Double>) -> String { xs.map { String(format: "%.0f", $0 * 1000) }.joined(separator: " ") }
        guard seconds.count > 40 else { return ms(seconds[...]) }
        return ms(seconds.prefix(20)) + " ... (\(seconds.count - 40) more) ... " + ms(seconds.suffix(20))
    }

    /// The blocks at whose start the prompt switches: --switch-block, then every --switch-every'th block.
    func switchBlocks() -> [Int] {
        var blocksWithSwitch = Set(switchBlock > 0 ? [switchBlock] : [])
        if switchEvery > 0 { blocksWithSwitch.formUnion(stride(from: switchEvery, to: blocks, by: switchEvery)) }
        return blocksWithSwitch.sorted()
    }

    /// How the header names the switches.
    var switchNote: String {
        let switches = switchBlocks()
        switch switches.count {
        case 0: return "no switch"
        case 1: return "switch at block \(switches[0])"
        default: return "\(switches.count) switches (blocks \(switches.prefix(3).map(String.init).joined(separator: ", "))\(switches.count > 3 ? ", ..." : ""))"
        }
    }

    /// LongLive 1.0's schedule with --denoising-steps (the default's steps without).
    func schedule() throws -> StreamingSchedule {
        var schedule = StreamingSchedule.longLive
        guard let denoisingSteps else { return schedule }
        let steps = denoisingSteps.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !steps.isEmpty, steps.allSatisfy({ $0 != nil }) else {
            throw ValidationError("--denoising-steps takes timesteps on the 1000-step grid, comma separated (e.g. 1000,500), got \"\(denoisingSteps)\".")
        }
        schedule.denoisingSteps = steps.map { $0! }
        guard zip(schedule.denoisingSteps, schedule.denoisingSteps.dropFirst()).allSatisfy({ $0 > $1 }) else {
            throw ValidationError("--denoising-steps must decrease, got \(denoisingSteps).")
        }
        do { try schedule.validate() } catch let error as ReelError { throw ValidationError("--denoising-steps: \(error)") }
        return schedule
    }

    func row(_ name: String, _ measured: Double, _ floor: Double, unit: String, higherIsBetter: Bool) {
        let ratio = higherIsBetter ? measured / floor : floor / measured
        print(name.padding(toLength: 32, withPad: " ", startingAt: 0)
              + String(format: "%9.1f %@   %9.1f %@   %5.1f%%", measured, unit.padding(toLength: 3, withPad: " ", startingAt: 0),
                       floor, unit.padding(toLength: 3, withPad: " ", startingAt: 0), ratio * 100))
    }

    func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// The value below which a fraction `q` of `xs` lies (nearest rank).
    func percentile(_ xs: [Double], _ q: Double) -> Double {
        let s = xs.sorted()
        return s.isEmpty ? .nan : s[min(s.count - 1, max(0, Int((q * Double(s.count)).rounded(.up)) - 1))]
    }
}

/// Frames a second between the warm-up's last block and the end of the steady window: the frames of the blocks after
/// `warmup` over the time between their arrivals. The window stops one block short of the last when at least two
/// blocks follow the warm-up: the last block's decode runs alone (no DiT beside it), so its frames come early and
/// would flatter the figure (the 14B on an H100: decode 578 ms a block beside the DiT, 110 alone; 9.9 FPS over a window
/// ending there against the DiT's 9.5).
func steadyFPS(arrivals: [Double], frames: [Int], warmup: Int) -> Double {
    let end = steadyWindowEnd(blocks: arrivals.count, warmup: warmup)
    guard end > warmup else { return .nan }
    return Double(frames[(warmup + 1)...end].reduce(0, +)) / (arrivals[end] - arrivals[warmup])
}

/// The block whose arrival ends the steady window (`steadyFPS`).
func steadyWindowEnd(blocks: Int, warmup: Int) -> Int { blocks - 1 >= warmup + 2 ? blocks - 2 : blocks - 1 }

