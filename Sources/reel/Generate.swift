import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
import ReelPipeline

/// `reel generate`: a video from a prompt, a LongLive-style prompt schedule, or prompts typed live.
struct Generate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a video from a prompt, a prompt schedule, or prompts typed while it runs.",
        discussion: """
        The model comes from --model (a folder with dit.safetensors, text_encoder.safetensors, \
        tokenizer.json or spiece.model, and vae.safetensors or taehv.safetensors) and/or the single-file \
        options, which override the folder's files. --dit takes Reel or Wan safetensors, a diffusers \
        transformer folder or index, or LongLive's longlive_base.pt (with --lora lora.pt).

        Prompts: --prompt TEXT; or --schedule FILE.jsonl with LongLive's {"prompts": [...]} line and \
        --switch-frames (latent frame indices, one fewer than the prompts); or --interactive, where each \
        line typed on standard input becomes the prompt from the next block on (with KV-recache) and the \
        video runs until input ends or --seconds is reached.

        Output by extension: .mp4 (H.264 through ffmpeg, Y4M when ffmpeg is missing), .y4m, a folder for \
        PNG frames, or .safetensors for the latents [frames, 16, H/8, W/8] without decoding.
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

    @Option(help: "Video length in seconds (rounded up to whole blocks of 12 frames).")
    var seconds: Double = 5
    @Option(help: "Latent frames to generate instead of --seconds (a multiple of 3).")
    var latentFrames: Int?
    @Option(help: "Seed of the Philox noise.")
    var seed: UInt64 = 0
    @Option(help: "Video size WIDTHxHEIGHT, multiples of 16 (default: the model folder's, else 832x480).")
    var size: String?
    @Option(help: "Frames per second of the output (default: the model folder's, else 16).")
    var fps: Int?
    @Option(help: "Recorded noise (safetensors with 'initial' [frames,C,h,w] and 'renoise' [blocks,steps-1,3,C,h,w]) for parity runs.")
    var noise: String?
    @Option(name: [.short, .customLong("output")], help: "out.mp4, out.y4m, a folder, or out.safetensors.")
    var output = "out.mp4"
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
        if seconds <= 0 || !seconds.isFinite { throw ValidationError("--seconds must be positive, got \(seconds).") }
        if let latentFrames, latentFrames <= 0 || latentFrames % 3 != 0 {
            throw ValidationError("--latent-frames must be a positive multiple of 3, got \(latentFrames).")
        }
        if let fps, fps <= 0 { throw ValidationError("--fps must be positive, got \(fps).") }
        if let size { _ = try Self.parseSize(size) }
        for (flag, path) in [("--schedule", schedule), ("--noise", noise)] {
            if let path, !FileManager.default.fileExists(atPath: path) {
                throw ValidationError("\(flag): \(path) does not exist.")
            }
        }
    }

    static func parseSize(_ text: String) throws -> (width: Int, height: Int) {
        let parts = text.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts[0] > 0, parts[1] > 0, parts[0] % 16 == 0, parts[1] % 16 == 0 else {
            throw ValidationError("--size must be WIDTHxHEIGHT with positive multiples of 16 (e.g. 832x480), got '\(text)'.")
        }
        return (parts[0], parts[1])
    }

    func run() async throws {
        do { try await generate() } catch let error as ReelError {
            log("error: \(error)")
            throw ExitCode.failure
        }
    }

    private func generate() async throws {
        // Everything that can be wrong with the request is checked before any weight is read.
        let files = try models.resolve()
        let latentsOnly = output.lowercased().hasSuffix(".safetensors")
        let (width, height) = try (size ?? files.size).map(Self.parseSize) ?? (832, 480)
        let fps = self.fps ?? files.fps ?? 16
        guard fps > 0 else { throw ReelError.input("the model folder's fps must be positive, got \(fps)") }
        let totalLatent = latentFrames ?? Self.latentFrames(seconds: seconds, fps: fps)
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
        let model = try LoadedModel.load(files: files, ema: models.ema, decoder: !latentsOnly,
                                          backend: backend, decodeBackend: try backendOptions.makeDecodeBackend(), dtype: dtype,
                                          fp8: models.fp8)
        let dit = model.dit, textModel = model.prompts.textEncoder, prompts = model.prompts
        let decoder = model.newDecoder()
        log(String(format: "loaded DiT (%d layers, dim %d%@), umT5 (%d layers) and %@ in %.1f s", dit.config.layers,
                   dit.config.dim, dit.isFP8 ? ", FFN in FP8" : "", textModel.config.layers, decoder == nil ? "no decoder" : "the decoder",
                   Date().timeIntervalSince(loadStart)))

        let live = LivePrompts()
        if interactive { live.startReadingStandardInput() }
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
        let generator = try StreamingGenerator(model: dit, prompt: try prompts.context(for: firstPrompt),
                                               latentHeight: height / 8, latentWidth: width / 8, noise: noiseSource)

        let sink = try decoder.map { _ in try VideoSinks.open(path: output, fps: fps) { log("note: " + $0) } }
        let stream = VideoStream(generator: generator, decoder: decoder, decodeBackend: model.decodeStream)
        let decide = PromptDecider(plan: plan, live: interactive ? live : nil, encoder: prompts)
        var latents: [Tensor] = []
        var frames = 0
        let started = Date()
        for try await chunk in stream.chunks(latentFrames: totalLatent, prompt: decide.decision(atFrame:)) {
            let block = chunk.block
            var line = String(format: "block %d (latent frames %d-%d, prompt %d): DiT %.0f ms", block.index, block.startFrame,
                              block.startFrame + block.latents.shape[0] - 1, block.promptIndex, block.timings.seconds * 1000)
            if block.timings.recacheSeconds > 0 { line += String(format: " incl. recache %.0f ms", block.timings.recacheSeconds * 1000) }
            if let rgb = chunk.frames, let sink {
                try sink.write(rgb)
                frames += rgb.count
                line += String(format: ", decode %.0f ms, %d frames", chunk.decodeSeconds * 1000, rgb.count)
            } else {
                latents.append(try backend.permute(try backend.cast(block.latents, to: .f32), [0, 3, 1, 2]))   // [3, C, h, w]
                frames += block.index == 0 ? 9 : 12
            }
            let elapsed = Date().timeIntervalSince(started)
            log(line + String(format: "; %.2f frames/s overall", Double(frames) / max(elapsed, 1e-9)))
        }
        if let sink {
            try sink.finish()
            log("wrote \(frames) frames (\(width)x\(height), \(fps) fps) to \(sink.destination)")
        } else {
            var writer = SafetensorsWriter()
            try writer.add("latents", try backend.concat(latents, axis: 0))
            writer.metadata = ["layout": "[frames, channels, height, width]", "seed": String(seed),
                               "prompts": plan.prompts.joined(separator: " | ")]
            try writer.write(to: output)
            log("wrote \(latents.count * 3) latent frames to \(output)")
        }
    }

    /// Latent frames for a video of `seconds`: T latents decode to 4T - 3 frames; whole blocks of 3.
    static func latentFrames(seconds: Double, fps: Int) -> Int {
        let videoFrames = Int((seconds * Double(fps)).rounded(.up))
        let t = (videoFrames + 3 + 3) / 4
        return max(3, (t + 2) / 3 * 3)
    }
}

/// Decides at each block start whether the prompt changes: a line typed live wins, then the
/// schedule's switch frames; with live input the video stops once input has ended.
final class PromptDecider: @unchecked Sendable {
    let plan: PromptSchedule
    let live: LivePrompts?
    let encoder: PromptEncoder
    private var scheduled = 0

    init(plan: PromptSchedule, live: LivePrompts?, encoder: PromptEncoder) {
        self.plan = plan; self.live = live; self.encoder = encoder
    }

    func decision(atFrame frame: Int) throws -> PromptDecision {
        if let live {
            if let text = live.take() {
                log("prompt from latent frame \(frame): \(text)")
                return .switchTo(try encoder.context(for: text))
            }
            if live.ended && plan.prompts.isEmpty && frame > 0 { return .stop }
        }
        let index = plan.promptIndex(atBlockStart: frame)
        if index > scheduled, index < plan.prompts.count {
            scheduled = index
            log("prompt \(index) from latent frame \(frame): \(plan.prompts[index])")
            return .switchTo(try encoder.context(for: plan.prompts[index]))
        }
        return .keep
    }
}

/// Prompts typed on standard input while a video is generated; the newest one wins at a block start.
final class LivePrompts: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: String?
    private var finished = false
    private var firstWaiters: [CheckedContinuation<String?, Never>] = []

    var ended: Bool { lock.withLock { finished } }

    func take() -> String? { lock.withLock { defer { pending = nil }; return pending } }

    func startReadingStandardInput() {
        Thread.detachNewThread { [self] in
            while let line = readLine() {
                let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !text.isEmpty else { continue }
                lock.withLock {
                    if let waiter = firstWaiters.popLast() { waiter.resume(returning: text) } else { pending = text }
                }
            }
            lock.withLock {
                finished = true
                for w in firstWaiters { w.resume(returning: nil) }
                firstWaiters = []
            }
        }
    }

    func waitForFirst() async -> String? {
        await withCheckedContinuation { c in
            lock.withLock {
                if let p = pending { pending = nil; c.resume(returning: p) } else if finished { c.resume(returning: nil) } else { firstWaiters.append(c) }
            }
        }
    }
}

private func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
