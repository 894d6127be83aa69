import Foundation
import ReelCore
import ReelCPU
import ReelCUDA

/// One op case, as llama.cpp's `test_case` (tests/test-backend-ops.cpp): the op's name, its variable
/// values as printed (`vars()`), the inputs to draw, and how to build and run it on a backend. One list
/// of them (`OpCaseList.all`) drives both modes:
/// - check (`reel check-ops`): the op on CUDA against the CPU backend (the oracle) from the same input
///   bytes, by nmse = sum((cuda - cpu)^2) / sum(cpu^2), within `tolerance`;
/// - perf (`reel bench-ops`): the op timed on one backend against the floor its FLOPs and bytes give.
/// A case takes part in a mode when it has that mode's figures: a tolerance, or backends to be timed on.
struct OpCase {
    /// The op's name, as the backend calls it; `--filter` matches it, `vars` and the dtype.
    var op: String
    /// The variable values (shapes, options, path), as printed in the tables.
    var vars: String
    /// The storage type of the op's main input.
    var dtype: DType
    var inputs: [InputSpec]
    /// Check mode: the largest nmse against the CPU backend (nil: not checked).
    var tolerance: Double?
    /// Perf mode: the backends it is timed on (empty: not timed).
    var timedOn: Set<OpBackend> = []
    /// Perf mode: what one run computes and moves, for the floor.
    var flops: Double = 0
    var bytes: Double = 0
    /// The GPU architecture the case needs ("sm_90" for the Hopper kernels); nil: any. Check mode skips the others.
    var arch: String?
    /// The backend to run on instead of the command's (the CPU with one GEMM path); nil: the command's.
    var backend: ((any Backend) -> any Backend)?
    /// Makes, on a backend and from the inputs, what is made once (views, caches, weight slices), and
    /// returns the call that runs the op: check mode runs it once, perf mode times it.
    var build: (any Backend, [Tensor]) throws -> () throws -> Tensor

    /// Whether the case runs in `mode`.
    func runs(in mode: OpMode) -> Bool {
        switch mode {
        case .check: tolerance != nil
        case .perf(let b): timedOn.contains(b)
        }
    }

    /// Whether `filter` (nil: everything) is in the op's name, its variables or its dtype.
    func matches(_ filter: String?) -> Bool {
        guard let filter else { return true }
        return "\(op) \(vars) \(dtype)".contains(filter)
    }

    /// Check mode: runs the op on both backends from the same input bytes; the nmse of CUDA's result
    /// against the CPU's.
    func compare(gpu: any Backend, cpu: any Backend, seed: UInt64) throws -> Double {
        var g: [Tensor] = [], c: [Tensor] = []
        for (i, spec) in inputs.enumerated() {
            let bytes = try spec.hostBytes(seed: seed &* 1000 &+ UInt64(i))
            try bytes.withUnsafeBytes { raw in
                g.append(try gpu.upload(raw, shape: spec.shape, dtype: spec.dtype))
                c.append(try cpu.upload(raw, shape: spec.shape, dtype: spec.dtype))
            }
        }
        let a = try build(gpu, g)(), b = try build(cpu, c)()
        guard a.shape == b.shape, a.dtype == b.dtype else {
            throw ReelError.invalidArgument(op: op, message: "CUDA gave \(a.shape) \(a.dtype), CPU \(b.shape) \(b.dtype)")
        }
        return OpCase.nmse(try a.toFloats(), try b.toFloats())
    }

    /// Perf mode: the inputs on `b`. Normal inputs are drawn there (their values do not change the
    /// time, and a device draws hundreds of MB faster than the host); the rest come from host bytes.
    func perfInputs(on b: any Backend) throws -> [Tensor] {
        try inputs.enumerated().map { i, spec in
            if case .normal = spec.kind {
                return try b.randomNormal(spec.shape, seed: UInt64(i + 1), offset: 0, dtype: spec.dtype)
            }
            return try spec.hostBytes(seed: UInt64(i + 1)).withUnsafeBytes { raw in
                try b.upload(raw, shape: spec.shape, dtype: spec.dtype)
            }
        }
    }

    static func nmse(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for i in 0..<a.count {
            let d = Double(a[i]) - Double(b[i])
            num += d * d
            den += Double(b[i]) * Double(b[i])
        }
        if num.isNaN || den.isNaN { return .nan }
        return den == 0 ? (num == 0 ? 0 : .infinity) : num / den
    }

    /// Tolerance by storage type: f32 results differ only by summation order; 16-bit results by
    /// one rounding of the output (2^-9 relative for bf16, 2^-12 for f16), squared and averaged,
    /// with headroom. `factor` widens it for ops that round an intermediate (attention's P in bf16).
    static func tolerance(_ dt: DType, factor: Double = 1) -> Double {
        switch dt {
        case .bf16: 1e-4 * factor
        case .f16: 1e-5 * factor
        default: 1e-9 * factor
        }
    }
}

/// The backends a case is timed on (`reel bench-ops --backend`).
enum OpBackend: String, CaseIterable, Hashable {
    case cpu
    /// GPU 0, at the 1.3B model's real shapes (BenchOps+CUDA.swift).
    case cuda
}

/// The two modes of the one case list.
enum OpMode: Equatable {
    /// CUDA against the CPU backend (`reel check-ops`).
    case check
    /// Timed on one backend against its floor (`reel bench-ops`).
    case perf(OpBackend)
}

/// How an input is drawn.
enum InputKind {
    case normal
    /// |normal| + 0.5: divisors, weights of norms that must not flip sign pathologically.
    case positive
    /// Integer ids in 0 ..< n.
    case ids(Int)
    /// normal * s: a Linear weight of 1 / sqrt(K) keeps the products' outputs of unit scale.
    case scaled(Float)
}

struct InputSpec {
    var shape: Shape
    var dtype: DType
    var kind: InputKind = .normal

    /// The input's bytes, drawn on the host (Philox normals, the same on every machine).
    func hostBytes(seed: UInt64) throws -> [UInt8] {
        let n = shape.count
        switch kind {
        case .ids(let v):
            if dtype == .int64 {
                return (0..<n).map { Int64((($0 &* 7919) &+ Int(seed)) % v) }.withUnsafeBytes { Array($0) }
            }
            return (0..<n).map { Int32((($0 &* 7919) &+ Int(seed)) % v) }.withUnsafeBytes { Array($0) }
        case .normal, .positive, .scaled:
            var values = [Float](repeating: 0, count: n)
            values.withUnsafeMutableBufferPointer { PhiloxNormal.fill($0, seed: seed, offset: 0) }
            if case .positive = kind { values = values.map { abs($0) + 0.5 } }
            if case .scaled(let s) = kind { values = values.map { $0 * s } }
            return try HostConversion.encode(values, as: dtype)
        }
    }
}

/// The case list being built: the family files (OpCases+*.swift) add their cases to it, each for the
/// modes it runs in.
struct OpCaseList {
    /// Whether cuDNN is installed: the check cases that force its paths are added only then.
    var cudnn: Bool
    /// Whether a BLAS is installed: the CPU's own-vs-BLAS GEMM case times it only then.
    var blas: Bool
    private(set) var cases: [OpCase] = []

    static let floats: [DType] = [.f32, .bf16, .f16]

    /// Every case, in the order the tables print them: check mode's per storage type, then FP8 and the
    /// other types; perf mode's by op family (the CPU's at reduced shapes, the GPU's at the model's).
    /// Check mode draws a case's inputs from its position, so its cases keep the order in which they
    /// passed on the H100 and H200: an unfiltered run draws the same inputs as those runs.
    /// `cudnn` and `blas` say what is installed (only check mode needs the first, only the CPU's perf mode
    /// the second).
    static func all(cudnn: Bool = false, blas: Bool = false) -> [OpCase] {
        var list = OpCaseList(cudnn: cudnn, blas: blas)
        for dt in floats {
            list.elementwise(dt)
            list.fused(dt)
            list.elementwiseMore(dt)
            list.norms(dt)
            list.gemm(dt)
            list.attention(dt)
            list.convolution(dt)
            list.layout(dt)
        }
        for dt in floats { list.fp8(dt) }
        list.layoutOtherTypes()
        list.presenter()
        for dt in floats { list.fp8KVCache(dt) }
        for dt in floats { list.int8(dt) }  // after the cases above: their inputs stay those of earlier runs
        list.fp8Attention()  // after every case above, for the same reason
        list.composedFP8Attention()
        list.hopperAttention()  // last of the check cases, for the same reason
        list.hopperFP8Attention()
        list.gemmPerf()
        list.attentionPerf()
        list.convolutionPerf()
        list.normsPerf()
        list.elementwisePerf()
        list.fusedPerf()
        list.layoutPerf()
        list.fp8KVCachePerf()
        list.fp8AttentionPerf()
        return list.cases
    }

    /// A check case: `body` on the CPU and on CUDA from the same inputs, nmse within the storage
    /// type's tolerance times `factor`.
    mutating func check(_ op: String, _ vars: String, _ dt: DType, _ inputs: [InputSpec], factor: Double = 1, arch: String? = nil,
                        _ body: @escaping (any Backend, [Tensor]) throws -> Tensor) {
        cases.append(OpCase(op: op, vars: vars, dtype: dt, inputs: inputs, tolerance: OpCase.tolerance(dt, factor: factor),
                            arch: arch, build: { b, t in { try body(b, t) } }))
    }

    /// A perf case on `backend`: `body` timed against the floor of `flops` and `bytes`.
    mutating func perf(_ backend: OpBackend, _ op: String, _ vars: String, _ dt: DType, _ inputs: [InputSpec],
                       flops: Double = 0, bytes: Double, _ body: @escaping (any Backend, [Tensor]) throws -> Tensor) {
        perf(backend, op, vars, dt, inputs, flops: flops, bytes: bytes, build: { b, t in { try body(b, t) } })
    }

    /// A perf case whose `build` makes once what the timed call must not include.
    mutating func perf(_ backend: OpBackend, _ op: String, _ vars: String, _ dt: DType, _ inputs: [InputSpec],
                       flops: Double = 0, bytes: Double, on other: ((any Backend) -> any Backend)? = nil,
                       build: @escaping (any Backend, [Tensor]) throws -> () throws -> Tensor) {
        cases.append(OpCase(op: op, vars: vars, dtype: dt, inputs: inputs, timedOn: [backend], flops: flops, bytes: bytes,
                            backend: other, build: build))
    }
}

/// Runs `body` with the CUDA backend's attention path set to `path` and, when given, its key parts
/// forced to `splits` (other backends ignore both).
func withAttentionPath<T>(_ b: any Backend, _ path: CUDABackend.AttentionPath, splits: Int? = nil,
                          _ body: () throws -> T) rethrows -> T {
    try withCUDASetting(b, \.attentionPath, path, splits: splits, body)
}

/// The same for the FP8 attention path (`fp8Attention`).
func withFP8AttentionPath<T>(_ b: any Backend, _ path: CUDABackend.FP8AttentionPath, splits: Int? = nil,
                             _ body: () throws -> T) rethrows -> T {
    try withCUDASetting(b, \.fp8AttentionPath, path, splits: splits, body)
}

/// Runs `body` with one setting of the CUDA backend changed and, when given, its key parts forced (other backends
/// ignore both); both restored after.
func withCUDASetting<V, T>(_ b: any Backend, _ setting: ReferenceWritableKeyPath<CUDABackend, V>, _ value: V, splits: Int? = nil,
                           _ body: () throws -> T) rethrows -> T {
    guard let g = b as? CUDABackend else { return try body() }
    let saved = (g[keyPath: setting], g.attentionSplitOverride)
    g[keyPath: setting] = value
    if let splits { g.attentionSplitOverride = splits }
    defer { (g[keyPath: setting], g.attentionSplitOverride) = saved }
    return try body()
}

/// Runs `body` with the CUDA backend's convolution path set to `path` (other backends ignore it).
func withConvolutionPath<T>(_ b: any Backend, _ path: CUDABackend.KernelChoice, _ body: () throws -> T) rethrows -> T {
    try withCUDASetting(b, \.convolutionPath, path, body)
}

/// Runs `body` with the CUDA backend's GELU epilogue on or off (other backends ignore it).
func withGELUEpilogue<T>(_ b: any Backend, _ on: Bool, _ body: () throws -> T) rethrows -> T {
    guard let g = b as? CUDABackend else { return try body() }
    let saved = g.geluEpilogue
    g.geluEpilogue = on
    defer { g.geluEpilogue = saved }
    return try body()
}

/// Table cells of the op tools, padded to a column's width.
enum Column {
    static func left(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
    static func right(_ s: String, _ width: Int) -> String {
        s.count >= width ? " " + s : String(repeating: " ", count: width - s.count) + s
    }
}
