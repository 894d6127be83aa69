import ReelCore
import ReelMedia
import ReelIO
import ReelModels
import ReelPipeline

/// Frames from a model: each video streams through its own generator (fresh KV cache, Philox noise of
/// the plan's seed) and decoder, with prompt switches (KV-recache) at the plan's blocks, as
/// `reel generate` runs them.
public struct ModelFrameSource: FrameSource {
    public let model: LoadedModel
    public let frameSize: Int
    public let summary: String

    public init(model: LoadedModel, frameSize: Int, summary: String) throws {
        guard model.decoderName != "none" else {
            throw ReelError.input("reel eval measures decoded frames: the model needs a decoder (taehv.safetensors or vae.safetensors)")
        }
        self.model = model
        self.frameSize = frameSize
        self.summary = summary
    }

    public func generate(_ plan: VideoPlan, _ body: (RGBFrames) async throws -> Void) async throws {
        let contexts = UncheckedSendable(try plan.prompts.map { try model.context(for: $0) })
        let request = PipelineRequest(geometry: BlockGeometry(width: frameSize, height: frameSize), latentFrames: plan.latentFrames)
        let pipeline = try Pipeline(model: model, request: request, prompt: contexts.value[0], noise: PhiloxNoise(seed: plan.seed)) { frame in
            plan.promptStarting(atLatentFrame: frame).map { contexts.value[$0] }
        }
        for try await chunk in pipeline.chunks() {
            guard let frames = chunk.frames else { throw ReelError.input("the stream returned no frames (no decoder)") }
            try await body(frames)
        }
    }
}
