import Testing
import ReelModels
@testable import ReelPipeline

/// The FLOP counts the benchmark floors use, against REFERENCE.md section 5's figures for the 1.3B
/// model and the Wan VAE at 480x832 (1560 tokens per latent frame, 60 x 104 latents).
@Suite struct ComputeCostTests {
    @Test func ditForwardAt480x832() {
        let f = ComputeCost.ditForward(.wan1_3B, queries: 4680, keys: 18720)
        // ~28 TFLOP: 11.7 linear + 16.1 self-attention + 0.4 cross-attention.
        #expect(abs(f / 1e12 - 28.2) < 0.4, "\(f / 1e12) TFLOP")
        let block = ComputeCost.ditBlock(.wan1_3B, schedule: .longLive, tokensPerFrame: 1560)
        #expect(abs(block / f - 5) < 1e-9)
    }

    @Test func vaeDecodeAt480x832() {
        // ~3.4 TFLOP per decoded frame; a latent frame gives 4.
        let perFrame = ComputeCost.vaeDecodeLatentFrame(.wan21, height: 60, width: 104) / 4
        #expect(abs(perFrame / 1e12 - 3.4) < 0.3, "\(perFrame / 1e12) TFLOP per frame")
    }

    @Test func vaeEncodeAt480x832() {
        // ~2.0 TFLOP per input frame (4 frames make a latent frame): 96 channels at full resolution dominate
        // (stage 0's four 3x3x3 convs are 3.2 TFLOP of the 8.1 a latent frame).
        let perFrame = ComputeCost.vaeEncodeLatentFrame(.wan21, height: 60, width: 104) / 4
        #expect(abs(perFrame / 1e12 - 2.0) < 0.1, "\(perFrame / 1e12) TFLOP per frame")
        #expect(perFrame < ComputeCost.vaeDecodeLatentFrame(.wan21, height: 60, width: 104) / 4)
    }
}
