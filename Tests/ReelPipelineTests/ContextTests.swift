import Foundation
import Testing
import ReelCore
import ReelMedia
import ReelCPU
import ReelModels
@testable import ReelPipeline

/// Noise of another frame range: a run whose first block is given as context draws the noise the same
/// run made its second block with.
final class ShiftedNoise: NoiseSource {
    let base: any NoiseSource, frames: Int
    init(_ base: any NoiseSource, frames: Int) { self.base = base; self.frames = frames }
    func initial(startFrame: Int, count: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor {
        try base.initial(startFrame: startFrame + frames, count: count, shape: shape, on: backend)
    }
    func renoise(startFrame: Int, step: Int, count: Int, shape: (h: Int, w: Int, c: Int), on backend: any Backend) throws -> Tensor {
        try base.renoise(startFrame: startFrame + frames, step: step, count: count, shape: shape, on: backend)
    }
}

/// Context blocks (image-to-video, continuing a video): clean latents written into the cache before the
/// first generated block, as Self-Forcing's `initial_latent` path does.
@Suite struct ContextTests {
    /// Reel's own GEMM: runs are compared bit for bit.
    let backend = CPUBackend(gemm: .own)
    let config = WanDiTConfig(dim: 32, ffnDim: 64, heads: 2, layers: 2, textDim: 16)

    func dit() throws -> (WanDiT, WanDiT.PromptContext, WanDiT.PromptContext) {
        let dit = try WanDiT.load(from: WanDiT.randomWeights(config, on: backend, seed: 3), heads: 2, backend: backend)
        let a = try dit.encodePrompt(try backend.randomNormal([4, 16], seed: 1, offset: 0, dtype: .f32))
        let b = try dit.encodePrompt(try backend.randomNormal([4, 16], seed: 2, offset: 0, dtype: .f32))
        return (dit, a, b)
    }

    /// A block given as context leaves the cache as if the generator had made it: the next block is the
    /// same, bit for bit, as the second block of a run that generated the first (its clean pass at
    /// `contextNoise` 0 writes the same keys as the context pass at timestep 0). The noise of generated
    /// frames is indexed without the context frames (Self-Forcing's rule), so the run with context draws
    /// frame 0's noise for its first generated block.
    @Test func contextBlockActsAsAGeneratedBlock() throws {
        let (model, prompt, other) = try dit()
        let made = try StreamingGenerator(model: model, prompt: prompt, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5))
        let first = try made.nextBlock(), second = try made.nextBlock()

        let given = try StreamingGenerator(model: model, prompt: prompt, latentHeight: 4, latentWidth: 4,
                                           noise: ShiftedNoise(PhiloxNoise(seed: 5), frames: 3))
        let context = try given.issueContextBlock(first.latents, shown: true).resolvingTimings()
        #expect(context.role == .context(shown: true) && context.startFrame == 0 && context.timings.forwards == 1)
        #expect(given.contextFrames == 3 && given.currentFrame == 3)
        let next = try given.nextBlock()
        #expect(next.startFrame == 3 && next.role == .generated)
        #expect(try next.latents.toFloats() == second.latents.toFloats())

        // Unshifted noise: the first generated block takes frame 0's noise, so it differs from `second`.
        let plain = try StreamingGenerator(model: model, prompt: prompt, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5))
        _ = try plain.issueContextBlock(first.latents, shown: false)
        #expect(try plain.nextBlock().latents.toFloats() != second.latents.toFloats())

        // A switch right after the context recaches it with the new prompt (one pass over its 3 frames).
        let switched = try StreamingGenerator(model: model, prompt: prompt, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5))
        _ = try switched.issueContextBlock(first.latents, shown: true)
        switched.switchPrompt(to: other)
        let afterSwitch = try switched.nextBlock()
        #expect(afterSwitch.promptIndex == 1 && afterSwitch.timings.recacheSeconds >= 0)
        #expect(afterSwitch.timings.forwards == 1 + made.flow.timesteps.count)   // the recache, then the steps
    }

    @Test func contextIsCheckedAndComesFirst() throws {
        let (model, prompt, _) = try dit()
        let g = try StreamingGenerator(model: model, prompt: prompt, latentHeight: 4, latentWidth: 4, noise: PhiloxNoise(seed: 5))
        #expect(throws: ReelError.self) { try g.issueContextBlock(try backend.zeros([2, 4, 4, 16]), shown: true) }
        #expect(throws: ReelError.self) { try g.issueContextBlock(try backend.zeros([3, 4, 2, 16]), shown: true) }
        let block = try g.nextBlock()
        #expect(throws: ReelError.self) { try g.issueContextBlock(block.latents, shown: true) }
    }

    func tinyModel() throws -> (ModelParts, WanDiT.PromptContext, TinyEncoder) {
        let (model, prompt, _) = try dit()
        let decoder = try TinyDecoder.load(from: TinyDecoder.randomWeights(channels: [16, 8, 8, 8], on: backend, seed: 4), on: backend)
        let encoder = try TinyEncoder.load(from: TinyEncoder.randomWeights(channels: 8, on: backend, seed: 6), on: backend)
        return (ModelParts(dit: model, newDecoder: { StreamingTinyDecoder(model: decoder) }), prompt, encoder)
    }

    func run(_ model: ModelParts, prompt: WanDiT.PromptContext, context: VideoContext?, latentFrames: Int) async throws -> [VideoChunk] {
        let request = PipelineRequest(geometry: BlockGeometry(width: 32, height: 32), latentFrames: latentFrames, context: context)
        let pipeline = try Pipeline(model: model, request: request, prompt: prompt, noise: PhiloxNoise(seed: 9))
        var chunks: [VideoChunk] = []
        for try await chunk in pipeline.chunks() { chunks.append(chunk) }
        return chunks
    }

    /// An image opens the video: its still clip's 9 decoded frames come first, then the generated blocks;
    /// a continued video's context is decoded (the decoder's causal state) but not shown, and the frames
    /// after it are the same as when it is shown.
    @Test func imageAndContinuationThroughThePipeline() async throws {
        let (model, prompt, tiny) = try tinyModel()
        let geometry = BlockGeometry(width: 32, height: 32)
        var pixels = [UInt8](repeating: 0, count: 32 * 32 * 3)
        for i in 0..<pixels.count { pixels[i] = UInt8((i * 37) % 251) }
        let image = try RGBFrames(width: 32, height: 32, pixels: pixels)
        let encoder = StreamingTAEHVEncoder(model: tiny)
        let context = try ContextEncoder.image(image, encoder: encoder, geometry: geometry, on: backend, for: backend)
        #expect(context.latents.shape == [3, 4, 4, 16] && context.shown)

        let shown = try await run(model, prompt: prompt, context: context, latentFrames: 6)
        #expect(shown.map { $0.frames?.count ?? 0 } == [9, 12, 12])
        #expect(shown.map(\.block.role) == [.context(shown: true), .generated, .generated])
        let hidden = try await run(model, prompt: prompt, context: VideoContext(latents: context.latents, shown: false), latentFrames: 6)
        #expect(hidden.map { $0.frames?.count ?? 0 } == [12, 12])
        #expect(hidden.map { $0.frames?.pixels ?? [] } == shown.dropFirst().map { $0.frames?.pixels ?? [] })

        // Context of the wrong size for the video is refused before anything runs.
        let wrong = VideoContext(latents: try backend.zeros([3, 2, 2, 16]), shown: true)
        await #expect(throws: ReelError.self) { _ = try await run(model, prompt: prompt, context: wrong, latentFrames: 3) }
    }

    /// A video to continue gives as many whole blocks as fit the attended frames, from its last frames.
    @Test func continuationTakesTheLastWholeBlocks() throws {
        let (_, _, tiny) = try tinyModel()
        let geometry = BlockGeometry(width: 32, height: 32)
        let frameBytes = 32 * 32 * 3
        func video(_ frames: Int) throws -> RGBFrames {
            try RGBFrames(width: 32, height: 32, pixels: (0..<(frames * frameBytes)).map { UInt8(($0 / frameBytes * 9 + $0) % 256) })
        }
        let encoder = StreamingTAEHVEncoder(model: tiny)
        let long = try ContextEncoder.continuation(try video(50), encoder: encoder, geometry: geometry, maxLatentFrames: 12,
                                                   on: backend, for: backend)
        #expect(long.latents.shape[0] == 12 && !long.shown)       // 45 frames: 12 latents
        let short = try ContextEncoder.continuation(try video(20), encoder: encoder, geometry: geometry, maxLatentFrames: 12,
                                                    on: backend, for: backend)
        #expect(short.latents.shape[0] == 3)                      // 20 frames hold one block (9), not two (21)
        // The last 9 frames alone give the same latents as the continuation of a 20-frame video.
        let tail = try RGBFrames(width: 32, height: 32, pixels: Array(try video(20).pixels[(11 * frameBytes)...]))
        #expect(try ContextEncoder.encode(tail, encoder: encoder, geometry: geometry, on: backend, for: backend).toFloats()
                == short.latents.toFloats())
        #expect(throws: ReelError.self) {
            try ContextEncoder.continuation(try video(8), encoder: encoder, geometry: geometry, maxLatentFrames: 12, on: backend, for: backend)
        }
        let small = try RGBFrames(width: 16, height: 16, pixels: [UInt8](repeating: 0, count: 16 * 16 * 3))
        #expect(throws: ReelError.self) { try ContextEncoder.image(small, encoder: encoder, geometry: geometry, on: backend, for: backend) }
    }
}
