import Foundation
import ReelCore
import ReelMedia
import ReelIO
import ReelModels

/// What a pipeline runs: the Conditioner (prompt -> DiT context), the Generator's DiT on its stream, and
/// the decoder with the stream the Decoder stage issues on (another stream of the DiT's device, or another
/// device: placing the stage is choosing this stream).
public protocol PipelineModel: Sendable {
    var dit: WanDiT { get }
    var decodeStream: any Backend { get }
    /// A fresh streaming decoder for one video (nil: latents only).
    func newDecoder() -> (any VideoDecoder)?
    /// The Conditioner: the DiT's context for a prompt (cached; safe from any thread).
    func context(for prompt: String) throws -> WanDiT.PromptContext
}

/// Model parts put together by hand (random weights in `reel bench`, the warm-up's own decoder).
public struct ModelParts: PipelineModel, @unchecked Sendable {
    public let dit: WanDiT
    public let decodeStream: any Backend
    private let makeDecoder: (() -> (any VideoDecoder)?)
    private let conditioner: ((String) throws -> WanDiT.PromptContext)?

    /// - Parameters:
    ///   - newDecoder: makes each pipeline's own streaming decoder (nil from it: latents only). A decoder
    ///     keeps one video's causal state, so pipelines never share one.
    ///   - conditioner: the text -> context function; nil where the parts have no text encoder.
    public init(dit: WanDiT, newDecoder: @escaping () -> (any VideoDecoder)? = { nil }, decodeStream: (any Backend)? = nil,
                conditioner: ((String) throws -> WanDiT.PromptContext)? = nil) {
        self.dit = dit
        self.decodeStream = decodeStream ?? dit.backend
        self.makeDecoder = newDecoder
        self.conditioner = conditioner
    }

    public func newDecoder() -> (any VideoDecoder)? { makeDecoder() }

    public func context(for prompt: String) throws -> WanDiT.PromptContext {
        guard let conditioner else { throw ReelError.input("this model has no text encoder: prompts cannot change by text") }
        return try conditioner(prompt)
    }
}

/// One video's settings.
public struct PipelineRequest: Sendable {
    public var geometry: BlockGeometry
    /// Latent frames to generate (nil: until stopped).
    public var latentFrames: Int?
    public var granularity: Pipeline.Granularity
    /// Decode to frames (false: the chunks carry latents only).
    public var decode: Bool
    /// KV-recache on a prompt switch (LongLive 1.0's behaviour; off reproduces plain switching). A LongLive 2.0
    /// model never recaches: turning it off is refused there as a 1.0 option.
    public var recacheOnSwitch: Bool
    /// LongLive 1.0's schedule (a 1.0 model's; a 2.0 model refuses one other than the default).
    public var schedule: StreamingSchedule
    /// LongLive 2.0's schedule for a 2.0 model (nil: `.longLive2`; refused for a 1.0 model).
    public var longLive2Schedule: LongLive2Schedule?
    /// Clean latents the video starts from (an image or the end of a video), written into the cache before
    /// the first generated block; `latentFrames` counts the generated frames after them. A LongLive 2.0 model
    /// takes only an image, one latent frame `[1, H, W, C]`, as the first generated frame (and `latentFrames`
    /// counts it).
    public var context: VideoContext?
    /// Classifier-free guidance for a LongLive 2.0 model (`guidance_scale`, `negative_prompt`: every forward twice);
    /// nil or a scale of 1: none, as the shipped configs. Refused for a LongLive 1.0 model, whose loop has none.
    public var guidance: Guidance?

    /// A guidance scale and the negative prompt (LongLive 2.0's default negative prompt is empty).
    public struct Guidance: Sendable, Equatable {
        public var scale: Float
        public var negativePrompt: String
        public init(scale: Float, negativePrompt: String = "") { self.scale = scale; self.negativePrompt = negativePrompt }
    }

    public init(geometry: BlockGeometry, latentFrames: Int?, granularity: Pipeline.Granularity = .block,
                decode: Bool = true, recacheOnSwitch: Bool = true, schedule: StreamingSchedule = .longLive,
                longLive2Schedule: LongLive2Schedule? = nil, context: VideoContext? = nil, guidance: Guidance? = nil) {
        self.geometry = geometry; self.latentFrames = latentFrames; self.granularity = granularity
        self.decode = decode; self.recacheOnSwitch = recacheOnSwitch; self.schedule = schedule
        self.longLive2Schedule = longLive2Schedule; self.context = context; self.guidance = guidance
    }
}

/// Latents a video continues from (`ContextEncoder` makes them from an image or a video's last frames).
public struct VideoContext: @unchecked Sendable {
    /// Normalized latents `[n, H, W, C]`, n a whole number of blocks.
    public var latents: Tensor
    /// Whether the context's decoded frames open the output (an image: yes; a video being continued: no).
    public var shown: Bool

    public init(latents: Tensor, shown: Bool) {
        self.latents = latents; self.shown = shown
    }
}

/// One block generated and decoded (or one latent frame of it: see `Pipeline.Granularity`).
public struct VideoChunk: Sendable {
    /// The block, with its timings resolved.
    public var block: LatentBlock
    /// The block's latent frames this chunk's video frames come from (all of them per block).
    public var latentFrames: Range<Int>
    /// The video frames (nil when the pipeline does not decode).
    public var frames: RGBFrames?
    public var decodeSeconds: Double
    /// Whether this is the block's last chunk.
    public var endsBlock: Bool { latentFrames.upperBound == block.latents.shape[0] }
}

/// Prompt switches fixed before the video starts (a JSONL schedule, a benchmark's switch block): asked at
/// every block start with its latent frame, it returns the context that starts there, if any. A live
/// switch (`PipelineControl.switchPrompt`) at the same block wins.
public typealias PromptScript = @Sendable (_ latentFrame: Int) throws -> WanDiT.PromptContext?

/// A video as a pipeline of stages, each on a thread of its own issuing to its stream, joined by bounded
/// channels that carry tensors with the events that make them ready:
///
///     control ─▶ Conditioner + Generator ──[latents + ready event, 1]──▶ Decoder + Presenter ──[chunk, 1]──▶ consumer
///                (DiT's stream)                                           (decode stream)                    (sinks)
///
/// The Generator issues a block's DiT work and hands the block on without waiting for the device; the
/// Decoder's stream waits for the block's event on the device, decodes, and the Presenter converts the frames
/// to bytes where they are and downloads them once. Backpressure is the channels' capacity: a consumer that
/// stops pulling stops the Decoder, then the Generator. See docs/architecture.md.
public final class Pipeline: @unchecked Sendable {
    /// How finely decoded frames are handed on.
    public enum Granularity: Sendable {
        /// One chunk per block (9 frames for the first block of 3 latent frames, 12 after).
        case block
        /// One chunk per latent frame (1 frame for the stream's first, 4 after): the first frame arrives
        /// after one latent frame's decode instead of a block's, at no cost in throughput.
        case latentFrame
    }

    /// Prompt switches, pause, resume and stop, from any thread.
    public let control: ControlChannel
    /// LongLive 1.0's `StreamingGenerator`, or `LongLive2BlockGenerator` for a LongLive 2.0 model.
    public let generator: any BlockGenerator
    public let request: PipelineRequest
    private let model: any PipelineModel
    private let decoder: (any VideoDecoder)?
    private let script: PromptScript?

    /// - Parameters:
    ///   - prompt: the first prompt's context (`model.context(for:)`).
    ///   - noise: the noise source (Philox of a seed, or recorded noise for parity).
    ///   - control: where control messages come from (messages sent before the start apply at the first block).
    ///   - timestepForcing: replicas of the DiT, one per denoising step, each on a device of its own (the first is
    ///     `model.dit`): LiveAvatar's timestep-forcing pipeline over LongLive's schedule (`TimestepForcingGenerator`,
    ///     an approximation by name) instead of the exact schedule on one device.
    ///
    /// The model picks the schedule: LongLive 2.0's (`LongLive2BlockGenerator`) for a DiT with the Wan2.2 VAE's 48
    /// latent channels, LongLive 1.0's (`StreamingGenerator`) otherwise.
    public init(model: any PipelineModel, request: PipelineRequest, prompt: WanDiT.PromptContext,
                noise: any NoiseSource, control: ControlChannel = ControlChannel(), script: PromptScript? = nil,
                timestepForcing replicas: [WanDiT]? = nil) throws {
        self.model = model
        self.control = control
        self.request = request
        self.script = replicas == nil ? script : nil   // the pipelined generator asks the script as it feeds
        if let replicas {
            guard replicas.first === model.dit else {
                throw ReelError.input("timestep forcing: the first replica must be the pipeline's DiT (prompts are encoded with it)")
            }
            if request.context != nil || request.longLive2Schedule != nil || request.guidance != nil {
                throw ReelError.input("timestep forcing runs LongLive 1.0's schedule from noise: no context, no LongLive 2.0 "
                                      + "schedule and no guidance")
            }
            generator = try TimestepForcingGenerator(replicas: replicas, prompt: prompt, latentHeight: request.geometry.latentHeight,
                                                     latentWidth: request.geometry.latentWidth, schedule: request.schedule,
                                                     noise: noise, recacheOnSwitch: request.recacheOnSwitch,
                                                     latentFrames: request.latentFrames, script: script)
        } else if model.dit.config.runsLongLive2 {
            // The negative prompt is encoded once, like the reference's `unconditional_dict`.
            let guidance = try request.guidance.flatMap { g in
                g.scale == 1 ? nil : LongLive2Generator.Guidance(scale: g.scale, negative: try model.context(for: g.negativePrompt))
            }
            generator = try Self.longLive2Generator(model: model.dit, request: request, prompt: prompt, noise: noise,
                                                    guidance: guidance)
        } else {
            if let g = request.guidance, g.scale != 1 {
                throw ReelError.input("classifier-free guidance (scale \(g.scale)) is LongLive 2.0's option: LongLive 1.0's "
                                      + "loop has none, and this DiT (\(model.dit.config.inChannels) latent channels) runs 1.0's")
            }
            if request.longLive2Schedule != nil {
                throw ReelError.input("a LongLive 2.0 schedule needs a LongLive 2.0 model (a DiT of 48 latent channels); "
                                      + "this DiT takes \(model.dit.config.inChannels) and runs LongLive 1.0's schedule")
            }
            let g = try StreamingGenerator(model: model.dit, prompt: prompt, latentHeight: request.geometry.latentHeight,
                                           latentWidth: request.geometry.latentWidth, schedule: request.schedule, noise: noise)
            g.recacheOnSwitch = request.recacheOnSwitch
            generator = g
        }
        decoder = request.decode ? model.newDecoder() : nil
        if request.decode && decoder == nil { throw ReelError.input("the model has no decoder: ask for latents only") }
        if let context = request.context, !model.dit.config.runsLongLive2 {
            let g = request.geometry, n = request.schedule.framesPerBlock, c = model.dit.config.inChannels
            let dims = context.latents.shape.dims
            guard dims.count == 4, dims[0] > 0, dims[0] % n == 0, dims[1] == g.latentHeight, dims[2] == g.latentWidth, dims[3] == c else {
                throw ReelError.input("context latents must be [k * \(n), \(g.latentHeight), \(g.latentWidth), \(c)] for \(g), got \(context.latents.shape)")
            }
        }
    }

    /// LongLive 2.0's generator for `request`, refusing LongLive 1.0's options: its own block, sink and window
    /// (`LongLive2Schedule`), no recache, and an image (one latent frame) as its only context.
    static func longLive2Generator(model dit: WanDiT, request: PipelineRequest, prompt: WanDiT.PromptContext,
                                   noise: any NoiseSource, guidance: LongLive2Generator.Guidance? = nil) throws -> LongLive2BlockGenerator {
        let schedule = request.longLive2Schedule ?? .longLive2
        if !request.recacheOnSwitch || request.schedule != .longLive {
            throw ReelError.input("KV-recache and LongLive 1.0's schedule are LongLive 1.0 options: a LongLive 2.0 model "
                                  + "(48 latent channels) runs LongLive 2.0's schedule, where a new prompt changes only the "
                                  + "cross-attention; set longLive2Schedule instead")
        }
        let g = request.geometry
        guard g.latentFramesPerBlock == schedule.framesPerBlock, g.spatialStride == 16 else {
            throw ReelError.input("a LongLive 2.0 model makes blocks of \(schedule.framesPerBlock) latent frames of "
                                  + "16 pixels (the Wan2.2 VAE's); the request's geometry has blocks of "
                                  + "\(g.latentFramesPerBlock) and \(g.spatialStride)-pixel latents "
                                  + "(BlockGeometry.matching(_:) makes it)")
        }
        var image: Tensor?
        if let context = request.context {
            let (h, w, c) = (g.latentHeight, g.latentWidth, dit.config.inChannels)
            guard context.shown, context.latents.shape == Shape([1, h, w, c]) else {
                throw ReelError.input("a LongLive 2.0 model takes an image as its first frame (latents [1, \(h), \(w), "
                                      + "\(c)]), got \(context.latents.shape)\(context.shown ? "" : " to continue"): "
                                      + "continuing a video is LongLive 1.0's")
            }
            image = context.latents
        }
        let generator = try LongLive2Generator(model: dit, latentHeight: g.latentHeight, latentWidth: g.latentWidth,
                                               schedule: schedule, noise: noise, image: image, guidance: guidance)
        return LongLive2BlockGenerator(generator: generator, prompt: prompt)
    }

    /// Starts the stages and returns the chunks in order. Call once. Ending the iteration early (or
    /// dropping the sequence) stops every stage after the block in flight.
    public func chunks() -> AsyncThrowingStream<VideoChunk, Error> {
        let latents = Channel<LatentBlock>(capacity: 1)
        let output = Channel<VideoChunk>(capacity: 1)
        let run = PipelineRun(control: control, output: output, channels: [latents.cancel])
        let (generator, model, script, control, limit) = (self.generator, self.model, self.script, self.control, request.latentFrames)
        // A LongLive 2.0 model's image is its generator's first frame, not a context block.
        let context = generator is LongLive2BlockGenerator ? nil : request.context
        run.stages.start {
            GeneratorStage.run(generator: generator, conditioner: model, script: script, control: control,
                               context: context, latentFrames: limit, output: latents)
        }
        let (decoder, stream, granularity) = (UncheckedSendable(decoder), model.decodeStream, request.granularity)
        run.stages.start {
            DecoderStage.run(decoder: decoder.value, stream: stream, granularity: granularity, input: latents, output: output)
        }
        return AsyncThrowingStream(unfolding: { try await run.next() })
    }
}

/// A running pipeline: its output, its stages' threads, and how to stop them (a control message and every channel
/// cancelled, the output first). When the consumer's sequence goes, this goes and stops the stages.
final class PipelineRun: @unchecked Sendable {
    let output: Channel<VideoChunk>
    let stages = StageThreads()
    private let control: ControlChannel
    private let channels: [() -> Void]

    /// `channels`: the cancels of the channels between the stages, the output's excluded.
    init(control: ControlChannel, output: Channel<VideoChunk>, channels: [() -> Void]) {
        self.control = control; self.output = output; self.channels = channels
    }

    /// The next chunk; an error is thrown once the stages have stopped (`StageThreads`).
    func next() async throws -> VideoChunk? {
        do {
            return try await output.next()
        } catch {
            stop()
            await stages.ended()
            throw error
        }
    }

    func stop() {
        control.send(.stop)
        output.cancel()
        for cancel in channels.reversed() { cancel() }
    }

    deinit { stop() }
}

/// The Conditioner and Generator stage: between blocks it applies control messages (a live prompt is
/// encoded here, on the DiT's stream) and the script's switches, then issues the next block.
enum GeneratorStage {
    static func run(generator: any BlockGenerator, conditioner: any PipelineModel, script: PromptScript?,
                    control: ControlChannel, context: VideoContext?, latentFrames limit: Int?, output: Channel<LatentBlock>) {
        var state = ControlState()
        do {
            if let context {
                let n = generator.framesPerBlock, be = generator.model.backend
                for start in stride(from: 0, to: context.latents.shape[0], by: n) {
                    guard output.reserve() else { output.finish(); return }
                    let part = try be.slice(context.latents, axis: 0, start: start, length: n)
                    guard output.send(try generator.issueContextBlock(part, shown: context.shown)) else { output.finish(); return }
                }
            }
            // Frames generated after the context (the limit and `finish` count these).
            func generated() -> Int { generator.currentFrame - generator.contextFrames }
            while !output.isCancelled {
                if let limit, generated() >= limit { break }
                // A place for the block before its work is issued (at most one block waits for the decoder),
                // then the control messages that came meanwhile.
                guard output.reserve() else { break }
                state.apply(control.take(waiting: false))
                while state.paused && !state.stopped { state.apply(control.take(waiting: true)) }
                if state.stopped { break }
                if state.finishing && state.prompt == nil && generated() > 0 { break }
                let frame = generated()   // the script counts frames from the first generated one
                var switchedTo: String?
                if let text = state.prompt, let pipelined = generator as? TimestepForcingGenerator {
                    // Applies to the next block fed, which leaves the stages later: the generator labels it.
                    state.prompt = nil
                    pipelined.switchPrompt(to: try conditioner.context(for: text), text: text)
                } else if let text = state.prompt {
                    state.prompt = nil
                    generator.switchPrompt(to: try conditioner.context(for: text))
                    switchedTo = text
                } else if let scripted = try script?(frame) {
                    generator.switchPrompt(to: scripted)
                }
                var block = try generator.issueBlock()
                if let switchedTo { block.switchedTo = switchedTo }
                guard output.send(block) else { break }
            }
            (generator as? TimestepForcingGenerator)?.stop()
            output.finish()
        } catch {
            (generator as? TimestepForcingGenerator)?.stop()
            output.finish(throwing: error)
        }
    }
}

/// The Decoder and Presenter stage: the block's latents handed to the decode stream (an event wait on the
/// device, or a copy from another device), decoded a block or a latent frame at a time, converted to bytes
/// on the device (`Backend.rgb8`) and downloaded once.
enum DecoderStage {
    static func run(decoder: (any VideoDecoder)?, stream: any Backend, granularity: Pipeline.Granularity,
                    input: Channel<LatentBlock>, output: Channel<VideoChunk>) {
        do {
            // A place for the block's first chunk before taking the block: a block waits in the latents channel,
            // not in this stage, while the consumer is behind.
            while output.reserve(), var block = try input.receive() {
                let count = block.latents.shape[0]
                guard let decoder else {
                    if block.role == .context(shown: false) { output.release(); continue }
                    block = try block.resolvingTimings()
                    guard output.send(VideoChunk(block: block, latentFrames: 0..<count, frames: nil, decodeSeconds: 0)) else { break }
                    continue
                }
                let parts = granularity == .block ? [0..<count] : (0..<count).map { $0..<($0 + 1) }
                let t0 = ContinuousClock.now
                // `block` keeps the latents alive until the frames are downloaded (which waits for this stream).
                let latents = try block.latents.handedOver(to: stream, ready: block.ready)
                if block.role == .context(shown: false) {
                    // Frames the output already has: decoded only to prime the decoder's causal state.
                    _ = try decoder.decode(try latents.reshaped([1] + latents.shape.dims))
                    try stream.synchronize()   // `block` (its latents) may go once the decode has read them
                    output.release()
                    continue
                }
                var handOverSeconds = (ContinuousClock.now - t0).seconds
                for range in parts {
                    let start = ContinuousClock.now
                    let part = try latents.narrowed(axis: 0, start: range.lowerBound, length: range.count)
                    let frames = try RGBFrames(modelOutput: decoder.decode(try part.reshaped([1] + part.shape.dims)))
                    let seconds = (ContinuousClock.now - start).seconds + handOverSeconds
                    handOverSeconds = 0
                    // The frames are on the host, so the decode stream has passed the block's event: its
                    // timings are final without a wait.
                    if range.lowerBound == 0 { block = try block.resolvingTimings() }
                    guard output.send(VideoChunk(block: block, latentFrames: range, frames: frames, decodeSeconds: seconds)) else {
                        input.cancel()
                        return
                    }
                }
            }
            output.finish()
        } catch {
            input.cancel()
            output.finish(throwing: error)
        }
    }
}

extension VideoChunk {
    /// A chunk made outside a pipeline (`reel serve --test-pattern`).
    public init(block: LatentBlock, latentFrames: Range<Int>, frames: RGBFrames, decodeSeconds: Double) {
        self.init(block: block, latentFrames: latentFrames, frames: Optional(frames), decodeSeconds: decodeSeconds)
    }
}
