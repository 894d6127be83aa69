import Foundation
import Testing
import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels

/// One block of the DiT's layer math against diffusers' WanTransformer3DModel
/// (fixture: tools/fixtures/dit/make_diffusers_fixture.py). A fresh cache at frame 0 makes Reel's
/// causal model attend only within the block: diffusers' bidirectional attention over those frames.
@Suite struct WanDiTDiffusersTests {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/wan_dit")
    let backend = CPUBackend()

    func velocity(dropCrossAttention: Bool = false) throws -> (ours: [Float], expected: [Float]) {
        let source = try WeightFileTensors(path: Self.dir.appendingPathComponent("transformer.safetensors").path)
        #expect(WanDiT.Layout.detect(source.keys) == .diffusers)
        let dit = try WanDiT.load(from: source, heads: 2, backend: backend)
        let c = dit.config
        #expect(c.dim == 64 && c.layers == 2 && c.ffnDim == 96 && c.textDim == 48 && c.crossAttentionNorm)
        let cases = try WeightFiles.open(Self.dir.appendingPathComponent("case.safetensors").path)
        var promptEmbedding = try cases.tensor("prompt", on: backend)
        if dropCrossAttention { promptEmbedding = try backend.zeros(promptEmbedding.shape) }
        let prompt = try dit.encodePrompt(promptEmbedding)
        let latents = try cases.tensor("latents", on: backend)
        let cache = try WanKVCache(backend: backend, layers: c.layers, tokensPerFrame: 3 * 5, heads: c.heads,
                                   headDim: c.headDim, sinkFrames: 3, windowFrames: 9, dtype: .f32)
        let v = try dit.forward(latents, timestep: 937.5, prompt: prompt, cache: cache, access: .init(startFrame: 0))
        return (try #require(v).toFloats(), try cases.tensor("velocity", on: backend).toFloats())
    }

    func nmse(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for i in a.indices { num += Double(a[i] - b[i]) * Double(a[i] - b[i]); den += Double(b[i]) * Double(b[i]) }
        return num / den
    }

    @Test func oneBlockMatchesDiffusers() throws {
        let (ours, expected) = try velocity()
        let e = nmse(ours, expected)
        print("diffusers WanTransformer3DModel one-block nmse \(e)")
        // diffusers computes the timestep sinusoid in float32, the Wan reference (and Reel) in float64.
        #expect(e < 1e-8)
        // The check can fail: without the prompt the output moves far away.
        let (wrong, _) = try velocity(dropCrossAttention: true)
        #expect(nmse(wrong, expected) > 1e-3)
    }
}
