import ArgumentParser
import Foundation
import ReelCore
import ReelEval
import ReelPipeline

/// `reel eval`: what a viewer would check on the tiny model's videos, measured.
struct Eval: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a model of the tiny data set on video it generates: prompt adherence, switches, continuity, long-run drift.",
        discussion: """
        Prompts are drawn from the tiny model's caption grammar (seeded), each video is generated and \
        decoded block by block and every frame is analysed as it arrives: background colours, the \
        object's colour, region, shape and centre, sharpness. Four parts: prompt adherence (--prompts \
        videos; rates of frames or blocks that follow each attribute); switch responsiveness (--switches \
        videos that change one attribute at --switch-block: blocks until the video follows, how often it \
        never does); continuity (the object's jump at the switch frame against its per-frame motion); and \
        one long run (--long-frames) measured in windows (sharpness, mean colour, presence), with the \
        drift from the first window to the last. --reference measures the ground truth drawn instead of \
        a model: the analysis' own ceiling. README.md ("reel eval") explains each figure.
        """
    )

    @OptionGroup var models: ModelOptions
    @Option(help: "Frame size (square, a multiple of 16; default: the model folder's, else 128, the tiny data set's).")
    var size: Int?
    @Option(help: "Seed of the prompts drawn and of the noise.")
    var seed: UInt64 = 0
    @Option(help: "Prompt-adherence videos (0: none).")
    var prompts = 40
    @Option(help: "Blocks (12 frames) per prompt-adherence video.")
    var blocks = 4
    @Option(help: "Switch videos (0: none); the switched attribute cycles colour, shape, motion, background.")
    var switches = 12
    @Option(help: "Block at which switch videos switch.")
    var switchBlock = 2
    @Option(help: "Blocks generated from the switch on.")
    var blocksAfterSwitch = 4
    @Option(help: "Frames of the long run (0: none), rounded up to whole blocks; e.g. 10000 for 10 minutes of video.")
    var longFrames = 1197
    @Option(help: "Blocks per window of the long run.")
    var windowBlocks = 8
    @Option(help: "Prompt of the long run, a caption of the grammar (default: one drawn that moves).")
    var longPrompt: String?
    @Option(help: "Video-to-video videos (0: none): drawn inputs restyled by prompts that change colour, background or both.")
    var restyle = 8
    @Option(help: "Input frames per video-to-video video (5 + 4k).")
    var restyleFrames = 65
    @Option(help: "Noise scale of video-to-video (default: as reel generate --input, the model folder's reel.json noise_scale, else StreamDiffusionV2's 0.8).")
    var noiseScale: Double?
    @Option(help: "Denoising steps of video-to-video (1-4: 700, 500, 400, 200).")
    var steps = 2
    @Option(help: "Image-to-video videos (0: none): a drawn image opens each, the prompt moves its object.")
    var animate = 8
    @Option(help: "Blocks per image-to-video video, the image's still block included.")
    var animateBlocks = 4
    @Flag(help: "Measure the ground truth drawn instead of a model's video (no model needed): the analysis' ceiling.")
    var reference = false
    @Flag(help: "Measure the ground truth drawn, passed through the model's encoder and decoder: the autoencoder's ceiling (no DiT).")
    var autoencoded = false
    @Option(help: "Write the full report (per prompt, per switch, per window) as JSON to this file.")
    var json: String?
    @OptionGroup var backendOptions: BackendOptions

    func evalOptions(frameSize: Int) -> EvalOptions {
        var o = EvalOptions()
        o.frameSize = frameSize
        o.seed = seed
        o.prompts = prompts
        o.blocksPerPrompt = blocks
        o.switches = switches
        o.switchBlock = switchBlock
        o.blocksFromSwitch = blocksAfterSwitch
        o.longFrames = longFrames
        o.windowBlocks = windowBlocks
        o.longPrompt = longPrompt
        o.restyleVideos = restyle
        o.restyleFrames = restyleFrames
        o.noiseScale = noiseScale ?? o.noiseScale
        o.restyleSteps = steps
        o.animateVideos = animate
        o.animateBlocks = animateBlocks
        return o
    }

    mutating func validate() throws {
        do { try evalOptions(frameSize: size ?? 128).validate() } catch { throw ValidationError(error.message) }
        if reference && autoencoded { throw ValidationError("--reference and --autoencoded are two different sources: give one.") }
        if let json {
            let folder = (json as NSString).deletingLastPathComponent
            var isDirectory: ObjCBool = false
            if !folder.isEmpty, !FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) || !isDirectory.boolValue {
                throw ValidationError("--json: the folder \(folder) does not exist.")
            }
        }
    }

    func run() async throws {
        do { try await evaluate() } catch let error as ReelError {
            printError(error)
            throw ExitCode.failure
        } catch let error as EvalError {
            printError(error)
            throw ExitCode.failure
        }
    }

    private func evaluate() async throws {
        let source: any FrameSource, options: EvalOptions
        if reference {
            source = ReferenceFrameSource(frameSize: size ?? 128)
            options = evalOptions(frameSize: size ?? 128)
        } else {
            let files = try models.resolve()
            var frameSize = size ?? 128
            if size == nil, let folderSize = files.size {
                let parts = folderSize.lowercased().split(separator: "x").compactMap { Int($0) }
                guard parts.count == 2, parts[0] == parts[1] else {
                    throw ReelError.input("the model folder's video size is \(folderSize); reel eval measures the tiny data set's square "
                                          + "frames: give --size")
                }
                frameSize = parts[0]
            }
            (source, options) = autoencoded ? try autoencodedSource(files: files, frameSize: frameSize)
                                            : try modelSource(files: files, frameSize: frameSize)
        }
        let runner = try EvalRunner(source: source, options: options, log: log)
        let report = try await runner.run()
        print(report.table)
        if let json {
            try report.json().write(to: URL(fileURLWithPath: json))
            log("wrote \(json)")
        }
    }

    /// The model's frames, with the options the model folder sets (fps, noise scale).
    private func modelSource(files: ModelFiles, frameSize: Int) throws -> (any FrameSource, EvalOptions) {
        if files.dit == nil {
            // python3 tools/dev/make_random_model.py --out DIR makes a folder with random weights.
            throw files.missing(.dit, option: "--dit FILE, or --reference to measure the ground truth")
        }
        let backend = try backendOptions.make()
        let t0 = Date()
        let model = try LoadedModel.load(files: files, decoder: true, encoder: restyle + animate > 0, backend: backend,
                                         decodeBackend: try backendOptions.makeDecodeBackend(),
                                         encodeBackend: try backendOptions.makeEncodeBackend(beside: backend), dtype: backendOptions.storageType,
                                         quantization: models.quantization, kvCache: models.kvCache, attention: models.attention, textBackend: backendOptions.makeTextBackend(),
                                         residency: backendOptions.residency(geometry: BlockGeometry(width: frameSize,
                                                                                                       height: frameSize)))
        if let plan = model.placement?.plan { log(plan.description) }
        log(String(format: "loaded the model (%@ decoder) in %.1f s", model.decoderName, Date().timeIntervalSince(t0)))
        if model.prompts.textEncoder.backend !== model.dit.backend {
            _ = try model.context(for: "a red circle moves left on a blue background")
            if let seconds = model.prompts.lastEncodeSeconds {
                log(String(format: "text encoder on %@: a new prompt took %.0f ms (each new prompt and switch does)",
                           model.prompts.textEncoder.backend.name, seconds * 1000))
            }
        }
        let source = try ModelFrameSource(model: model, frameSize: frameSize,
                                          summary: "model \(models.model ?? files.dit!) on \(backend.name) (\(backendOptions.storageType))")
        var options = evalOptions(frameSize: frameSize)
        options.fps = files.fps ?? (model.dit.config.runsLongLive2 ? 24 : options.fps)
        if options.restyleVideos + options.animateVideos > 0, model.dit.config.runsLongLive2 {
            log("note: LongLive 2.0 model: skipping video-to-video and image-to-video (measured on LongLive 1.0's schedule)")
            options.restyleVideos = 0
            options.animateVideos = 0
        }
        options.noiseScale = noiseScale ?? files.noiseScale ?? options.noiseScale
        if options.restyleVideos + options.animateVideos > 0, model.newEncoder() == nil {
            log("note: the model has no encoder (encoder.* in taehv.safetensors, or a Wan VAE): skipping video-to-video and "
                + "image-to-video (--restyle 0 --animate 0 says so)")
            options.restyleVideos = 0
            options.animateVideos = 0
        }
        return (source, options)
    }

    /// `--autoencoded`: the ground truth through the model's encoder and decoder (text-to-video plans only).
    private func autoencodedSource(files: ModelFiles, frameSize: Int) throws -> (any FrameSource, EvalOptions) {
        let backend = try backendOptions.make()
        let model = try LoadedModel.load(files: files, decoder: true, encoder: true, backend: backend,
                                         decodeBackend: try backendOptions.makeDecodeBackend(),
                                         encodeBackend: try backendOptions.makeEncodeBackend(beside: backend), dtype: backendOptions.storageType)
        let source = try AutoencodedFrameSource(model: model, frameSize: frameSize,
                                                summary: "the ground truth through the \(model.decoderName) encoder and decoder (the autoencoder's ceiling)")
        var options = evalOptions(frameSize: frameSize)
        options.fps = files.fps ?? (model.dit.config.runsLongLive2 ? 24 : options.fps)
        if options.restyleVideos + options.animateVideos > 0, model.dit.config.runsLongLive2 {
            log("note: LongLive 2.0 model: skipping video-to-video and image-to-video (measured on LongLive 1.0's schedule)")
            options.restyleVideos = 0
            options.animateVideos = 0
        }
        if options.restyleVideos + options.animateVideos > 0 {
            log("note: --autoencoded measures the text-to-video plans only: video-to-video and image-to-video skipped")
            options.restyleVideos = 0
            options.animateVideos = 0
        }
        return (source, options)
    }
}

