import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelIO
import ReelModels
@testable import ReelPipeline

/// LongLive's streaming generation with the DiT spread over N CPU devices (sequence parallelism) makes the
/// one-device video bit for bit: blocks that wrap the cache's ring, a prompt switch with KV-recache, the
/// clean passes. Both sides use Reel's own GEMM, which rounds a row the same whatever the row count.
@Suite struct SequenceParallelGeneratorTests {
    /// Two denoising steps, a window of two blocks besides the sink: six blocks wrap the ring twice.
    static let schedule = StreamingSchedule(framesPerBlock: 3, sinkFrames: 3, attentionFrames: 9, denoisingSteps: [1000, 500])

    /// Every block's latents of a run of `blocks` blocks, switching to `second` before block `switchAt`.
    func video(_ model: WanDiT, first: Tensor, second: Tensor, latent: (h: Int, w: Int), blocks: Int, switchAt: Int,
               recache: Bool = true) throws -> [[Float]] {
        let generator = try StreamingGenerator(model: model, prompt: try model.encodePrompt(first), latentHeight: latent.h,
                                               latentWidth: latent.w, schedule: Self.schedule, noise: PhiloxNoise(seed: 7))
        generator.recacheOnSwitch = recache
        var out: [[Float]] = []
        for b in 0..<blocks {
            if b == switchAt { generator.switchPrompt(to: try model.encodePrompt(second)) }
            let block = try generator.nextBlock()
            #expect(block.latents.backend === model.backend)
            out.append(try block.latents.toFloats())
        }
        return out
    }

    func expectSame(_ a: [[Float]], _ b: [[Float]], _ what: String) {
        for (i, (x, y)) in zip(a, b).enumerated() { #expect(x == y, "\(what): block \(i)") }
    }

    /// A random Wan DiT with 12 heads (as Wan 1.3B) on 2, 3 and 4 ranks; 4 x 6 latents give 6 tokens per
    /// frame, so 4 ranks hold 2 rows of each frame, one of them padding.
    @Test(arguments: [2, 3, 4])
    func randomWanMakesTheSameVideo(ranks: Int) throws {
        let config = WanDiTConfig(dim: 96, ffnDim: 128, heads: 12, layers: 2, textDim: 16)
        let backend = CPUBackend(gemm: .own)
        let weights = try WanDiT.randomWeights(config, on: backend, seed: 21)
        let single = try WanDiT.load(from: weights, heads: 12, backend: backend).withTextLength(8)
        let comm = try CPUCommunicator(ranks: ranks, gemm: .own)
        let parallel = try WanDiT.loadSequenceParallel(from: weights, heads: 12, communicator: comm).withTextLength(8)
        let first = try backend.randomNormal([5, 16], seed: 1, offset: 0, dtype: .f32)
        let second = try backend.randomNormal([6, 16], seed: 2, offset: 0, dtype: .f32)
        let reference = try video(single, first: first, second: second, latent: (4, 6), blocks: 6, switchAt: 3)
        let spread = try video(parallel, first: first, second: second, latent: (4, 6), blocks: 6, switchAt: 3)
        expectSame(spread, reference, "\(ranks) ranks")
        // Negative control: the same run without the recache differs from the block after the switch on.
        let plain = try video(parallel, first: first, second: second, latent: (4, 6), blocks: 4, switchAt: 3, recache: false)
        #expect(plain[2] == reference[2] && plain[3] != reference[3])
    }

    /// The shipped tiny model (3 heads, 8 layers, 128 x 128 video: 64 tokens per frame, padded to 66 on 3 ranks).
    @Test func shippedTinyModelOnThreeRanks() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Models/tiny/dit.safetensors").path
        let file = try WeightFileTensors(path: path)
        let backend = CPUBackend(gemm: .own)
        let single = try WanDiT.load(from: file, heads: 3, backend: backend).withTextLength(32)
        let comm = try CPUCommunicator(ranks: 3, gemm: .own)
        let parallel = try WanDiT.loadSequenceParallel(from: file, heads: 3, communicator: comm).withTextLength(32)
        #expect(throws: ReelError.self) {
            _ = try WanDiT.loadSequenceParallel(from: file, heads: 3, communicator: try CPUCommunicator(ranks: 2))
        }
        let first = try backend.randomNormal([7, single.config.textDim], seed: 3, offset: 0, dtype: .f32)
        let second = try backend.randomNormal([9, single.config.textDim], seed: 4, offset: 0, dtype: .f32)
        let reference = try video(single, first: first, second: second, latent: (16, 16), blocks: 4, switchAt: 2)
        let spread = try video(parallel, first: first, second: second, latent: (16, 16), blocks: 4, switchAt: 2)
        expectSame(spread, reference, "tiny model, 3 ranks")
    }
}
