import Foundation
import ReelCore
import ReelCPU
import Testing

/// Naive float64 C = A op(B) + bias over `batch` independent products.
func referenceMatmul(_ a: [Double], _ b: [Double], bias: [Double]?, batch: Int, m: Int, k: Int, n: Int,
                     transposeB: Bool, batchedB: Bool) -> [Double] {
    var c = [Double](repeating: 0, count: batch * m * n)
    for g in 0..<batch {
        let bo = batchedB ? g * k * n : 0
        for i in 0..<m {
            for j in 0..<n {
                var s = bias?[j] ?? 0
                for p in 0..<k {
                    s += a[(g * m + i) * k + p] * (transposeB ? b[bo + j * k + p] : b[bo + p * n + j])
                }
                c[(g * m + i) * n + j] = s
            }
        }
    }
    return c
}

/// The GEMM paths the tests exercise: always the own kernel, and BLAS when one is installed.
let gemmPaths: [GEMMPath] = BLAS.shared == nil ? [.own] : [.own, .blas]

@Suite struct MatmulTests {
    @Test(arguments: gemmPaths)
    func matchesReferenceAtOddShapes(path: GEMMPath) throws {
        let cpu = CPUBackend(threads: 3, gemm: path)
        // (M, K, N): degenerate, odd, larger than one packed block in every dimension.
        let shapes = [(1, 1, 1), (7, 13, 5), (37, 300, 70), (130, 257, 33), (5, 40, 3100)]
        var seed: UInt64 = 1
        for (m, k, n) in shapes {
            for transposeB in [false, true] {
                for withBias in [false, true] {
                    seed += 1
                    let (a, ar) = try randomTensor(cpu, [m, k], seed: seed)
                    let (b, br) = try randomTensor(cpu, transposeB ? [n, k] : [k, n], seed: seed + 100)
                    let (bias, biasR) = try randomTensor(cpu, [n], seed: seed + 200)
                    let y = try cpu.matmul(a, b, transposeB: transposeB, bias: withBias ? bias : nil)
                    #expect(y.shape == [m, n])
                    let ref = referenceMatmul(ar, br, bias: withBias ? biasR : nil, batch: 1, m: m, k: k, n: n,
                                              transposeB: transposeB, batchedB: false)
                    let e = nmse(try y.toFloats(), ref)
                    #expect(e < 1e-11, "\(path) \(m)x\(k)x\(n) transposeB \(transposeB) bias \(withBias): nmse \(e)")
                }
            }
        }
    }

    @Test(arguments: gemmPaths)
    func leadingAxesAndBatches(path: GEMMPath) throws {
        let cpu = CPUBackend(gemm: path)
        // Leading axes fold into M.
        let (a, ar) = try randomTensor(cpu, [2, 3, 5, 17], seed: 11)
        let (w, wr) = try randomTensor(cpu, [9, 17], seed: 12)
        let y = try cpu.linear(a, weight: w)
        #expect(y.shape == [2, 3, 5, 9])
        #expect(nmse(try y.toFloats(), referenceMatmul(ar, wr, bias: nil, batch: 1, m: 30, k: 17, n: 9, transposeB: true, batchedB: false)) < 1e-11)
        // Batched b, both layouts.
        for transposeB in [false, true] {
            let (x, xr) = try randomTensor(cpu, [4, 6, 19], seed: 13)
            let (b, br) = try randomTensor(cpu, transposeB ? [4, 21, 19] : [4, 19, 21], seed: 14)
            let (bias, biasR) = try randomTensor(cpu, [21], seed: 15)
            let z = try cpu.matmul(x, b, transposeB: transposeB, bias: bias)
            #expect(z.shape == [4, 6, 21])
            let ref = referenceMatmul(xr, br, bias: biasR, batch: 4, m: 6, k: 19, n: 21, transposeB: transposeB, batchedB: true)
            #expect(nmse(try z.toFloats(), ref) < 1e-11)
        }
    }

    @Test(arguments: [DType.bf16, .f16])
    func halfInputsComputeInFloat32(dtype: DType) throws {
        let cpu = CPUBackend(gemm: .own)
        let (a, ar) = try randomTensor(cpu, [23, 64], dtype, seed: 21)
        let (w, wr) = try randomTensor(cpu, [31, 64], .bf16, seed: 22)
        let y = try cpu.linear(a, weight: w)
        #expect(y.dtype == dtype)
        let ref = referenceMatmul(ar, wr, bias: nil, batch: 1, m: 23, k: 64, n: 31, transposeB: true, batchedB: false)
        #expect(nmse(try y.toFloats(), ref) < tolerance(dtype))
    }

    /// The default `linearGELU` (the CPU's) is `geluTanh(linear(...))` bit for bit, and at unit-scale
    /// pre-activations it is told apart from erf GELU (the scale check-ops uses on the GPU).
    @Test(arguments: [DType.f32, .bf16])
    func linearGELUIsTanhGELUOfLinear(dtype: DType) throws {
        let cpu = CPUBackend(gemm: .own)
        let (m, k, n) = (14, 40, 24)
        let (x, xr) = try randomTensor(cpu, [2, 7, k], dtype, seed: 41)
        let (w, wr) = try randomTensor(cpu, [n, k], dtype, seed: 42, scale: 1 / Float(k).squareRoot())
        let (bias, biasR) = try randomTensor(cpu, [n], dtype, seed: 43)
        for withBias in [true, false] {
            let b = withBias ? bias : nil
            let fused = try cpu.linearGELU(x, weight: w, bias: b)
            let composed = try cpu.unary(.geluTanh, try cpu.linear(x, weight: w, bias: b))
            #expect(fused.shape == [2, 7, n] && fused.dtype == dtype)
            #expect(try fused.toFloats() == composed.toFloats(), "bias \(withBias)")
            guard dtype == .f32 else { continue }
            let pre = referenceMatmul(xr, wr, bias: withBias ? biasR : nil, batch: 1, m: m, k: k, n: n, transposeB: true, batchedB: false)
            let ours = try fused.toFloats()
            let toTanh = nmse(ours, pre.map { referenceUnary(.geluTanh, $0) })
            let toErf = nmse(ours, pre.map { referenceUnary(.gelu, $0) })
            #expect(toTanh < 1e-11, "bias \(withBias): nmse \(toTanh) to tanh GELU")
            #expect(toErf > 1e-9, "bias \(withBias): nmse \(toErf) to erf GELU")
        }
        #expect(throws: ReelError.self) { try cpu.linearGELU(x, weight: try cpu.zeros([1, n, k], dtype: dtype), bias: nil) }
        #expect(throws: ReelError.self) { try cpu.linearGELU(x, weight: w, bias: try cpu.zeros([n + 1], dtype: dtype)) }
    }

    @Test func ownKernelAgreesWithBLAS() throws {
        guard BLAS.shared != nil else { return }
        let own = CPUBackend(gemm: .own), blas = CPUBackend(gemm: .blas)
        let (a, _) = try randomTensor(own, [300, 520], seed: 31)
        let (b, _) = try randomTensor(own, [520, 270], seed: 32)
        let x = try own.matmul(a, b, transposeB: false, bias: nil).toFloats()
        let y = try blas.matmul(a, b, transposeB: false, bias: nil).toFloats()
        #expect(nmse(x, y.map(Double.init)) < 1e-12)
    }

    /// `auto` runs the GEMM it reports (`GEMMSelection`), bit for bit, and keeps one choice per thread count.
    @Test func autoRunsTheGEMMItReports() throws {
        let auto = CPUBackend(threads: 2, gemm: .auto)
        let choice = GEMMSelection.resolved(threads: 2)
        #expect(choice.path == .own || choice.path == .blas)
        #expect(GEMMSelection.resolved(threads: 2).reason == choice.reason)
        #expect(auto.resolvedGEMMPath == choice.path && auto.gemmDescription == choice.reason)
        if BLAS.shared == nil {
            #expect(choice.path == .own && choice.reason.contains("no CBLAS library"))
        } else if !BLAS.shared!.named {
            #expect(choice.ownRate != nil && choice.blasRate != nil && choice.reason.contains("GFLOP/s"))
            #expect((choice.path == .blas) == (choice.blasRate! >= choice.ownRate! * GEMMSelection.margin))
        }
        let explicit = CPUBackend(threads: 2, gemm: choice.path)
        let (a, _) = try randomTensor(auto, [77, 300], seed: 33)
        let (b, _) = try randomTensor(auto, [130, 300], seed: 34)
        #expect(try auto.linear(a, weight: b).toFloats() == explicit.linear(a, weight: b).toFloats())
        #expect(CPUBackend(gemm: .own).resolvedGEMMPath == .own)
    }

    @Test func rejectsMismatchedShapes() throws {
        let cpu = CPUBackend()
        let a = try cpu.zeros([3, 4]), b = try cpu.zeros([5, 6])
        #expect(throws: ReelError.self) { try cpu.matmul(a, b, transposeB: false, bias: nil) }
        #expect(throws: ReelError.self) { try cpu.matmul(a, try cpu.zeros([4, 6]), transposeB: false, bias: try cpu.zeros([5])) }
        #expect(throws: ReelError.self) { try cpu.matmul(a, try cpu.zeros([2, 4, 6]), transposeB: false, bias: nil) }
    }
}

/// Naive float64 attention with the whole score row materialized.
func referenceAttention(q: [Double], k: [Double], v: [Double], bias: [Double]?, b: Int, lq: Int, lk: Int,
                        h: Int, d: Int, dv: Int, scale: Double) -> [Double] {
    var out = [Double](repeating: 0, count: b * lq * h * dv)
    var s = [Double](repeating: 0, count: lk)
    for bi in 0..<b {
        for hi in 0..<h {
            for i in 0..<lq {
                var mx = -Double.infinity
                for j in 0..<lk {
                    var dot = 0.0
                    for c in 0..<d { dot += q[((bi * lq + i) * h + hi) * d + c] * k[((bi * lk + j) * h + hi) * d + c] }
                    s[j] = dot * scale + (bias?[(hi * lq + i) * lk + j] ?? 0)
                    mx = max(mx, s[j])
                }
                var sum = 0.0
                for j in 0..<lk { s[j] = exp(s[j] - mx); sum += s[j] }
                for c in 0..<dv {
                    var acc = 0.0
                    for j in 0..<lk { acc += s[j] * v[((bi * lk + j) * h + hi) * dv + c] }
                    out[((bi * lq + i) * h + hi) * dv + c] = acc / sum
                }
            }
        }
    }
    return out
}

@Suite struct AttentionTests {
    @Test(arguments: [(2, 37, 300, 3, 16, 24, true), (1, 70, 129, 2, 64, 64, false), (1, 1, 5, 1, 8, 3, true), (1, 200, 150, 2, 8, 12, true)])
    func matchesReference(shape: (Int, Int, Int, Int, Int, Int, Bool)) throws {
        let (b, lq, lk, h, d, dv, withBias) = shape
        let cpu = CPUBackend()
        let (q, qr) = try randomTensor(cpu, [b, lq, h, d], seed: 41)
        let (k, kr) = try randomTensor(cpu, [b, lk, h, d], seed: 42)
        let (v, vr) = try randomTensor(cpu, [b, lk, h, dv], seed: 43)
        let (bias, br) = try randomTensor(cpu, [h, lq, lk], seed: 44, scale: 2)
        let scale = 1 / Float(d).squareRoot()
        let y = try cpu.attention(query: q, key: k, value: v, scale: scale, bias: withBias ? bias : nil)
        #expect(y.shape == [b, lq, h, dv])
        let ref = referenceAttention(q: qr, k: kr, v: vr, bias: withBias ? br : nil, b: b, lq: lq, lk: lk, h: h, d: d, dv: dv, scale: Double(scale))
        let e = nmse(try y.toFloats(), ref)
        #expect(e < 1e-10, "nmse \(e)")
    }

    @Test func bf16InputsAndLargeScores() throws {
        let cpu = CPUBackend(threads: 2)
        // Scores of magnitude ~100 test the running max; bf16 output.
        let (q, qr) = try randomTensor(cpu, [1, 20, 2, 32], .bf16, seed: 51, scale: 4)
        let (k, kr) = try randomTensor(cpu, [1, 150, 2, 32], .bf16, seed: 52, scale: 4)
        let (v, vr) = try randomTensor(cpu, [1, 150, 2, 32], .bf16, seed: 53)
        let y = try cpu.attention(query: q, key: k, value: v, scale: 1, bias: nil)
        #expect(y.dtype == .bf16)
        let ref = referenceAttention(q: qr, k: kr, v: vr, bias: nil, b: 1, lq: 20, lk: 150, h: 2, d: 32, dv: 32, scale: 1)
        #expect(nmse(try y.toFloats(), ref) < tolerance(.bf16))
    }

    @Test func rejectsBadShapes() throws {
        let cpu = CPUBackend()
        let q = try cpu.zeros([1, 4, 2, 8])
        #expect(throws: ReelError.self) { try cpu.attention(query: q, key: try cpu.zeros([1, 5, 2, 7]), value: try cpu.zeros([1, 5, 2, 8]), scale: 1, bias: nil) }
        #expect(throws: ReelError.self) { try cpu.attention(query: q, key: try cpu.zeros([1, 5, 2, 8]), value: try cpu.zeros([1, 6, 2, 8]), scale: 1, bias: nil) }
        #expect(throws: ReelError.self) { try cpu.attention(query: q, key: try cpu.zeros([1, 5, 2, 8]), value: try cpu.zeros([1, 5, 2, 8]), scale: 1, bias: try cpu.zeros([2, 5, 4])) }
    }
}
