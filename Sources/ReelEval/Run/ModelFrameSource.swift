import ReelCore
import ReelMedia
import ReelIO
import ReelModels
import ReelPipeline

/// Frames from a model: each video streams through its own generator (fresh KV cache, Philox noise of
/// the plan's seed) and decoder, with prompt switches at the plan's blocks, as `reel generate` runs them.
///
/// The eval counts in LongLive 1.0's blocks (9 frames, then 12: `VideoPlan`); a LongLive 2.0 model makes blocks of
/// 8 latent frames (29 frames, then 32), so its frames are handed on cut into the plan's blocks, the frames past
/// the plan's end dropped, and a switch starts at the first of the model's blocks at or after the plan's (up to 7
/// latent frames, 28 video frames, late: the switch figures count that lag).
public struct ModelFrameSource: FrameSource {
    public let model: LoadedModel
    public let frameSize: Int
    public let summary: String
    /// The model's blocks at the eval's size (`BlockGeometry.matching`).
    public let geometry: BlockGeometry

    public init(model: LoadedModel, frameSize: Int, summary: String) throws {
        guard model.decoderName != "none" else {
            throw ReelError.input("reel eval measures decoded frames: the model needs a decoder (taehv.safetensors or vae.safetensors)")
        }
        self.model = model
        self.frameSize = frameSize
        self.summary = summary
        geometry = try BlockGeometry(width: frameSize, height: frameSize).matching(model.dit.config)
    }

    public func generate(_ plan: VideoPlan, _ body: (RGBFrames) async throws -> Void) async throws {
        let contexts = UncheckedSendable(try plan.prompts.map { try model.context(for: $0) })
        let n = geometry.latentFramesPerBlock
        let request = PipelineRequest(geometry: geometry, latentFrames: plan.latentFrames)
        let pipeline = try Pipeline(model: model, request: request, prompt: contexts.value[0], noise: PhiloxNoise(seed: plan.seed)) { frame in
            let prompt = plan.promptIndex(atLatentFrame: frame)
            return frame > 0 && prompt != plan.promptIndex(atLatentFrame: frame - n) ? contexts.value[prompt] : nil
        }
        try await Self.handOn(pipeline.chunks(), asBlocks: plan.blocks, body)
    }

    /// The stream's frames as the plan's first `blocks` blocks (`VideoPlan.frames(inBlock:)`), whatever the model's
    /// blocks are (for LongLive 1.0's, chunk for chunk); the iteration ends, and the pipeline with it, after them.
    static func handOn(_ chunks: AsyncThrowingStream<VideoChunk, Error>, asBlocks blocks: Int,
                       _ body: (RGBFrames) async throws -> Void) async throws {
        var pending: [UInt8] = [], block = 0
        for try await chunk in chunks {
            guard let frames = chunk.frames else { throw ReelError.input("the stream returned no frames (no decoder)") }
            pending += frames.pixels
            while block < blocks, pending.count >= VideoPlan.frames(inBlock: block) * frames.frameBytes {
                let bytes = VideoPlan.frames(inBlock: block) * frames.frameBytes
                let part = Array(pending[..<bytes])
                try await body(try RGBFrames(width: frames.width, height: frames.height, pixels: part))
                pending.removeFirst(bytes)
                block += 1
            }
            if block == blocks { break }
        }
        guard block == blocks else {
            throw ReelError.input("the stream ended after \(block) of the plan's \(blocks) blocks")
        }
    }

    /// Throws for a LongLive 2.0 model: the input evals are built on LongLive 1.0's still first block and
    /// StreamDiffusionV2's video-to-video.
    func checkInputs(_ what: String) throws {
        guard model.dit.config.runsLongLive2 else { return }
        throw ReelError.input("\(what) is measured on LongLive 1.0's schedule; this model is LongLive 2.0 (48 latent "
                              + "channels): run reel eval with --restyle 0 --animate 0")
    }
}

extension ModelFrameSource: InputFrameSource {
    /// `reel generate --input`'s pipeline: StreamDiffusionV2's schedule with the eval's noise scale and steps.
    public func restyle(_ plan: RestylePlan, input: SceneInput, options: EvalOptions, _ body: (RGBFrames) async throws -> Void) async throws {
        try checkInputs("video-to-video")
        guard let encoder = model.newEncoder() else { throw ReelError.input("video-to-video needs the model's encoder (encoder.* in taehv.safetensors)") }
        var schedule = StreamV2VSchedule.streamDiffusionV2
        schedule.denoisingSteps = Array([700, 500, 400, 200].prefix(options.restyleSteps))
        schedule.noiseScale = options.noiseScale
        let pipeline = try VideoToVideoPipeline(model: model, encoder: encoder, encodeStream: model.encodeStream, input: input,
                                                request: VideoToVideoRequest(geometry: BlockGeometry(width: frameSize, height: frameSize),
                                                                             schedule: schedule),
                                                prompt: try model.context(for: plan.prompt.caption), noise: PhiloxStreamNoise(seed: plan.seed))
        for try await chunk in pipeline.chunks() {
            guard let frames = chunk.frames else { throw ReelError.input("the stream returned no frames (no decoder)") }
            try await body(frames)
        }
    }

    /// `reel generate --image`'s path: the image encoded as a still first block of clean context, shown.
    public func animate(_ plan: AnimatePlan, image: RGBFrames, _ body: (RGBFrames) async throws -> Void) async throws {
        try checkInputs("image-to-video")
        guard let encoder = model.newEncoder() else { throw ReelError.input("image-to-video needs the model's encoder (encoder.* in taehv.safetensors)") }
        let geometry = BlockGeometry(width: frameSize, height: frameSize)
        let context = try ContextEncoder.image(image, encoder: encoder, geometry: geometry, on: model.encodeStream, for: model.dit.backend)
        let generated = 3 * plan.blocks - context.latents.shape[0]
        let request = PipelineRequest(geometry: geometry, latentFrames: generated, context: context)
        let pipeline = try Pipeline(model: model, request: request, prompt: try model.context(for: plan.scene.caption),
                                    noise: PhiloxNoise(seed: plan.seed)) { _ in nil }
        for try await chunk in pipeline.chunks() {
            guard let frames = chunk.frames else { throw ReelError.input("the stream returned no frames (no decoder)") }
            try await body(frames)
        }
    }
}

/// The ground truth drawn, passed through a model's encoder and decoder (streaming, block by block): what a DiT
/// that made the data set's latents exactly would show, the autoencoder's ceiling on every figure.
public struct AutoencodedFrameSource: FrameSource {
    public let renderer: SceneRenderer
    public let model: LoadedModel
    public let summary: String

    public init(model: LoadedModel, frameSize: Int, summary: String) throws {
        guard model.decoderName != "none", model.newEncoder() != nil else {
            throw ReelError.input("--autoencoded needs the model's encoder and decoder (encoder.* and decoder.* in taehv.safetensors)")
        }
        self.model = model
        renderer = SceneRenderer(frameSize: frameSize)
        self.summary = summary
    }

    public func generate(_ plan: VideoPlan, _ body: (RGBFrames) async throws -> Void) async throws {
        guard let encoder = model.newEncoder(), let decoder = model.newDecoder() else {
            throw ReelError.input("--autoencoded needs the model's encoder and decoder")
        }
        let (stream, decodeStream) = (model.encodeStream, model.decodeStream)
        for b in 0..<plan.blocks {
            let first = VideoPlan.firstFrame(ofBlock: b)
            let frames = try renderer.render(plan.timeline, frames: first..<(first + VideoPlan.frames(inBlock: b)))
            let x = try frames.modelInput(on: stream, dtype: encoder.dtype)
            guard let latents = try encoder.encode(x) else { throw ReelError.input("block \(b) made no latent frame") }
            let z = try latents.handedOver(to: decodeStream, ready: try stream.recordEvent())
            let video = try decoder.decode(z)
            try await body(try RGBFrames(modelOutput: video))
        }
    }
}
