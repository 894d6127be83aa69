import Foundation
import ReelCore
import ReelCPU
import ReelIO
@testable import ReelModels

/// Shared helpers of the VAE and tiny decoder tests.
enum VAEFixture {
    static let backend = CPUBackend()

    static func path(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/vae/\(name)").path
    }

    /// The fixture file and its weights alone (inputs and outputs filtered out).
    static func open(_ name: String) throws -> (file: any WeightFile, weights: any TensorSource) {
        let file = try WeightFiles.open(path(name))
        return (file, FilteredTensorSource(WeightFileTensors(file), excluding: ["input.", "output."]))
    }

    /// A fixture tensor permuted from PyTorch's layout by `order`.
    static func tensor(_ file: any WeightFile, _ key: String, permute order: [Int]) throws -> Tensor {
        try backend.permute(file.tensor(key, on: backend, as: .f32), order)
    }

    /// Every weight of a source in memory, so tests can add, drop or reshape some.
    static func inMemory(_ source: any TensorSource) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for k in source.keys { out[k] = try source.load(k, on: backend, as: .f32) }
        return out
    }

    /// Normalized error mse(a, b) / mse(b, 0), as the op harness reports it.
    /// Decodes `latents` through one stream in blocks of the given latent frame counts; the frames joined.
    static func decode(_ d: StreamingVAEDecoder, _ latents: Tensor, blocks: [Int]) throws -> Tensor {
        let b = latents.backend
        var start = 0, parts: [Tensor] = []
        for n in blocks {
            parts.append(try d.decode(b.slice(latents, axis: 1, start: start, length: n)))
            start += n
        }
        return try b.concat(parts, axis: 1)
    }

    static func nmse(_ a: Tensor, _ b: Tensor) throws -> Double {
        let x = try a.toFloats(), y = try b.toFloats()
        guard x.count == y.count, a.shape == b.shape else { return .infinity }
        var num = 0.0, den = 0.0
        for i in x.indices {
            num += Double(x[i] - y[i]) * Double(x[i] - y[i])
            den += Double(y[i]) * Double(y[i])
        }
        return num / max(den, 1e-30)
    }
}
