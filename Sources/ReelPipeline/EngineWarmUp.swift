import Foundation
import ReelCore
import ReelModels

/// Runs the decoder and then the DiT once each, alone, at one video size, before any video is made.
///
/// The CUDA backend picks its GEMM algorithms and cuDNN engines by timing candidates on the first use
/// of each shape, and compiles its kernels then. Done by the first video, the choices are timed while
/// the decoder's stream and the DiT's run beside each other and disturb the timings, and one binary's
/// end-to-end rate varied by a quarter from run to run; alone, each model's choices are its own and the
/// runs agree (docs/perf-notes.md, session 4). The first video no longer pays for the compiling.
public enum EngineWarmUp {
    /// Decodes 2 blocks of random latents, then streams 6 blocks of the DiT (the cache filling, full,
    /// and a prompt switch at block 5: with its recache for LongLive 1.0) with no decoder. `decoder` is reset
    /// after. `geometry` is the model's (`BlockGeometry.matching`): its blocks are the shapes the videos will use.
    public static func run(dit: WanDiT, prompt: WanDiT.PromptContext, switchTo second: WanDiT.PromptContext,
                           decoder: (any VideoDecoder)?, decodeStream: any Backend, geometry: BlockGeometry) async throws {
        let n = geometry.latentFramesPerBlock
        if let decoder {
            for block in 0..<2 {
                let shape = Shape([1, n, geometry.latentHeight, geometry.latentWidth, decoder.latentChannels])
                let latents = try decodeStream.randomNormal(shape, seed: 50 + UInt64(block), offset: 0, dtype: dit.dtype)
                _ = try decoder.decode(latents)
            }
            try decodeStream.synchronize()
            decoder.reset()
        }
        let parts = ModelParts(dit: dit, decodeStream: decodeStream)
        let request = PipelineRequest(geometry: geometry, latentFrames: 6 * n, decode: false)
        let pipeline = try Pipeline(model: parts, request: request, prompt: prompt, noise: PhiloxNoise(seed: 8)) { frame in
            frame == 5 * n ? second : nil
        }
        for try await _ in pipeline.chunks() {}
        try dit.backend.synchronize()
    }
}

extension LoadedModel {
    /// `EngineWarmUp.run` for videos of `width` x `height` in this model's blocks (prompts: the empty one, then a
    /// short one). Throws for a size the model cannot make.
    public func warmUp(width: Int, height: Int) async throws {
        let geometry = try BlockGeometry(width: width, height: height).matching(dit.config)
        try await EngineWarmUp.run(dit: dit, prompt: try context(for: ""), switchTo: try context(for: "warm up"),
                                   decoder: newDecoder(), decodeStream: decodeStream, geometry: geometry)
    }
}
