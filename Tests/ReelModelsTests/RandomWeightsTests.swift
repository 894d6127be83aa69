import Testing
import ReelCore
import ReelCPU
@testable import ReelModels

/// Random weights of the real architectures load through the strict loaders: every key bound,
/// none left over, every shape as the model expects. (Benchmarks rely on them.)
@Suite struct RandomWeightsTests {
    let backend = CPUBackend()

    @Test func ditRandomWeightsLoadStrictly() throws {
        let c = WanDiTConfig(dim: 64, ffnDim: 96, heads: 2, layers: 3, textDim: 24)
        let dit = try WanDiT.load(from: WanDiT.randomWeights(c, on: backend), heads: 2, backend: backend)
        #expect(dit.config == c)
        #expect(WanDiT.weightShapes(.wan1_3B).reduce(0) { $0 + $1.1.count } == 1_418_996_800)
    }

    /// Wan2.2-TI2V-5B (LongLive 2.0): the reference's `CausalWanModel` of wan_ti2v_5B.py's configuration, built on
    /// PyTorch's meta device, has 825 tensors and 4,999,787,712 parameters; its configuration is detected from the
    /// shapes alone (48 channels, 24 heads of 128).
    @Test func wan5BShapesMatchTheReferenceAndAreDetected() throws {
        let shapes = WanDiT.weightShapes(.wan5B)
        #expect(shapes.count == 825)
        #expect(shapes.reduce(0) { $0 + $1.1.count } == 4_999_787_712)
        let binder = try WeightBinder(source: ShapesOnly(shapes), rules: [], backend: backend, dtype: .f32)
        #expect(try WanDiT.detectConfig(binder) == .wan5B)
    }

    @Test func vaeDecoderRandomWeightsLoadStrictly() throws {
        let c = WanVAEConfig(baseDim: 8)
        let vae = try WanVAEDecoder.load(from: WanVAEDecoder.randomWeights(c, on: backend), on: backend)
        #expect(vae.config.baseDim == 8)
        // The real decoder: 73M parameters (REFERENCE.md section 3), conv2 included.
        let params = WanVAEDecoder.weightShapes(.wan21).reduce(0) { $0 + $1.1.count }
        #expect((73_000_000..<74_000_000).contains(params))
    }

    @Test func vaeEncoderRandomWeightsLoadStrictly() throws {
        let c = WanVAEConfig(baseDim: 8)
        let encoder = try WanVAEEncoder.load(from: WanVAEEncoder.randomWeights(c, on: backend), on: backend)
        #expect(encoder.config.baseDim == 8)
        let latents = try encoder.encode(try backend.randomNormal([1, 5, 16, 24, 3], seed: 1, offset: 0, dtype: .f32))
        #expect(latents.shape == [1, 2, 2, 3, 16])
        // The real encoder's shapes: 53.6M parameters, conv1 included (the decoder's: 73M, REFERENCE.md section 3).
        let params = WanVAEEncoder.weightShapes(.wan21).reduce(0) { $0 + $1.1.count }
        print("Wan2.1 VAE encoder parameters: \(params)")
        #expect((50_000_000..<60_000_000).contains(params))
    }

    @Test func umt5RandomWeightsLoadStrictly() throws {
        let c = UMT5Config(vocabulary: 100, dim: 16, heads: 2, headDim: 8, ffnDim: 24, layers: 2)
        let t5 = try UMT5Encoder.load(from: UMT5Encoder.randomWeights(c, on: backend), backend: backend)
        #expect(t5.config == c)
    }
}

@Suite struct TinyDecoderRandomWeightsTests {
    @Test func tinyDecoderRandomWeightsLoadStrictly() throws {
        let backend = CPUBackend()
        let d = try TinyDecoder.load(from: TinyDecoder.randomWeights(channels: [16, 8, 8, 8], on: backend), on: backend)
        #expect(d.channels == [16, 8, 8, 8])
        // taew2_1: ~11M parameters in all (REFERENCE.md section 3); its decoder is most of them.
        let params = TinyDecoder.weightShapes().reduce(0) { $0 + $1.1.count }
        #expect((5_000_000..<11_500_000).contains(params), "\(params)")
        // ~136 GFLOP per frame at 480x832 (REFERENCE.md section 3).
        let perFrame = TinyDecoder.flopsPerLatentFrame(height: 60, width: 104) / 4
        #expect(abs(perFrame / 1e9 - 136) < 25, "\(perFrame / 1e9) GFLOP per frame")
    }
}

/// Names and shapes without data (a checkpoint's index, for detection).
final class ShapesOnly: TensorSource {
    let shapes: [String: Shape]
    init(_ list: [(String, Shape)]) { shapes = Dictionary(uniqueKeysWithValues: list) }
    var keys: [String] { shapes.keys.sorted() }
    func shape(of key: String) -> Shape? { shapes[key] }
    func load(_ key: String, on backend: any Backend, as dtype: DType?) throws -> Tensor {
        throw ReelError.weights(message: "\(key): shapes only")
    }
}
