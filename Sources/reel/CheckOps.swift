import ArgumentParser
import Foundation
import ReelCore
import ReelCPU
import ReelCUDA

/// `reel check-ops`: every backend op on random inputs at several shapes, CUDA against the CPU
/// backend (the oracle), by normalized error nmse = sum((cuda - cpu)^2) / sum(cpu^2) against a
/// per-op, per-dtype tolerance; plus checks of what is not an op (exact noise, graphs, streams,
/// the allocator's steady state, typed errors). Exits non-zero on any failure.
struct CheckOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-ops",
        abstract: "Check every CUDA op against the CPU backend on random inputs (needs a GPU)."
    )

    @Option(help: "Only checks whose op or case name contains this text (e.g. attention, bf16).")
    var filter: String?

    @Option(help: "CUDA device ordinal.")
    var device: Int = 0

    func validate() throws {
        if device < 0 { throw ValidationError("--device must be >= 0") }
    }

    func run() throws {
        let gpu = try CUDABackend(device: device)
        let cpu = CPUBackend()
        let info = gpu.cudaDevice.info
        print("check-ops: \(gpu.name) \(info.name) (\(info.arch)) against the CPU backend (\(cpu.threads) threads)")
        let selected = OpCheck.all().filter { filter == nil || "\($0.op) \($0.label) \($0.dtype)".contains(filter!) }
        let header = pad("op", 16) + pad("case", 44) + pad("dtype", 6) + lpad("nmse", 11) + lpad("tolerance", 11) + "  result"
        print(header)
        print(String(repeating: "-", count: header.count))
        var failures: [String] = []
        var counts: [String: (Int, Int)] = [:]
        for (index, c) in selected.enumerated() {
            var result = "ok"
            var nmseText = "-"
            do {
                let e = try c.compare(gpu: gpu, cpu: cpu, seed: UInt64(index + 1))
                nmseText = String(format: "%.2e", e)
                if !(e <= c.tolerance) { result = "FAIL" }
            } catch {
                result = "FAIL: \(error)"
            }
            if result != "ok" { failures.append("\(c.op) \(c.label) \(c.dtype)") }
            counts[c.op, default: (0, 0)].0 += 1
            if result == "ok" { counts[c.op, default: (0, 0)].1 += 1 }
            print(pad(c.op, 16) + pad(c.label, 44) + pad(c.dtype.rawValue, 6) + lpad(nmseText, 11)
                  + lpad(String(format: "%.0e", c.tolerance), 11) + "  " + result)
        }
        // Checks of the runtime rather than of one op: all of them for "runtime", else those named by the filter.
        let allRuntime = filter == nil || "runtime".contains(filter!) || filter!.hasPrefix("runtime")
        let runtime = RuntimeCheck.all.filter { allRuntime || $0.0.contains(filter!) }
        if !runtime.isEmpty {
            print("")
            for (name, check) in runtime {
                var line = "ok"
                do { line = try check(gpu, cpu) } catch { line = "FAIL: \(error)"; failures.append("runtime \(name)") }
                if line.hasPrefix("FAIL") && !failures.contains("runtime \(name)") { failures.append("runtime \(name)") }
                print(pad("runtime", 16) + pad(name, 44) + line)
            }
        }
        let stats = gpu.cudaDevice.allocatorStats
        print("")
        for r in gpu.cudnnRefusals { print("cuDNN refused (own kernel used): \(r)") }
        print("ops: " + counts.keys.sorted().map { "\($0) \(counts[$0]!.1)/\(counts[$0]!.0)" }.joined(separator: ", "))
        print("device memory: peak \(stats.peak >> 20) MiB in tensors, \(stats.driverAllocations) cuMemAlloc calls, "
              + "\(gpu.cudaDevice.kernelCompiles) kernel files compiled by NVRTC (the rest from the disk cache)")
        if failures.isEmpty {
            print("check-ops: all \(selected.count) op checks passed")
        } else {
            print("check-ops: \(failures.count) FAILED: \(failures.joined(separator: "; "))")
            throw ExitCode(1)
        }
    }
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
}

/// One op at one shape and dtype, run on both backends from the same input bytes.
struct OpCheck {
    var op: String
    var label: String
    var dtype: DType
    var inputs: [InputSpec]
    var tolerance: Double
    var body: (any Backend, [Tensor]) throws -> Tensor

    func compare(gpu: any Backend, cpu: any Backend, seed: UInt64) throws -> Double {
        var g: [Tensor] = [], c: [Tensor] = []
        for (i, spec) in inputs.enumerated() {
            let bytes = try OpCheck.hostBytes(spec, seed: seed &* 1000 &+ UInt64(i))
            try bytes.withUnsafeBytes { raw in
                g.append(try gpu.upload(raw, shape: spec.shape, dtype: spec.dtype))
                c.append(try cpu.upload(raw, shape: spec.shape, dtype: spec.dtype))
            }
        }
        let a = try body(gpu, g), b = try body(cpu, c)
        guard a.shape == b.shape, a.dtype == b.dtype else {
            throw ReelError.invalidArgument(op: op, message: "CUDA gave \(a.shape) \(a.dtype), CPU \(b.shape) \(b.dtype)")
        }
        return OpCheck.nmse(try a.toFloats(), try b.toFloats())
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

    static func hostBytes(_ spec: InputSpec, seed: UInt64) throws -> [UInt8] {
        let n = spec.shape.count
        switch spec.kind {
        case .ids(let v):
            if spec.dtype == .int64 {
                return (0..<n).map { Int64((($0 &* 7919) &+ Int(seed)) % v) }.withUnsafeBytes { Array($0) }
            }
            return (0..<n).map { Int32((($0 &* 7919) &+ Int(seed)) % v) }.withUnsafeBytes { Array($0) }
        case .normal, .positive, .scaled:
            var values = [Float](repeating: 0, count: n)
            values.withUnsafeMutableBufferPointer { PhiloxNormal.fill($0, seed: seed, offset: 0) }
            if case .positive = spec.kind { values = values.map { abs($0) + 0.5 } }
            if case .scaled(let s) = spec.kind { values = values.map { $0 * s } }
            return try HostConversion.encode(values, as: spec.dtype)
        }
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

    static func all() -> [OpCheck] {
        var out: [OpCheck] = []
        let cudnnAvailable = (try? CUDALibraries.cudnn()) != nil
        func add(_ op: String, _ label: String, _ dt: DType, _ inputs: [InputSpec], factor: Double = 1,
                 _ body: @escaping (any Backend, [Tensor]) throws -> Tensor) {
            out.append(OpCheck(op: op, label: label, dtype: dt, inputs: inputs, tolerance: tolerance(dt, factor: factor), body: body))
        }
        let floats: [DType] = [.f32, .bf16, .f16]
        for dt in floats {
            // Counts that are and are not multiples of 8: the 8-wide and the scalar kernels.
            for u in UnaryOp.allCases {
                add(u.rawValue, "[3, 37, 65]", dt, [InputSpec(shape: [3, 37, 65], dtype: dt)]) { b, t in try b.unary(u, t[0]) }
                add(u.rawValue, "[2, 48, 64] (8-wide)", dt, [InputSpec(shape: [2, 48, 64], dtype: dt)]) { b, t in try b.unary(u, t[0]) }
            }
            add("affine", "[1000] * 0.75 - 0.25", dt, [InputSpec(shape: [1000], dtype: dt)]) { b, t in try b.affine(t[0], scale: 0.75, bias: -0.25) }
            add("clamp", "[1000] to [-1, 1]", dt, [InputSpec(shape: [1000], dtype: dt)]) { b, t in try b.clamp(t[0], min: -1, max: 1) }
            for op in BinaryOp.allCases {
                let rhs: InputKind = op == .div ? .positive : .normal
                add(op.rawValue, "[2, 5, 7] . [2, 5, 7]", dt, [InputSpec(shape: [2, 5, 7], dtype: dt), InputSpec(shape: [2, 5, 7], dtype: dt, kind: rhs)]) { b, t in try b.binary(op, t[0], t[1]) }
                add(op.rawValue, "[4, 6, 16] . [4, 6, 16] (8-wide)", dt, [InputSpec(shape: [4, 6, 16], dtype: dt), InputSpec(shape: [4, 6, 16], dtype: dt, kind: rhs)]) { b, t in try b.binary(op, t[0], t[1]) }
                add(op.rawValue, "[4, 6, 16] . [16] (8-wide)", dt, [InputSpec(shape: [4, 6, 16], dtype: dt), InputSpec(shape: [16], dtype: dt, kind: rhs)]) { b, t in try b.binary(op, t[0], t[1]) }
                add(op.rawValue, "[4, 6, 16] . [4, 1, 16] (8-wide)", dt, [InputSpec(shape: [4, 6, 16], dtype: dt), InputSpec(shape: [4, 1, 16], dtype: dt, kind: rhs)]) { b, t in try b.binary(op, t[0], t[1]) }
                add(op.rawValue, "[2, 5, 7] . [5, 1] broadcast", dt, [InputSpec(shape: [2, 5, 7], dtype: dt), InputSpec(shape: [5, 1], dtype: dt, kind: rhs)]) { b, t in try b.binary(op, t[0], t[1]) }
            }
            add("modulate", "[2, 3, 50, 64] by [2, 3, 1, 64] / [64]", dt,
                [InputSpec(shape: [2, 3, 50, 64], dtype: dt), InputSpec(shape: [2, 3, 1, 64], dtype: dt), InputSpec(shape: [64], dtype: dt)]) { b, t in
                try b.modulate(t[0], scale: t[1], shift: t[2])
            }
            add("modulate", "[1, 4680, 1536] by [1, 1, 1536] f32", dt,
                [InputSpec(shape: [1, 4680, 1536], dtype: dt), InputSpec(shape: [1, 1, 1536], dtype: .f32), InputSpec(shape: [1, 1, 1536], dtype: .f32)]) { b, t in
                try b.modulate(t[0], scale: t[1], shift: t[2])
            }
            // The DiT block's fused ops (fused.cu): the real shapes (3 frames of 1560 tokens, dim 1536,
            // 12 heads of 128), f32 modulation beside 16-bit activations, and the fallback kernels.
            for (label, x, s, h, sdt) in [("DiT [3, 1560, 1536] by [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536], [3, 1, 1536], dt),
                                          ("DiT [3, 1560, 1536] by f32 [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536], [3, 1, 1536], .f32),
                                          ("[2, 37, 512] scale [2,1,512] shift [1,1,512]", [2, 37, 512], [2, 1, 512], [1, 1, 512], dt),
                                          ("[2, 9, 100] by [1, 1, 100] (scalar)", [2, 9, 100], [1, 1, 100], [1, 1, 100], dt),
                                          ("[2, 5, 5120] by [2, 1, 5120] (scalar, C > 2048)", [2, 5, 5120], [2, 1, 5120], [2, 1, 5120], dt)] as [(String, Shape, Shape, Shape, DType)] {
                add("modulatedLayerNorm", label, dt, [InputSpec(shape: x, dtype: dt), InputSpec(shape: s, dtype: sdt), InputSpec(shape: h, dtype: sdt)]) { b, t in
                    try b.modulatedLayerNorm(t[0], scale: t[1], shift: t[2], eps: 1e-6)
                }
            }
            for (label, x, g, gdt) in [("DiT [3, 1560, 1536] . [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536], dt),
                                       ("DiT [3, 1560, 1536] . f32 [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536], .f32),
                                       ("[2, 7, 5120] . [1, 1, 5120] (8-wide, 3 chunks)", [2, 7, 5120], [1, 1, 5120], dt),
                                       ("[3, 4, 19] . [3, 1, 19] (scalar)", [3, 4, 19], [3, 1, 19], dt)] as [(String, Shape, Shape, DType)] {
                add("gatedResidual", label, dt, [InputSpec(shape: x, dtype: dt), InputSpec(shape: x, dtype: dt), InputSpec(shape: g, dtype: gdt)]) { b, t in
                    try b.gatedResidual(t[0], t[1], gate: t[2])
                }
            }
            // 16-bit: the fused kernel rounds once, the CPU's composed ops twice (one more rounding).
            for (label, shape, grid, wdt) in [("DiT [1, 4680, 12, 128] 3x30x52 frame 9", [1, 4680, 12, 128], RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 9), dt),
                                              ("[1, 3x4x5, 2, 128] frame 1500, f32 weight", [1, 60, 2, 128], RoPEGrid(frames: 3, height: 4, width: 5, frameOffset: 1500), .f32),
                                              ("[2, 2x3x3, 3, 64] frame 0", [2, 18, 3, 64], RoPEGrid(frames: 2, height: 3, width: 3), dt),
                                              ("[1, 3x4x5, 2, 40] (composed: 256 % D != 0)", [1, 60, 2, 40], RoPEGrid(frames: 3, height: 4, width: 5, frameOffset: 7), dt),
                                              ("[1, 2x2x3, 20, 128] (composed: C > 2048)", [1, 12, 20, 128], RoPEGrid(frames: 2, height: 2, width: 3, frameOffset: 2), dt)] as [(String, Shape, RoPEGrid, DType)] {
                add("rmsNormRoPE", label, dt, [InputSpec(shape: shape, dtype: dt), InputSpec(shape: [shape[2] * shape[3]], dtype: wdt)], factor: 2) { b, t in
                    try b.rmsNormRoPE(t[0], weight: t[1], eps: 1e-6, grid: grid)
                }
            }
            // Written into a view of a larger tensor (the DiT writes keys straight into its KV cache).
            add("rmsNormRoPE", "DiT [1, 4680, 12, 128] into a cache view at frame 2", dt,
                [InputSpec(shape: [1, 4680, 12, 128], dtype: dt), InputSpec(shape: [1536], dtype: dt)], factor: 2) { b, t in
                let cache = try b.zeros([1, 7 * 1560, 12, 128], dtype: dt)
                try b.rmsNormRoPE(t[0], weight: t[1], eps: 1e-6, grid: RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 4),
                                  into: try cache.narrowed(axis: 1, start: 2 * 1560, length: 4680))
                return try b.slice(cache, axis: 1, start: 2 * 1560, length: 4680)
            }
            add("affine", "[4096] * 0.75 - 0.25 (8-wide)", dt, [InputSpec(shape: [4096], dtype: dt)]) { b, t in try b.affine(t[0], scale: 0.75, bias: -0.25) }
            add("axpby", "0.3 x + 0.7 y [4097]", dt, [InputSpec(shape: [4097], dtype: dt), InputSpec(shape: [4097], dtype: dt)]) { b, t in try b.axpby(0.3, t[0], 0.7, t[1]) }
            add("fill", "[3, 333] = 1.5", dt, []) { b, _ in let t = try b.allocate([3, 333], dtype: dt); try b.fill(t, with: 1.5); return t }
            for c in [96, 100, 1536, 5120] {
                add("layerNorm", "[37, \(c)] affine", dt, [InputSpec(shape: [37, c], dtype: dt), InputSpec(shape: [c], dtype: dt), InputSpec(shape: [c], dtype: dt)]) { b, t in
                    try b.layerNorm(t[0], weight: t[1], bias: t[2], eps: 1e-6)
                }
                add("layerNorm", "[37, \(c)] no affine", dt, [InputSpec(shape: [37, c], dtype: dt)]) { b, t in try b.layerNorm(t[0], weight: nil, bias: nil, eps: 1e-6) }
                add("rmsNorm", "[37, \(c)]", dt, [InputSpec(shape: [37, c], dtype: dt), InputSpec(shape: [c], dtype: dt)]) { b, t in try b.rmsNorm(t[0], weight: t[1], eps: 1e-6) }
                add("l2Norm", "[37, \(c)] * sqrt(C)", dt, [InputSpec(shape: [37, c], dtype: dt), InputSpec(shape: [c], dtype: dt)]) { b, t in
                    try b.l2Norm(t[0], weight: t[1], scale: Float(c).squareRoot(), eps: 1e-12)
                }
            }
            for c in [16, 64, 96, 128, 192, 200, 256, 384] {
                add("l2NormSiLU", "[1001, \(c)] * sqrt(C)", dt, [InputSpec(shape: [1001, c], dtype: dt), InputSpec(shape: [c], dtype: dt)]) { b, t in
                    try b.l2NormSiLU(t[0], weight: t[1], scale: Float(c).squareRoot(), eps: 1e-12)
                }
                add("l2Norm", "[1001, \(c)] narrow rows", dt, [InputSpec(shape: [1001, c], dtype: dt), InputSpec(shape: [c], dtype: dt)]) { b, t in
                    try b.l2Norm(t[0], weight: t[1], scale: Float(c).squareRoot(), eps: 1e-12)
                }
            }
            add("l2NormSiLU", "[2, 1, 24, 40, 96] VAE, no weight", dt, [InputSpec(shape: [2, 1, 24, 40, 96], dtype: dt)]) { b, t in
                try b.l2NormSiLU(t[0], weight: nil, scale: Float(96).squareRoot(), eps: 1e-12)
            }
            // Written into a frame of a VAE causal cache pair (the decoder's one-frame layers), and
            // into an unaligned view (the vector kernel then stays out).
            for (start, label) in [(1, "into frame 1 of a cache pair"), (3, "into a view 3 elements in")] {
                add("l2NormSiLU", "[1, 1, 24, 40, 96] VAE \(label)", dt,
                    [InputSpec(shape: [1, 1, 24, 40, 96], dtype: dt), InputSpec(shape: [96], dtype: dt)]) { b, t in
                    let frames = 24 * 40 * 96
                    let pair = try b.zeros([2 * frames + 8], dtype: dt)
                    let offset = start == 1 ? frames : start
                    try b.l2NormSiLU(t[0], weight: t[1], scale: Float(96).squareRoot(), eps: 1e-12,
                                     into: try pair.narrowed(axis: 0, start: offset, length: frames))
                    return try b.slice(pair, axis: 0, start: offset, length: frames)
                }
            }
            add("softmax", "[7, 513]", dt, [InputSpec(shape: [7, 513], dtype: dt)]) { b, t in try b.softmax(t[0]) }
            add("rope3d", "[1, 3x4x5, 2, 128] frame 1500", dt, [InputSpec(shape: [1, 60, 2, 128], dtype: dt)]) { b, t in
                try b.rope3d(t[0], grid: RoPEGrid(frames: 3, height: 4, width: 5, frameOffset: 1500))
            }
            add("rope3d", "[2, 2x3x3, 3, 64] frame 0", dt, [InputSpec(shape: [2, 18, 3, 64], dtype: dt)]) { b, t in
                try b.rope3d(t[0], grid: RoPEGrid(frames: 2, height: 3, width: 3))
            }
            add("matmul", "[37, 64] x [48, 64]^T + bias", dt, [InputSpec(shape: [37, 64], dtype: dt), InputSpec(shape: [48, 64], dtype: dt), InputSpec(shape: [48], dtype: dt)]) { b, t in
                try b.matmul(t[0], t[1], transposeB: true, bias: t[2])
            }
            add("matmul", "[2, 33, 40] x [40, 24]", dt, [InputSpec(shape: [2, 33, 40], dtype: dt), InputSpec(shape: [40, 24], dtype: dt)]) { b, t in
                try b.matmul(t[0], t[1], transposeB: false, bias: nil)
            }
            add("matmul", "batched [3, 17, 32] x [3, 32, 20]", dt, [InputSpec(shape: [3, 17, 32], dtype: dt), InputSpec(shape: [3, 32, 20], dtype: dt)]) { b, t in
                try b.matmul(t[0], t[1], transposeB: false, bias: nil)
            }
            add("matmul", "batched [2, 19, 64] x [2, 24, 64]^T", dt, [InputSpec(shape: [2, 19, 64], dtype: dt), InputSpec(shape: [2, 24, 64], dtype: dt)]) { b, t in
                try b.matmul(t[0], t[1], transposeB: true, bias: nil)
            }
            add("matmul", "[256, 1536] x [1536, 1536]^T + bias", dt, [InputSpec(shape: [256, 1536], dtype: dt), InputSpec(shape: [1536, 1536], dtype: dt), InputSpec(shape: [1536], dtype: dt)]) { b, t in
                try b.matmul(t[0], t[1], transposeB: true, bias: t[2])
            }
            // linearGELU, the DiT FFN's first layer (on CUDA one GEMM with cuBLASLt's GELU epilogue).
            // Weights of 1 / sqrt(K) give pre-activations of unit scale, where tanh and erf GELU differ
            // by ~4e-8 nmse: f32's 1e-9 tells them apart (bf16's output rounding cannot). 16-bit: the
            // CPU's composition rounds the pre-activation once more than the epilogue (factor 2).
            for (label, x, n, withBias) in [("[37, 64] x [48, 64]^T + bias", [37, 64], 48, true),
                                            ("[37, 64] x [48, 64]^T", [37, 64], 48, false),
                                            ("[2, 19, 75] x [41, 75]^T + bias (odd)", [2, 19, 75], 41, true),
                                            ("[19, 75] x [41, 75]^T (odd)", [19, 75], 41, false),
                                            ("[256, 1536] x [1024, 1536]^T", [256, 1536], 1024, false),
                                            ("DiT [4680, 1536] x [8960, 1536]^T + bias", [4680, 1536], 8960, true)] as [(String, Shape, Int, Bool)] {
                if label.hasPrefix("DiT") && dt == .f16 { continue }  // the DiT runs bf16 (and f32 for parity)
                let k = x.last
                var inputs = [InputSpec(shape: x, dtype: dt), InputSpec(shape: [n, k], dtype: dt, kind: .scaled(1 / Float(k).squareRoot()))]
                if withBias { inputs.append(InputSpec(shape: [n], dtype: dt)) }
                add("linearGELU", label, dt, inputs, factor: dt == .f32 ? 1 : 2) { b, t in
                    try b.linearGELU(t[0], weight: t[1], bias: withBias ? t[2] : nil)
                }
            }
            // linear + residual in one GEMM (cuBLASLt's beta = 1), and a linear written into a view.
            for (label, x, n) in [("[37, 64] x [48, 64]^T + bias + residual", [37, 64], 48),
                                  ("DiT [1, 4680, 1536] x [1536, 1536]^T + bias + residual", [1, 4680, 1536], 1536)] as [(String, Shape, Int)] {
                let k = x.last
                var out = Array(x.dims.dropLast()); out.append(n)
                add("linear", label, dt, [InputSpec(shape: x, dtype: dt), InputSpec(shape: [n, k], dtype: dt, kind: .scaled(1 / Float(k).squareRoot())),
                                          InputSpec(shape: [n], dtype: dt), InputSpec(shape: Shape(out), dtype: dt)], factor: 2) { b, t in
                    try b.linear(t[0], weight: t[1], bias: t[2], adding: t[3])
                }
            }
            add("linear", "[37, 64] x [48, 64]^T + bias into a view at row 5", dt,
                [InputSpec(shape: [37, 64], dtype: dt), InputSpec(shape: [48, 64], dtype: dt, kind: .scaled(0.125)), InputSpec(shape: [48], dtype: dt)]) { b, t in
                let big = try b.zeros([50, 48], dtype: dt)
                try b.linear(t[0], weight: t[1], bias: t[2], into: try big.narrowed(axis: 0, start: 5, length: 37))
                return try b.slice(big, axis: 0, start: 5, length: 37)
            }
            // Attention: Lq and Lk not multiples of the 64-row tiles, so the edge masking is exercised.
            // 16-bit cases with D <= 128 run on each path: cuDNN's fused kernel (when cuDNN is
            // installed) and Reel's own tensor-core kernel.
            let paths: [CUDABackend.AttentionPath] = dt == .f32 ? [.auto] : (cudnnAvailable ? [.cudnn, .own] : [.own])
            for (lq, lk, h, d) in [(200, 333, 2, 128), (77, 140, 3, 64), (130, 64, 1, 128), (50, 90, 1, 384), (33, 47, 2, 40)] {
                for path in (d <= 128 && d % 8 == 0 ? paths : [.auto]) {
                    add("attention", "q[1,\(lq),\(h),\(d)] k\(lk) \(path == .auto ? "" : "(\(path))")", dt,
                        [InputSpec(shape: [1, lq, h, d], dtype: dt), InputSpec(shape: [1, lk, h, d], dtype: dt), InputSpec(shape: [1, lk, h, d], dtype: dt)], factor: 10) { b, t in
                        try withAttentionPath(b, path) { try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(d).squareRoot(), bias: nil) }
                    }
                }
            }
            if dt != .f32 && cudnnAvailable {
                // Split keys (cuDNN, forced): parts of 1/2 and 1/3 of the keys merged by their softmax statistics.
                for (lq, lk, h, splits) in [(200, 4096, 2, 2), (77, 1500, 3, 3), (130, 64, 1, 4)] {
                    add("attention", "q[1,\(lq),\(h),128] k\(lk) (cudnn, \(splits) key parts)", dt,
                        [InputSpec(shape: [1, lq, h, 128], dtype: dt), InputSpec(shape: [1, lk, h, 128], dtype: dt), InputSpec(shape: [1, lk, h, 128], dtype: dt)], factor: 10) { b, t in
                        try withAttentionPath(b, .cudnn, splits: splits) { try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(128).squareRoot(), bias: nil) }
                    }
                }
            }
            if dt == .bf16 {
                // The DiT's real shapes: self-attention over the window (split by the wave rule and whole),
                // cross-attention over 512 text tokens.
                for (lk, path, splits) in [(18720, CUDABackend.AttentionPath.auto, nil), (18720, .cudnn, 1), (18720, .own, nil), (512, .auto, nil)] {
                    add("attention", "DiT q[1,4680,12,128] k\(lk) (\(path)\(splits == 1 ? ", keys whole" : ""))", dt,
                        [InputSpec(shape: [1, 4680, 12, 128], dtype: dt), InputSpec(shape: [1, lk, 12, 128], dtype: dt), InputSpec(shape: [1, lk, 12, 128], dtype: dt)], factor: 10) { b, t in
                        try withAttentionPath(b, path, splits: splits) { try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(128).squareRoot(), bias: nil) }
                    }
                }
            }
            add("attention", "q[2,40,4,64] k56 + bias[4,40,56], no scale", dt,
                [InputSpec(shape: [2, 40, 4, 64], dtype: dt), InputSpec(shape: [2, 56, 4, 64], dtype: dt), InputSpec(shape: [2, 56, 4, 64], dtype: dt),
                 InputSpec(shape: [4, 40, 56], dtype: dt)], factor: 10) { b, t in
                try b.attention(query: t[0], key: t[1], value: t[2], scale: 1, bias: t[3])
            }
            add("attention", "q[1,64,2,64] k30 v Dv=32", dt,
                [InputSpec(shape: [1, 64, 2, 64], dtype: dt), InputSpec(shape: [1, 30, 2, 64], dtype: dt), InputSpec(shape: [1, 30, 2, 32], dtype: dt)], factor: 10) { b, t in
                try b.attention(query: t[0], key: t[1], value: t[2], scale: 0.125, bias: nil)
            }
            // Convolutions run on each path for 16-bit storage: cuDNN's implicit GEMM and Reel's im2col + GEMM.
            let convPaths: [CUDABackend.KernelChoice] = dt == .f32 ? [.auto] : (cudnnAvailable ? [.cudnn, .own] : [.own])
            for path in convPaths {
                let tag = path == .auto ? "" : " (\(path))"
                add("conv3d", "[1,3,10,12,16] * [24,3,3,3,16] causal\(tag)", dt,
                    [InputSpec(shape: [1, 3, 10, 12, 16], dtype: dt), InputSpec(shape: [24, 3, 3, 3, 16], dtype: dt), InputSpec(shape: [24], dtype: dt)], factor: 10) { b, t in
                    try withConvolutionPath(b, path) { try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: .causal(t: 2, hw: 1)) }
                }
                add("conv3d", "[2,1,9,11,8] * [4,1,3,3,8] stride 2\(tag)", dt,
                    [InputSpec(shape: [2, 1, 9, 11, 8], dtype: dt), InputSpec(shape: [4, 1, 3, 3, 8], dtype: dt)], factor: 10) { b, t in
                    try withConvolutionPath(b, path) { try b.conv3d(t[0], weight: t[1], bias: nil, stride: (1, 2, 2), padding: ConvPadding(h: (0, 1), w: (1, 1))) }
                }
                // The residual added in the convolution's epilogue (cuDNN) or by a separate add.
                add("conv3d", "[1,3,10,12,16] * [24,3,3,3,16] causal + residual\(tag)", dt,
                    [InputSpec(shape: [1, 3, 10, 12, 16], dtype: dt), InputSpec(shape: [24, 3, 3, 3, 16], dtype: dt), InputSpec(shape: [24], dtype: dt),
                     InputSpec(shape: [1, 3, 10, 12, 24], dtype: dt)], factor: 10) { b, t in
                    try withConvolutionPath(b, path) {
                        try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: .causal(t: 2, hw: 1), adding: t[3])
                    }
                }
                add("conv3d", "[1,1,9,11,8] * [8,1,3,3,8] + residual, no bias\(tag)", dt,
                    [InputSpec(shape: [1, 1, 9, 11, 8], dtype: dt), InputSpec(shape: [8, 1, 3, 3, 8], dtype: dt), InputSpec(shape: [1, 1, 9, 11, 8], dtype: dt)],
                    factor: 10) { b, t in
                    try withConvolutionPath(b, path) {
                        try b.conv3d(t[0], weight: t[1], bias: nil, stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)), adding: t[2])
                    }
                }
                add("conv3d", "[1,2,6,6,32] * [16,1,1,1,32] pointwise\(tag)", dt,
                    [InputSpec(shape: [1, 2, 6, 6, 32], dtype: dt), InputSpec(shape: [16, 1, 1, 1, 32], dtype: dt), InputSpec(shape: [16], dtype: dt)], factor: 10) { b, t in
                    try withConvolutionPath(b, path) { try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: ConvPadding()) }
                }
            }
            if dt == .bf16 {
                // A Wan VAE convolution at its real size (middle blocks, 384 channels at 60x104).
                add("conv3d", "VAE [1,3,60,104,384] * [384,3,3,3,384]", dt,
                    [InputSpec(shape: [1, 3, 60, 104, 384], dtype: dt), InputSpec(shape: [384, 3, 3, 3, 384], dtype: dt), InputSpec(shape: [384], dtype: dt)], factor: 10) { b, t in
                    try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)))
                }
                // The full-resolution residual convolution (96 channels at 480x832, one frame after its cache).
                add("conv3d", "VAE [1,3,480,832,96] * [96,3,3,3,96] + residual", dt,
                    [InputSpec(shape: [1, 3, 480, 832, 96], dtype: dt), InputSpec(shape: [96, 3, 3, 3, 96], dtype: dt), InputSpec(shape: [96], dtype: dt),
                     InputSpec(shape: [1, 1, 480, 832, 96], dtype: dt)], factor: 10) { b, t in
                    try b.conv3d(t[0], weight: t[1], bias: t[2], stride: (1, 1, 1), padding: ConvPadding(h: (1, 1), w: (1, 1)), adding: t[3])
                }
            }
            add("conv2d", "[1,10,12,8] * [6,3,3,8] pad 1", dt,
                [InputSpec(shape: [1, 10, 12, 8], dtype: dt), InputSpec(shape: [6, 3, 3, 8], dtype: dt)], factor: 10) { b, t in
                try b.conv2d(t[0], weight: t[1], bias: nil, padding: (1, 1))
            }
            add("upsampleNearest", "[1,2,5,6,3] x2 (scalar)", dt, [InputSpec(shape: [1, 2, 5, 6, 3], dtype: dt)]) { b, t in try b.upsampleNearest(t[0], scaleH: 2, scaleW: 2) }
            add("permute", "[2,3,5,16] by [0,2,1,3] (16-byte)", dt, [InputSpec(shape: [2, 3, 5, 16], dtype: dt)]) { b, t in try b.permute(t[0], [0, 2, 1, 3]) }
            add("upsampleNearest", "[1,2,5,6,8] x2", dt, [InputSpec(shape: [1, 2, 5, 6, 8], dtype: dt)]) { b, t in try b.upsampleNearest(t[0], scaleH: 2, scaleW: 2) }
            add("concat", "[2,3,4] + [2,5,4] axis 1", dt, [InputSpec(shape: [2, 3, 4], dtype: dt), InputSpec(shape: [2, 5, 4], dtype: dt)]) { b, t in try b.concat(t, axis: 1) }
            add("concat", "[3,4] + [2,4] axis 0", dt, [InputSpec(shape: [3, 4], dtype: dt), InputSpec(shape: [2, 4], dtype: dt)]) { b, t in try b.concat(t, axis: 0) }
            add("slice", "[2,9,5] axis 1 2..<7", dt, [InputSpec(shape: [2, 9, 5], dtype: dt)]) { b, t in try b.slice(t[0], axis: 1, start: 2, length: 5) }
            add("permute", "[2,3,4,5] by [0,2,1,3]", dt, [InputSpec(shape: [2, 3, 4, 5], dtype: dt)]) { b, t in try b.permute(t[0], [0, 2, 1, 3]) }
            add("permute", "[2,3,2,3,2,3,2,3] reversed (8 axes)", dt, [InputSpec(shape: [2, 3, 2, 3, 2, 3, 2, 3], dtype: dt)]) { b, t in try b.permute(t[0], [7, 6, 5, 4, 3, 2, 1, 0]) }
            add("permute", "[2,3,4,5,6,7,2] by [0,1,2,3,4,6,5]", dt, [InputSpec(shape: [2, 3, 4, 5, 6, 7, 2], dtype: dt)]) { b, t in try b.permute(t[0], [0, 1, 2, 3, 4, 6, 5]) }
            add("copy", "[2,3,4] into [2,7,4] at 2", dt, [InputSpec(shape: [2, 3, 4], dtype: dt), InputSpec(shape: [2, 7, 4], dtype: dt)]) { b, t in
                let dst = try b.concat([t[1]], axis: 0)  // a private copy, since copy modifies its target
                try b.copy(t[0], into: dst, axis: 1, at: 2)
                return dst
            }
            add("embedding", "ids [2,7] int32 into [100,64]", dt, [InputSpec(shape: [2, 7], dtype: .int32, kind: .ids(100)), InputSpec(shape: [100, 64], dtype: dt)]) { b, t in
                try b.embedding(t[0], table: t[1])
            }
            add("randomNormal", "[10007] seed 42 offset 2^33", dt, []) { b, _ in
                try b.randomNormal([10007], seed: 42, offset: 1 << 33, dtype: dt)
            }
            for to in floats where to != dt {
                add("cast", "[1000] to \(to)", dt, [InputSpec(shape: [1000], dtype: dt)]) { b, t in try b.cast(try b.cast(t[0], to: to), to: .f32) }
            }
        }
        // FP8: rows quantized per row (the dequantized rows compared: the same codes and scales give
        // the same floats), and linear layers from FP8 operands. 16-bit sources go through cuBLASLt's
        // FP8 GEMM (scales per row of each operand); f32 sources and odd sizes through the float32
        // product of the dequantized operands, the definition the CPU computes.
        for dt in floats {
            for (label, shape) in [("[37, 64] (8-wide)", [37, 64]), ("[19, 75]", [19, 75]),
                                   ("DiT [4680, 1536]", [4680, 1536]), ("DiT FFN [4680, 8960]", [4680, 8960])] as [(String, Shape)] {
                if label.hasPrefix("DiT") && dt != .bf16 { continue }
                add("quantizeRows", label + " and a zero row", dt, [InputSpec(shape: shape, dtype: dt)]) { b, t in
                    let x = try b.concat([t[0], try b.zeros([1, shape.last], dtype: dt)], axis: 0)
                    return try b.quantizeRows(x).dequantized()
                }
            }
            // adaLN straight to FP8 rows (fused for the rows mod_layer_norm_v8 takes, else the two ops).
            // The GPU's row statistics round differently from the CPU's: where a value sits on an FP8
            // rounding boundary its code moves by a step (f32 rows: factor 100).
            for (label, x, s) in [("DiT [3, 1560, 1536] by f32 [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536]),
                                  ("[2, 9, 100] by [1, 1, 100] (unfused)", [2, 9, 100], [1, 1, 100])] as [(String, Shape, Shape)] {
                add("modulatedLayerNormQuantized", label, dt, [InputSpec(shape: x, dtype: dt), InputSpec(shape: s, dtype: .f32),
                                                              InputSpec(shape: s, dtype: .f32)], factor: dt == .f32 ? 100 : 1) { b, t in
                    try b.modulatedLayerNormQuantized(t[0], scale: t[1], shift: t[2], eps: 1e-6).dequantized()
                }
            }
            for (label, x, n, gelu, residual) in [("[37, 64] x [48, 64]^T + bias", [37, 64], 48, false, false),
                                                  ("[37, 64] x [48, 64]^T + bias, GELU", [37, 64], 48, true, false),
                                                  ("[2, 19, 80] x [40, 80]^T + bias + residual", [2, 19, 80], 40, false, true),
                                                  ("[19, 75] x [41, 75]^T + bias (odd)", [19, 75], 41, false, false),
                                                  ("DiT [4680, 1536] x [8960, 1536]^T + bias, GELU", [4680, 1536], 8960, true, false),
                                                  ("DiT [4680, 8960] x [1536, 8960]^T + bias", [4680, 8960], 1536, false, false),
                                                  ("DiT [1, 4680, 1536] x [1536, 1536]^T + bias + residual", [1, 4680, 1536], 1536, false, true)]
                    as [(String, Shape, Int, Bool, Bool)] {
                if label.hasPrefix("DiT") && dt != .bf16 { continue }
                let k = x.last
                var out = Array(x.dims.dropLast()); out.append(n)
                var inputs = [InputSpec(shape: x, dtype: dt), InputSpec(shape: [n, k], dtype: dt, kind: .scaled(1 / Float(k).squareRoot())),
                              InputSpec(shape: [n], dtype: dt)]
                if residual { inputs.append(InputSpec(shape: Shape(out), dtype: dt)) }
                add("quantizedLinear", label, dt, inputs, factor: dt == .f32 ? 1 : 2) { b, t in
                    try b.quantizedLinear(try b.quantizeRows(t[0]), weight: try b.quantizeRows(t[1]), bias: t[2], gelu: gelu,
                                          adding: residual ? t[3] : nil, into: nil)
                }
            }
            add("quantizedLinear", "[37, 64] x [48, 64]^T + bias into a view at row 5", dt,
                [InputSpec(shape: [37, 64], dtype: dt), InputSpec(shape: [48, 64], dtype: dt, kind: .scaled(0.125)), InputSpec(shape: [48], dtype: dt)],
                factor: dt == .f32 ? 1 : 2) { b, t in
                let big = try b.zeros([50, 48], dtype: dt)
                _ = try b.quantizedLinear(try b.quantizeRows(t[0]), weight: try b.quantizeRows(t[1]), bias: t[2], gelu: false, adding: nil,
                                          into: try big.narrowed(axis: 0, start: 5, length: 37))
                return big
            }
        }
        add("cast", "[1000] f32 to fp8e4m3", .f32, [InputSpec(shape: [1000], dtype: .f32)]) { b, t in try b.cast(try b.cast(t[0], to: .fp8e4m3), to: .f32) }
        add("cast", "[1000] int32 to int64", .int32, [InputSpec(shape: [1000], dtype: .int32, kind: .ids(1 << 30))]) { b, t in try b.cast(try b.cast(t[0], to: .int64), to: .f32) }
        add("embedding", "ids [9] int64 into [50,32]", .f32, [InputSpec(shape: [9], dtype: .int64, kind: .ids(50)), InputSpec(shape: [50, 32], dtype: .f32)]) { b, t in
            try b.embedding(t[0], table: t[1])
        }
        return out
    }
}

/// Checks of the CUDA runtime that are not one op: each returns a line for the table or throws.
enum RuntimeCheck {
    static var all: [(String, (CUDABackend, CPUBackend) throws -> String)] { [
        ("randomNormal bit-identical to the host", randomExact),
        ("graph capture + replay = eager", graph),
        ("allocator: no cuMemAlloc in steady state", allocatorSteady),
        ("second stream ordered by an event", streams),
        ("bad input gives typed errors", errors),
        ("linearGELU epilogue is tanh GELU", geluEpilogue),
    ] }

    /// Which GELU cuBLASLt's epilogue is: an f32 GEMM (FP32 compute) with the epilogue forced on,
    /// against the CPU's tanh GELU and erf GELU of the same product. At unit-scale pre-activations
    /// the two GELUs differ by ~4e-8 nmse; the two f32 GEMMs by orders of magnitude less.
    static func geluEpilogue(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let (m, k, n) = (512, 768, 1024)
        let specs = [InputSpec(shape: [m, k], dtype: .f32), InputSpec(shape: [n, k], dtype: .f32, kind: .scaled(1 / Float(k).squareRoot())),
                     InputSpec(shape: [n], dtype: .f32)]
        var g: [Tensor] = [], c: [Tensor] = []
        for (i, spec) in specs.enumerated() {
            let bytes = try OpCheck.hostBytes(spec, seed: 7000 + UInt64(i))
            try bytes.withUnsafeBytes { raw in
                g.append(try gpu.upload(raw, shape: spec.shape, dtype: spec.dtype))
                c.append(try cpu.upload(raw, shape: spec.shape, dtype: spec.dtype))
            }
        }
        let configured = gpu.geluEpilogue
        gpu.geluEpilogue = true
        defer { gpu.geluEpilogue = configured }
        let got = try gpu.linearGELU(g[0], weight: g[1], bias: g[2]).toFloats()
        let pre = try cpu.linear(c[0], weight: c[1], bias: c[2])
        let toTanh = OpCheck.nmse(got, try cpu.unary(.geluTanh, pre).toFloats())
        let toErf = OpCheck.nmse(got, try cpu.unary(.gelu, pre).toFloats())
        let figures = String(format: "nmse %.1e to tanh GELU, %.1e to erf", toTanh, toErf)
        if !(toTanh < toErf) { return "FAIL: closer to erf GELU (\(figures)): run with REEL_GELU_EPILOGUE=0" }
        if !(toTanh <= OpCheck.tolerance(.f32)) { return "FAIL: tanh GELU but off (\(figures))" }
        return "ok (\(figures)\(configured ? "" : "; epilogue off: REEL_GELU_EPILOGUE=0"))"
    }

    static func randomExact(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let n = 1 << 20
        let seed: UInt64 = 0x1234_5678_9ABC_DEF0, offset: UInt64 = 5_000_000_000
        let g = try gpu.randomNormal([n], seed: seed, offset: offset, dtype: .f32).toFloats()
        var mismatches = 0
        for i in 0..<n where g[i].bitPattern != PhiloxNormal.sample(seed: seed, index: offset + UInt64(i)).bitPattern { mismatches += 1 }
        if mismatches > 0 { return "FAIL: \(mismatches) of \(n) samples differ in some bit" }
        return "ok (\(n) samples, all bits equal)"
    }

    static func graph(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let x = try gpu.randomNormal([64, 256], seed: 1, offset: 0, dtype: .bf16)
        let w = try gpu.randomNormal([512, 256], seed: 2, offset: 0, dtype: .bf16)
        let g = try gpu.randomNormal([512], seed: 3, offset: 0, dtype: .bf16)
        let kv = try gpu.randomNormal([1, 256, 4, 128], seed: 4, offset: 0, dtype: .bf16)
        // linear -> silu -> rmsNorm -> attention (cuDNN's when present): the DiT's kinds of launches.
        func step() throws -> Tensor {
            let y = try gpu.rmsNorm(gpu.unary(.silu, gpu.linear(x, weight: w)), weight: g, eps: 1e-6)  // [64, 512]
            return try gpu.attention(query: y.reshaped([1, 64, 4, 128]), key: kv, value: kv, scale: 0.088, bias: nil)
        }
        _ = try step()  // compile kernels, choose GEMM algorithms
        var captured: Tensor?
        let graph = try gpu.captureGraph { captured = try step() }
        // New input values, written in place; the replay must see them.
        try gpu.copy(try gpu.randomNormal([64, 256], seed: 9, offset: 0, dtype: .bf16), into: x, axis: 0, at: 0)
        try graph.replay()
        let replayed = try captured!.toFloats()
        let eager = try step().toFloats()
        let e = OpCheck.nmse(replayed, eager)
        if e != 0 { return "FAIL: replay differs from eager run, nmse \(e)" }
        return "ok (replay bit-equal to eager, \(graph.retainedAllocations) buffers owned by the graph)"
    }

    static func allocatorSteady(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let x = try gpu.randomNormal([4, 300, 1536], seed: 4, offset: 0, dtype: .bf16)
        let w = try gpu.randomNormal([1536, 1536], seed: 5, offset: 0, dtype: .bf16)
        func block() throws { _ = try gpu.layerNorm(gpu.unary(.geluTanh, gpu.linear(x, weight: w)), weight: nil, bias: nil, eps: 1e-6) }
        try block()
        let before = gpu.cudaDevice.allocatorStats.driverAllocations
        for _ in 0..<20 { try block() }
        try gpu.synchronize()
        let after = gpu.cudaDevice.allocatorStats.driverAllocations
        if after != before { return "FAIL: \(after - before) cuMemAlloc calls in 20 identical steps" }
        return "ok (0 cuMemAlloc calls in 20 steps)"
    }

    static func streams(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        let s2 = try gpu.makeStream()
        let a = try gpu.randomNormal([1 << 22], seed: 6, offset: 0, dtype: .f32)
        let big = try gpu.unary(.exp, a)  // work in flight on stream 1
        try s2.wait(for: try gpu.recordEvent())
        let b = try s2.unary(.neg, big)
        try s2.synchronize()
        let host = try a.toFloats()
        let got = try b.toFloats()
        let want = host.map { -Foundation.exp($0) }
        let e = OpCheck.nmse(got, want)
        if !(e < 1e-10) { return "FAIL: nmse \(e) after the event wait" }
        return "ok (nmse \(String(format: "%.1e", e)))"
    }

    static func errors(_ gpu: CUDABackend, _ cpu: CPUBackend) throws -> String {
        var seen: [String] = []
        func expect(_ what: String, _ body: () throws -> Void) throws {
            do { try body() } catch let e as ReelError { seen.append(what); _ = e; return }
            throw ReelError.input("\(what): no ReelError thrown")
        }
        let a = try gpu.zeros([4, 8], dtype: .bf16), b = try gpu.zeros([5, 9], dtype: .bf16)
        try expect("matmul shapes") { _ = try gpu.matmul(a, b, transposeB: true, bias: nil) }
        try expect("wrong backend") { _ = try gpu.unary(.silu, try cpu.zeros([3], dtype: .f32)) }
        try expect("embedding id range") { _ = try gpu.embedding(try gpu.tensor([0, 99], shape: [2]), table: a) }
        try expect("attention shapes") { _ = try gpu.attention(query: a, key: b, value: b, scale: 1, bias: nil) }
        try expect("bad permutation") { _ = try gpu.permute(a, [0, 0]) }
        let frames = try gpu.zeros([2, 3, 8], dtype: .bf16), vec = try gpu.zeros([2, 1, 8], dtype: .f32)
        try expect("modulatedLayerNorm shapes") { _ = try gpu.modulatedLayerNorm(frames, scale: try gpu.zeros([3, 1, 8]), shift: vec, eps: 1e-6) }
        try expect("gatedResidual shapes") { _ = try gpu.gatedResidual(frames, try gpu.zeros([2, 3, 9], dtype: .bf16), gate: vec) }
        try expect("rmsNormRoPE grid") { _ = try gpu.rmsNormRoPE(try gpu.zeros([1, 5, 1, 8]), weight: nil, eps: 1e-6, grid: RoPEGrid(frames: 1, height: 2, width: 2)) }
        return "ok (\(seen.count) typed errors: \(seen.joined(separator: ", ")))"
    }
}

/// Runs `body` with the CUDA backend's attention path set to `path` and, when given, its key parts
/// forced to `splits` (other backends ignore both).
func withAttentionPath<T>(_ b: any Backend, _ path: CUDABackend.AttentionPath, splits: Int? = nil, _ body: () throws -> T) rethrows -> T {
    guard let g = b as? CUDABackend else { return try body() }
    let saved = (g.attentionPath, g.attentionSplitOverride)
    g.attentionPath = path
    if let splits { g.attentionSplitOverride = splits }
    defer { (g.attentionPath, g.attentionSplitOverride) = saved }
    return try body()
}

/// Runs `body` with the CUDA backend's convolution path set to `path` (other backends ignore it).
func withConvolutionPath<T>(_ b: any Backend, _ path: CUDABackend.KernelChoice, _ body: () throws -> T) rethrows -> T {
    guard let g = b as? CUDABackend else { return try body() }
    let saved = g.convolutionPath
    g.convolutionPath = path
    defer { g.convolutionPath = saved }
    return try body()
}

fileprivate func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
fileprivate func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
