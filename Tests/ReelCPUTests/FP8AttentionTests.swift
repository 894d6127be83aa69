import Foundation
import Testing
import ReelCore
import ReelCPU

/// FP8 attention's CPU reference (`CPUBackend.fp8Attention`, the oracle `reel check-ops` holds cuDNN's FP8 SDPA
/// to): within FP8's rounding of exact attention, and a deliberately wrong variant far past it.
@Suite struct FP8AttentionTests {
    let cpu = CPUBackend(gemm: .own)

    /// q [1, 64, 2, 64] over 200 keys, normal values (V scaled by 3: the per-tensor scales must follow it).
    func inputs(keyScale: Float = 1) throws -> (q: Tensor, k: Tensor, v: Tensor) {
        let (q, _) = try randomTensor(cpu, [1, 64, 2, 64], seed: 21)
        let (k, _) = try randomTensor(cpu, [1, 200, 2, 64], seed: 22, scale: keyScale)
        let (v, _) = try randomTensor(cpu, [1, 200, 2, 64], seed: 23, scale: 3)
        return (q, k, v)
    }

    func exact(_ t: (q: Tensor, k: Tensor, v: Tensor), scale: Float) throws -> [Double] {
        try cpu.attention(query: t.q, key: t.k, value: t.v, scale: scale, bias: nil).toFloats().map(Double.init)
    }

    /// Four E4M3 roundings (3 mantissa bits: a relative step of at most 1/16, about 3.6% rms) reach the output:
    /// V's and O's directly (each ~1.3e-3 nmse), Q's and K's through the scores, P's averaged over the keys.
    /// Measured nmse against exact float32 attention: see the printed figure; the bound is 1e-2. The control, K
    /// fed in at 448 / amax(K) times its size (which leaves its codes as they were and only drops its descale
    /// from the scores, as a graph missing descaleK computes), lands at order 1e-1 or more.
    @Test func staysWithinFP8RoundingOfExactAttention() throws {
        let t = try inputs(keyScale: 2), scale = 1 / Float(64).squareRoot()
        let want = try exact(t, scale: scale)
        let got = try cpu.fp8Attention(query: t.q, key: t.k, value: t.v, scale: scale).toFloats()
        let err = nmse(got, want)
        let amaxK = try t.k.toFloats().map(abs).max()!
        let undescaled = try cpu.affine(t.k, scale: FP8Attention.scale(amax: amaxK), bias: 0)
        let wrong = nmse(try cpu.fp8Attention(query: t.q, key: undescaled, value: t.v, scale: scale).toFloats(), want)
        print("FP8 attention (CPU emulation) against exact: nmse \(err); K's descale missing: \(wrong)")
        #expect(err > 1e-5 && err < 1e-2)
        #expect(wrong > 10 * 1e-2)
    }

    /// Exact E4M3 arithmetic where nothing rounds: one key (P = 1 exactly) and V on the E4M3 grid at scale 1
    /// (amax 448), its halves normal (O's scale is 224 / amax): O = V's row, whatever Q and K are.
    @Test func oneKeyReturnsItsValueRow() throws {
        let (q, _) = try randomTensor(cpu, [1, 5, 2, 16], seed: 31)
        let (k, _) = try randomTensor(cpu, [1, 1, 2, 16], seed: 32)
        var row: [Float] = []
        for i in 0..<32 {
            let code = UInt8(16 + 3 * i), sign: UInt8 = i % 2 == 1 ? 0x80 : 0
            row.append(Float8E4M3Bits.toFloat(code | sign))
        }
        row[0] = 448
        let v = try cpu.tensor(row, shape: [1, 1, 2, 16])
        let got = try cpu.fp8Attention(query: q, key: k, value: v, scale: 0.25).toFloats()
        for i in 0..<5 { #expect(Array(got[(i * 32)..<((i + 1) * 32)]) == row, "query \(i)") }
    }

    /// CUDA's path where cuDNN refuses a shape (`Backend.composedFP8Attention`, composed of ops), run on the CPU from
    /// codes made by its ops, against the reference: the same roundings, so only the GEMMs' summation order parts them
    /// (nmse below 1e-6, four orders under FP8's own error; measured 0, bit for bit on Reel's own GEMM); fed K's
    /// descale as 1 (the control) it lands at 6.
    /// Two query tiles (a score budget of 100 rows) exercise the tiling.
    @Test func composedOpsMatchTheReference() throws {
        let t = try inputs(keyScale: 2), scale = 1 / Float(64).squareRoot()
        let want = try cpu.fp8Attention(query: t.q, key: t.k, value: t.v, scale: scale).toFloats().map(Double.init)
        func codes(_ x: Tensor) throws -> (Tensor, Float) {
            let amax = try x.toFloats().map(abs).max()!
            return (try cpu.cast(try cpu.affine(x, scale: FP8Attention.scale(amax: amax), bias: 0), to: .fp8e4m3), amax)
        }
        let (q8, aq) = try codes(t.q), (k8, ak) = try codes(t.k), (v8, av) = try codes(t.v)
        let scales = FP8Attention.Scales(descaleQ: FP8Attention.descale(amax: aq), descaleK: FP8Attention.descale(amax: ak),
                                         descaleV: FP8Attention.descale(amax: av),
                                         outputScale: FP8Attention.outputScale(valueAmax: av),
                                         outputDescale: FP8Attention.outputDescale(valueAmax: av))
        func composed(_ s: FP8Attention.Scales) throws -> [Float] {
            try cpu.composedFP8Attention(q8: q8, k8: k8, v8: v8, scales: s, scale: scale,
                                         into: try cpu.allocate([1, 64, 2, 64], dtype: .f32), scoreBytes: 100 * 200 * 4).toFloats()
        }
        var wrong = scales
        wrong.descaleK = 1
        let err = nmse(try composed(scales), want), off = nmse(try composed(wrong), want)
        print("FP8 attention composed of ops against the reference: nmse \(err); K's descale missing: \(off)")
        #expect(err < 1e-6)
        #expect(off > 0.1)
    }

    @Test func refusesDifferentValueWidth() throws {
        let (q, _) = try randomTensor(cpu, [1, 4, 1, 8], seed: 1)
        let (v, _) = try randomTensor(cpu, [1, 6, 1, 4], seed: 2)
        #expect(throws: ReelError.self) { try cpu.fp8Attention(query: q, key: q, value: v, scale: 1) }
    }
}
