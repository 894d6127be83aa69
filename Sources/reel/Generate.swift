import ArgumentParser
import Foundation
import ReelCore
import ReelMedia
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline

/// `reel generate`: a video from a prompt, a LongLive-style prompt schedule, or prompts typed live.
struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a video from a prompt, a prompt schedule, or prompts typed while it runs.",
        discussion: """
        The model comes from --model, a folder recognised by its files: Reel's own (dit.safetensors, \
        text_encoder.safetensors, tokenizer.json or spiece.model, vae.safetensors or taehv.safetensors), \
        Wan-AI/Wan2.1-T2V-1.3B or -14B as downloaded, their -Diffusers form, LongLive-1.3B \
        (models/longlive_base.pt + models/lora.pt), a Self-Forcing or CausVid checkpoint folder, each of the \
        last three on a Wan2.1 base folder (--base, else wan_models/Wan2.1-T2V-1.3B beside it); \
        docs/model-folders.md. The single-file options override the folder's files. `reel inspect DIR` \
        says what a folder holds.

        The model picks the schedule: a LongLive 2.0 model (a Wan2.2-TI2V-5B DiT, 48 latent channels, with the \
        Wan2.2 VAE) runs LongLive 2.0's (blocks of 8 latent frames, 4 UniPC steps, sizes in multiples of 32, 24 fps \
        unless the folder says otherwise; docs/longlive2.md): a prompt switch changes only the cross-attention (no \
        KV-recache), a prompt that starts with "The scene transitions. " is a scene cut, --image is the first frame; \
        --continue and --input are LongLive 1.0's and refused. Its options beside the shipped configs: \
        --guidance-scale with --negative-prompt (classifier-free guidance) and --shot-clean-recache.

        Prompts: --prompt TEXT; or --schedule FILE.jsonl with LongLive's {"prompts": [...]} line and \
        --switch-frames (latent frame indices, one fewer than the prompts); or --interactive, where each \
        line typed on standard input becomes the prompt from the next block on (LongLive 1.0: with KV-recache) and the \
        video runs until input ends or --seconds is reached.

        Inputs: --image FILE opens the video with the image (PNG built in; JPEG and others through ffmpeg), \
        fitted to the video size (scaled to cover it, centre-cropped): it is encoded as a still clip of one \
        block (9 frames), written into the model's cache as clean context (the attention sink) and shown \
        first; generation continues from it. --continue FILE extends a video (Y4M, or anything ffmpeg reads): \
        its last frames (up to 45, the 12 latent frames the model attends to) become the context, and the \
        output is the continuation. Prompt switches and --switch-frames count from the first generated frame.

        Output by extension: .mp4 (H.264 through ffmpeg, Y4M when ffmpeg is missing), .y4m, a folder for \
        PNG frames, or .safetensors for the latents [frames, C, h, w] without decoding (16 channels at H/8; LongLive \
        2.0: 48 at H/16). A live output \
        streams H.264 through ffmpeg while the video is made, at most at its frame rate: -o rtmp://HOST/APP/KEY \
        (FLV; OBS, nginx-rtmp, MediaMTX, YouTube, Twitch), srt://HOST:PORT or udp://HOST:PORT (MPEG-TS); \
        --bitrate sets its rate (docs/streaming.md).
        """
    )

    @OptionGroup var models: ModelOptions

    @Option(help: "The prompt.")
    var prompt: String?
    @Option(help: "LongLive JSONL prompt schedule (its first line is used).")
    var schedule: String?
    @Option(help: "Latent frames where the schedule's prompts switch, comma separated (e.g. 40,80).")
    var switchFrames: String?
    @Flag(help: "Read new prompts from standard input while generating.")
    var interactive = false

    @Option(help: "An image to open the video with (it becomes the first frames; PNG, JPEG, ...).")
    var image: String?
    @Option(name: .customLong("continue"), help: "A video to continue from its last frames (the output is the continuation).")
    var continueVideo: String?

    @Option(help: ArgumentHelp("A video to restyle live (video-to-video, StreamDiffusionV2's schedule): a file, or - for Y4M on stdin.",
                               discussion: "E.g. ffmpeg -f v4l2 -i /dev/video0 -f yuv4mpegpipe - | reel generate --input - --prompt ..."))
    var input: String?
    @Option(help: "Video-to-video: the initial noise scale s0 (StreamDiffusionV2's --noise_scale; 0.2 to 1; default: the model folder's reel.json noise_scale, else StreamDiffusionV2's 0.8).")
    var noiseScale: Double?
    @Option(help: "Video-to-video: denoising steps a block, the first N of 700, 500, 400, 200.")
    var steps: Int = 2
    @Option(help: "Video-to-video: stop when the input gives no frame for this many seconds (default: wait).")
    var inputTimeout: Double?

    @Option(help: "LongLive 2.0: classifier-free guidance scale (inference.guidance_scale; default 1, none, as the shipped configs): every forward runs twice, the second with --negative-prompt, and the KV cache is kept twice.")
    var guidanceScale: Float = 1
    @Option(help: "LongLive 2.0 with --guidance-scale: the negative prompt (inference.negative_prompt; default empty).")
    var negativePrompt: String?
    @Flag(help: "LongLive 2.0: a scene cut's block is cached against the global sink alone, forgetting the previous shot (inference.shot_clean_recache; off in the shipped configs).")
    var shotCleanRecache = false

    @Option(help: "Video length in seconds (default 5; rounded up to whole blocks of 12 frames). With --input: the input's first seconds (default: all of it).")
    var seconds: Double?
    @Option(help: "Latent frames to generate instead of --seconds (a multiple of the block: 3, or 8 for LongLive 2.0).")
    var latentFrames: Int?
    @Option(help: "Seed of the Philox noise.")
    var seed: UInt64 = 0
    @OptionGroup var video: VideoOptions
    @Option(help: "Recorded noise (safetensors with 'initial' [frames,C,h,w] and 'renoise' [blocks,steps-1,3,C,h,w]) for parity runs.")
    var noise: String?
    @Option(name: [.short, .customLong("output")],
            help: "out.mp4, out.y4m, a folder, out.safetensors, or a live output: rtmp://HOST/APP/KEY, srt://HOST:PORT, udp://HOST:PORT.")
    var output = "out.mp4"
    @Option(help: "A live output's H.264 bitrate in kbit/s (default 2500).")
    var bitrate: Int?
    @OptionGroup var backendOptions: BackendOptions

    mutating func validate() throws {
        let sources = [prompt != nil, schedule != nil].filter { $0 }.count
        if sources > 1 { throw ValidationError("Give either --prompt or --schedule, not both.") }
        if sources == 0 && !interactive {
            throw ValidationError("Give a --prompt, a --schedule FILE.jsonl, or --interactive.")
        }
        if switchFrames != nil && schedule == nil { throw ValidationError("--switch-frames needs --schedule.") }
        if let prompt, prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw ValidationError("--prompt is empty.")
        }
        if let seconds, seconds <= 0 || !seconds.isFinite { throw ValidationError("--seconds must be positive, got \(seconds).") }
        if input != nil {
            if image != nil || continueVideo != nil || interactive || schedule != nil {
                throw ValidationError("--input takes one --prompt: not --image, --continue, --interactive or --schedule.")
            }
            if output.lowercased().hasSuffix(".safetensors") { throw ValidationError("--input makes frames: give a video output.") }
            if !(1...4).contains(steps) { throw ValidationError("--steps must be 1 to 4, got \(steps).") }
            if let noiseScale, !(0.2...1).contains(noiseScale) { throw ValidationError("--noise-scale must lie in 0.2...1, got \(noiseScale).") }
            if let inputTimeout, inputTimeout <= 0 { throw ValidationError("--input-timeout must be positive.") }
        }
        if backendOptions.encodeDevice != nil && input == nil && image == nil && continueVideo == nil {
            throw ValidationError("--encode-device places the input encoder: it needs --input, --image or --continue.")
        }
        if let latentFrames, latentFrames <= 0 { throw ValidationError("--latent-frames must be positive, got \(latentFrames).") }
        if !guidanceScale.isFinite { throw ValidationError("--guidance-scale must be a number, got \(guidanceScale).") }
        if negativePrompt != nil && guidanceScale == 1 {
            throw ValidationError("--negative-prompt is used only with a --guidance-scale other than 1.")
        }
        if guidanceScale != 1 && backendOptions.memoryCap != nil {
            throw ValidationError("--guidance-scale keeps a second KV cache, which --gpu-memory's plan does not count: "
                                  + "drop one of them.")
        }
        if image != nil && continueVideo != nil { throw ValidationError("Give either --image or --continue, not both.") }
        if LiveDestination.isURL(output) {
            do { _ = try LiveDestination(url: output) } catch { throw ValidationError("\(error)") }
        } else if bitrate != nil {
            throw ValidationError("--bitrate is for live outputs (-o rtmp://..., srt://..., udp://...).")
        }
        if let bitrate, !(100...100_000).contains(bitrate) {
            throw ValidationError("--bitrate is in kbit/s, 100 to 100000; got \(bitrate).")
        }
        for (flag, path) in [("--schedule", schedule), ("--noise", noise), ("--image", image), ("--continue", continueVideo),
                             ("--input", input == "-" || input?.contains("://") == true ? nil : input)] {
            if let path, !FileManager.default.fileExists(atPath: path) {
                throw ValidationError("\(flag): \(path) does not exist.")
            }
        }
    }

    func run() async throws {
        do { try await generate() } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        }
    }

    private func generate() async throws {
        // Everything that can be wrong with the request is checked before any weight is read.
        let files = try models.resolve()
        let latentsOnly = output.lowercased().hasSuffix(".safetensors")
        // The DiT's shapes pick the schedule (LongLive 2.0's for a 48-channel DiT) and with it the geometry.
        let config = try files.ditConfig(backend: CPUBackend())
        let geometry = try video.geometry(folderSize: files.size).matching(config)
        let (width, height) = (geometry.width, geometry.height)
        let fps = try video.framesPerSecond(folderFPS: files.fps ?? (config.runsLongLive2 ? 24 : nil))
        if !config.runsLongLive2 && (guidanceScale != 1 || shotCleanRecache) {
            throw ReelError.input("\(shotCleanRecache ? "--shot-clean-recache" : "--guidance-scale") is LongLive 2.0's: this "
                                  + "DiT has \(config.inChannels) latent channels and runs LongLive 1.0's schedule, whose loop "
                                  + "has neither")
        }
        if config.runsLongLive2 && (input != nil || continueVideo != nil) {
            throw ReelError.input("\(input != nil ? "--input (StreamDiffusionV2's video-to-video)" : "--continue") is LongLive "
                                  + "1.0's: this DiT has 48 latent channels (LongLive 2.0), which takes a --prompt, a "
                                  + "--schedule or --interactive, and --image as the first frame")
        }
        if input != nil { return try await videoToVideo(files: files, geometry: geometry, fps: fps) }
        let block = geometry.latentFramesPerBlock
        if let latentFrames, latentFrames % block != 0 {
            throw ReelError.input("--latent-frames must be a multiple of the model's block of \(block) latent frames, "
                                  + "got \(latentFrames)")
        }
        let totalLatent = latentFrames ?? geometry.latentFrames(seconds: seconds ?? 5, fps: fps)
        var plan = PromptSchedule(prompts: prompt.map { [$0] } ?? [], switchFrames: [])
        if let schedule {
            let frames = try switchFrames.map { text in
                try text.split(separator: ",").map { part -> Int in
                    guard let v = Int(part.trimmingCharacters(in: .whitespaces)) else {
                        throw ReelError.input("--switch-frames: '\(part)' is not an integer")
                    }
                    return v
                }
            }
            plan = try PromptSchedule.load(jsonl: schedule, switchFrames: frames)[0]
        }
        if !interactive || !plan.prompts.isEmpty { try plan.validate(totalFrames: totalLatent) }

        let backend = try backendOptions.make()
        let dtype = backendOptions.storageType
        let loadStart = Date()
        let inputs = image != nil || continueVideo != nil
        let model = try LoadedModel.load(files: files, decoder: !latentsOnly || inputs, encoder: inputs,
                                          backend: backend, decodeBackend: try backendOptions.makeDecodeBackend(),
                                          encodeBackend: try backendOptions.makeEncodeBackend(beside: backend),
                                          communicator: try backendOptions.makeCommunicator(),
                                          parallelism: backendOptions.parallelism.scheme, dtype: dtype,
                                          quantization: models.quantization, kvCache: models.kvCache, attention: models.attention, textBackend: backendOptions.makeTextBackend(),
                                          residency: backendOptions.residency(geometry: geometry))
        if let plan = model.placement?.plan { log(plan.description) }
        let dit = model.dit, textModel = model.prompts.textEncoder, prompts = model.prompts
        let decoder = latentsOnly ? nil : model.newDecoder()
        log(String(format: "loaded DiT (%d layers, dim %d%@), umT5 (%d layers) and %@ in %.1f s", dit.config.layers,
                   dit.config.dim, dit.quantization.map { ", \($0.layers == .allLinears ? "block linears" : "FFN") in \($0.format.name)" } ?? "", textModel.config.layers, decoder == nil ? "no decoder" : "the decoder",
                   Date().timeIntervalSince(loadStart)))

        let context = try makeContext(model: model, geometry: geometry, fps: fps)
        // An image's still clip is part of the requested length; a continuation's context is not shown; a LongLive
        // 2.0 model's image is the first generated frame.
        let generated = context.map {
            $0.shown && !config.runsLongLive2 ? max(block, totalLatent - $0.latents.shape[0]) : totalLatent
        } ?? totalLatent

        let control = ControlChannel()
        let live = LivePrompts()
        // Lines typed after the first go to the pipeline's control; with no schedule, the end of input ends the video.
        if interactive { live.startReadingStandardInput(control: control, stopAtEnd: plan.prompts.isEmpty) }
        var first = plan.prompts.first
        if first == nil {
            log("type the first prompt and press Enter")
            first = await live.waitForFirst()
        }
        guard let firstPrompt = first else { throw ReelError.input("standard input ended before any prompt") }
        let noiseSource: any NoiseSource = try noise.map { path in
            let f = try WeightFiles.open(path)
            return try RecordedNoise(initial: try f.tensor("initial", on: backend, as: .f32),
                                     renoise: try f.tensor("renoise", on: backend, as: .f32))
        } ?? PhiloxNoise(seed: seed)
        let decide = ScheduledPrompts(plan: plan, encoder: prompts)
        var longLive2Schedule: LongLive2Schedule?
        if shotCleanRecache { longLive2Schedule = .longLive2; longLive2Schedule?.shotCleanRecache = true }
        let request = PipelineRequest(geometry: geometry, latentFrames: generated, decode: !latentsOnly,
                                      longLive2Schedule: longLive2Schedule, context: context,
                                      guidance: guidanceScale == 1 ? nil : .init(scale: guidanceScale,
                                                                                 negativePrompt: negativePrompt ?? ""))
        let firstContext = try prompts.context(for: firstPrompt)
        if textModel.backend !== backend, let seconds = prompts.lastEncodeSeconds {
            log(String(format: "text encoder on %@: the first prompt took %.0f ms (each new prompt does)", textModel.backend.name, seconds * 1000))
        }
        let replicas = try backendOptions.makeStageBackends().map {
            try TimestepForcingReplicas.load(files: files, first: dit, on: $0, dtype: dtype, quantization: models.quantization,
                                             kvCache: models.kvCache)
        }
        replicas?.forEach { $0.attentionPrecision = models.attention }
        if let replicas {
            log("timestep forcing (LiveAvatar's pipeline, an approximation of LongLive's schedule): step i on "
                + replicas.map(\.backend.device.name).joined(separator: ", ") + "; decoder on \(model.decodeStream.name)")
        }
        let pipeline = try Pipeline(model: model, request: request, prompt: firstContext, noise: noiseSource, control: control,
                                    script: decide.context(atFrame:), timestepForcing: replicas)

        let sink = try decoder.map { _ in try VideoSinks.open(path: output, fps: fps, live: liveOptions) { log("note: " + $0) } }
        var latents: [Tensor] = []
        var frames = 0
        let started = Date()
        do {
            for try await chunk in pipeline.chunks() {
                let block = chunk.block
                if let text = block.switchedTo { log("prompt from latent frame \(block.startFrame): \(text)") }
                var line = String(format: "block %d (latent frames %d-%d, prompt %d): DiT %.0f ms", block.index, block.startFrame,
                                  block.startFrame + block.latents.shape[0] - 1, block.promptIndex, block.timings.seconds * 1000)
                if block.timings.recacheSeconds > 0 { line += String(format: " incl. recache %.0f ms", block.timings.recacheSeconds * 1000) }
                if let rgb = chunk.frames, let sink {
                    try sink.write(rgb)
                    frames += rgb.count
                    line += String(format: ", decode %.0f ms, %d frames", chunk.decodeSeconds * 1000, rgb.count)
                } else {
                    latents.append(try backend.permute(try backend.cast(block.latents, to: .f32), [0, 3, 1, 2]))   // [n, C, h, w]
                    frames += geometry.videoFrames(ofBlock: block.index)
                }
                let elapsed = Date().timeIntervalSince(started)
                log(line + String(format: "; %.2f frames/s overall", Double(frames) / max(elapsed, 1e-9)))
            }
        } catch {
            try? sink?.finish()   // a file stays playable; a live output's ffmpeg is reaped
            if let sink { log("wrote \(frames) frames to \(sink.destination) before the error") }
            throw error
        }
        if let sink {
            try sink.finish()
            if continueVideo != nil { log("(the continuation only: the input's frames are not repeated)") }
            log("wrote \(frames) frames (\(width)x\(height), \(fps) fps) to \(sink.destination)")
        } else {
            var writer = SafetensorsWriter()
            try writer.add("latents", try backend.concat(latents, axis: 0))
            writer.metadata = ["layout": "[frames, channels, height, width]", "seed": String(seed),
                               "prompts": plan.prompts.joined(separator: " | ")]
            try writer.write(to: output)
            log("wrote \(latents.reduce(0) { $0 + $1.shape[0] }) latent frames to \(output)")
        }
    }

    /// How a live output (-o rtmp://...) is encoded.
    var liveOptions: LiveStreamOptions { LiveStreamOptions(bitrateKbps: bitrate ?? LiveStreamOptions().bitrateKbps) }

    /// The latents the video starts from: `--image` as a still clip of one block, or `--continue`'s last frames.
    private func makeContext(model: LoadedModel, geometry: BlockGeometry, fps: Int) throws -> VideoContext? {
        guard image != nil || continueVideo != nil else { return nil }
        guard let encoder = model.newEncoder() else { throw ReelError.input("the model has no encoder for image and video inputs") }
        let start = Date()
        let context: VideoContext
        if let path = image {
            let input = try FittedInput(try ImageInput(path: path), width: geometry.width, height: geometry.height, frameRate: nil)
            defer { input.close() }
            guard let frame = try input.nextFrame() else { throw ReelError.badFile(path: path, message: "no image in it") }
            context = model.dit.config.runsLongLive2
                ? try ContextEncoder.firstFrame(frame, encoder: encoder, geometry: geometry, on: model.encodeStream,
                                                for: model.dit.backend)
                : try ContextEncoder.image(frame, encoder: encoder, geometry: geometry, on: model.encodeStream,
                                           for: model.dit.backend)
        } else {
            let path = continueVideo!
            let input = try FittedInput(try openVideoInput(path: path), width: geometry.width, height: geometry.height,
                                        frameRate: try FrameRate(fps))
            defer { input.close() }
            // Only the last frames are kept: as many as the frames the model attends to decode to.
            let attended = StreamingSchedule.longLive.attentionFrames
            let keep = geometry.videoFrames(latentFrames: attended)
            var last: [RGBFrames] = []
            while let frame = try input.nextFrame() {
                last.append(frame)
                if last.count > keep { last.removeFirst() }
            }
            guard let first = last.first else { throw ReelError.badFile(path: path, message: "no frames in it") }
            let video = try RGBFrames(width: first.width, height: first.height, pixels: Array(last.map(\.pixels).joined()))
            context = try ContextEncoder.continuation(video, encoder: encoder, geometry: geometry, maxLatentFrames: attended,
                                                      on: model.encodeStream, for: model.dit.backend)
        }
        log(String(format: "encoded %@ into %d latent frames of context in %.1f s", image ?? continueVideo!,
                   context.latents.shape[0], Date().timeIntervalSince(start)))
        return context
    }

}

/// The schedule's prompt switches: the context that starts at a block's first latent frame, if one does.
/// Asked by the Generator stage when no live prompt switches at that block (a live one wins; the
/// scheduled one then starts at the next block).
final class ScheduledPrompts: @unchecked Sendable {
    let plan: PromptSchedule
    let encoder: PromptEncoder
    private var scheduled = 0

    init(plan: PromptSchedule, encoder: PromptEncoder) {
        self.plan = plan; self.encoder = encoder
    }

    func context(atFrame frame: Int) throws -> WanDiT.PromptContext? {
        let index = plan.promptIndex(atBlockStart: frame)
        guard index > scheduled, index < plan.prompts.count else { return nil }
        scheduled = index
        log("prompt \(index) from latent frame \(frame): \(plan.prompts[index])")
        let runs = encoder.textEncoderRuns
        let context = try encoder.context(for: plan.prompts[index])
        if encoder.textEncoderRuns > runs, let seconds = encoder.lastEncodeSeconds {
            log(String(format: "  text encoder: %.0f ms", seconds * 1000))
        }
        return context
    }
}

/// Prompts typed on standard input: the first line starts the video, later ones switch its prompt from the
/// next block on (the newest wins at a block start).
final class LivePrompts: @unchecked Sendable {
    private let lock = NSLock()
    private var first: String?
    private var finished = false
    private var firstWaiters: [CheckedContinuation<String?, Never>] = []

    func startReadingStandardInput(control: ControlChannel, stopAtEnd: Bool) {
        Thread.detachNewThread { [self] in
            var started = false
            while let line = readLine() {
                let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !text.isEmpty else { continue }
                let isFirst = lock.withLock { () -> Bool in
                    guard !started else { return false }
                    started = true
                    if let waiter = firstWaiters.popLast() { waiter.resume(returning: text) } else { first = text }
                    return true
                }
                if !isFirst { control.send(.switchPrompt(text)) }
            }
            lock.withLock {
                finished = true
                for w in firstWaiters { w.resume(returning: nil) }
                firstWaiters = []
            }
            if stopAtEnd { control.send(.finish) }
        }
    }

    func waitForFirst() async -> String? {
        await withCheckedContinuation { c in
            lock.withLock {
                if let p = first { first = nil; c.resume(returning: p) } else if finished { c.resume(returning: nil) } else { firstWaiters.append(c) }
            }
        }
    }
}

