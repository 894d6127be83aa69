import ArgumentParser
import Foundation
import ReelCore
import ReelModels
import ReelPipeline

/// `reel bench-text`: prompt-encoding latency of the umT5 encoder (random weights of the real size).
struct BenchText: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-text",
        abstract: "Measure umT5 prompt-encoding latency (30 and 512 tokens) against its floors.",
        discussion: """
        Builds umT5-XXL's encoder (5.7B parameters; --small for a quick run) with random weights on the \
        backend and times encoding prompts of each --tokens length (median of --repeats). The floor is \
        the larger of the compute floor (FLOPs at the measured matrix-multiply rate) and the memory floor \
        (every weight read once at the measured copy bandwidth), so short prompts are held against memory.
        """
    )

    @Option(help: "Prompt lengths to time, comma separated.")
    var tokens = "30,512"
    @Option(help: "Timed runs per length.")
    var repeats = 10
    @Flag(help: "A 4-layer, 1024-wide encoder instead of umT5-XXL (for machines without 12 GB to spare).")
    var small = false
    @OptionGroup var backendOptions: BackendOptions

    func run() async throws {
        let backend = try backendOptions.make()
        let dtype = backendOptions.storageType
        let config = small ? UMT5Config(vocabulary: 32_000, dim: 1024, heads: 16, headDim: 64, ffnDim: 2816, layers: 4) : .xxl
        let lengths = tokens.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !lengths.isEmpty, lengths.allSatisfy({ (1...512).contains($0) }) else {
            throw ValidationError("--tokens must be lengths in 1...512, got '\(tokens)'.")
        }
        let t0 = Date()
        let encoder = try UMT5Encoder.load(from: UMT5Encoder.randomWeights(config, on: backend, dtype: dtype), backend: backend, dtype: dtype)
        let params = UMT5Encoder.parameterCount(config)
        print(String(format: "umT5 encoder on %@ (%@): %d layers, dim %d, %.2fB parameters, built in %.1f s",
                     backend.name, dtype.rawValue, config.layers, config.dim, Double(params) / 1e9, Date().timeIntervalSince(t0)))
        let rate = try Rates.matmul(backend, dtype: dtype)
        let bandwidth = try Rates.copy(backend, dtype: dtype)
        print(String(format: "measured: matmul %.1f TFLOP/s, copy %.2f TB/s", rate / 1e12, bandwidth / 1e12))
        print("tokens   median       floor (compute / memory)        measured/floor")
        for n in lengths {
            let ids = (0..<n).map { Int32(3 + ($0 * 7919) % (config.vocabulary - 3)) }
            _ = try encoder.encode(ids)
            try backend.synchronize()
            var times: [Double] = []
            for _ in 0..<max(1, repeats) {
                let start = ContinuousClock.now
                _ = try encoder.encode(ids)
                try backend.synchronize()
                times.append((ContinuousClock.now - start).seconds)
            }
            let median = times.sorted()[times.count / 2]
            let compute = UMT5Encoder.flops(config, tokens: n) / rate
            // Every non-embedding weight is read once; the embedding rows of n tokens are negligible.
            let memory = Double((params - config.vocabulary * config.dim) * dtype.size) / bandwidth
            let floor = max(compute, memory)
            print(String(format: "%6d   %8.2f ms   %8.2f ms (%.2f / %.2f)        %5.1f%%", n, median * 1000, floor * 1000,
                         compute * 1000, memory * 1000, floor / median * 100))
        }
    }
}

extension UMT5Encoder {
    static func parameterCount(_ c: UMT5Config) -> Int {
        let inner = c.heads * c.headDim
        return c.vocabulary * c.dim + c.dim + c.layers * (2 * c.dim + 4 * inner * c.dim + c.buckets * c.heads + 3 * c.ffnDim * c.dim)
    }

    static func flops(_ c: UMT5Config, tokens n: Int) -> Double {
        let (n, d, inner, f) = (Double(n), Double(c.dim), Double(c.heads * c.headDim), Double(c.ffnDim))
        return Double(c.layers) * (2 * n * (4 * d * inner + 3 * d * f) + 4 * n * n * inner)
    }
}

/// Rates measured on a backend, for benchmark floors.
enum Rates {
    /// FLOP/s of a square matrix multiply (8192 on a GPU, 1024 on the CPU), median of 5.
    static func matmul(_ backend: any Backend, dtype: DType) throws -> Double {
        let n = backend.name.hasPrefix("cpu") ? 1024 : 8192    // "cpu", or "cpu:1" for an in-process CPU device
        let a = try backend.randomNormal([n, n], seed: 1, offset: 0, dtype: dtype)
        let b = try backend.randomNormal([n, n], seed: 2, offset: 0, dtype: dtype)
        return 2 * pow(Double(n), 3) / (try time(backend) { _ = try backend.matmul(a, b, transposeB: true, bias: nil) })
    }

    /// Bytes/s of a device copy, counting bytes read and written, median of 5.
    static func copy(_ backend: any Backend, dtype: DType) throws -> Double {
        let n = backend.name.hasPrefix("cpu") ? 1 << 24 : 1 << 28
        let src = try backend.zeros([n], dtype: dtype), dst = try backend.zeros([n], dtype: dtype)
        return Double(2 * n * dtype.size) / (try time(backend) { try backend.copy(src, into: dst, axis: 0, at: 0) })
    }

    static func time(_ backend: any Backend, _ body: () throws -> Void) throws -> Double {
        try body()
        try backend.synchronize()
        var times: [Double] = []
        for _ in 0..<5 {
            let t = ContinuousClock.now
            try body()
            try backend.synchronize()
            times.append((ContinuousClock.now - t).seconds)
        }
        return times.sorted()[2]
    }
}
