import Foundation
import ReelCore

extension CPUBackend {
    /// The reference of FP8 attention (`Backend.fp8Attention`): cuDNN's FP8 SDPA graph with each of its
    /// roundings to E4M3 emulated in float32 (Q, K, V with their per-tensor scales, the probabilities at 448,
    /// the output at `FP8Attention.outputScale`), the products in float32 through the backend's SGEMM. It
    /// holds the scores of one tile of queries (at most 16 Mi floats), never Lq x Lk.
    public func fp8Attention(query: Tensor, key: Tensor, value: Tensor, scale: Float) throws -> Tensor {
        let op = "fp8Attention"
        for t in [query, key, value] { try requireFloat(t, op) }
        let (bsz, lq, heads, d, lk) = try FP8Attention.checkedShape(query: query, key: key, value: value, op: op)
        let q = try fp8Codes(query, op), k = try fp8Codes(key, op), v = try fp8Codes(value, op)
        let dq = FP8Attention.descale(amax: q.amax), dk = FP8Attention.descale(amax: k.amax)
        let dv = FP8Attention.descale(amax: v.amax)
        let (sp, dp) = (FP8Attention.probabilityScale, FP8Attention.probabilityDescale)
        let (so, dOut) = (FP8Attention.outputScale(valueAmax: v.amax), FP8Attention.outputDescale(valueAmax: v.amax))
        let tile = max(1, min(lq, (16 << 20) / max(lk, 1)))
        let scores = try CPUStorage(byteCount: max(tile * lk, 1) * 4), acc = try CPUStorage(byteCount: max(tile * d, 1) * 4)
        let s = scores.floats, a = acc.floats, stride = heads * d
        defer { withExtendedLifetime((q.storage, k.storage, v.storage, scores, acc)) {} }
        return try makeOutput([bsz, lq, heads, d], query.dtype) { out in
            if lk == 0 { out.update(repeating: 0, count: bsz * lq * stride); return }
            for b in 0..<bsz {
                for h in 0..<heads {
                    let kvBase = b * lk * stride + h * d, qBase = b * lq * stride + h * d
                    var start = 0
                    while start < lq {
                        let rows = min(tile, lq - start)
                        try sgemm(transB: true, m: rows, n: lk, k: d, alpha: 1, a: q.codes + qBase + start * stride, lda: stride,
                                  b: k.codes + kvBase, ldb: stride, beta: 0, c: s, ldc: lk)
                        parallelFor(rows, grain: 4) { r in
                            for i in r {
                                let row = s + i * lk
                                var mx = -Float.infinity
                                for j in 0..<lk {
                                    row[j] = ((row[j] * scale) * dq) * dk
                                    mx = Swift.max(mx, row[j])
                                }
                                var sum: Float = 0
                                for j in 0..<lk {
                                    row[j] = Foundation.exp(row[j] - mx)
                                    sum += row[j]
                                }
                                for j in 0..<lk { row[j] = FP8Attention.rounded((row[j] / sum) * sp) }
                            }
                        }
                        try sgemm(transB: false, m: rows, n: d, k: lk, alpha: 1, a: s, lda: lk, b: v.codes + kvBase, ldb: stride,
                                  beta: 0, c: a, ldc: d)
                        for i in 0..<rows {
                            let o = out + qBase + (start + i) * stride
                            for c in 0..<d { o[c] = FP8Attention.rounded(((a[i * d + c] * dp) * dv) * so) * dOut }
                        }
                        start += rows
                    }
                }
            }
        }
    }

    /// `t`'s values as E4M3 codes (as floats) at the scale of its largest magnitude, and that magnitude.
    private func fp8Codes(_ t: Tensor, _ op: String) throws
        -> (codes: UnsafeMutablePointer<Float>, storage: CPUStorage, amax: Float) {
        let x = try floats(t, op), n = t.count
        var amax: Float = 0
        for i in 0..<n { amax = Swift.max(amax, Swift.abs(x.pointer[i])) }
        let storage = try CPUStorage(byteCount: max(n, 1) * 4)
        let codes = storage.floats, s = FP8Attention.scale(amax: amax)
        parallelFor(n, grain: 1 << 15) { r in
            for i in r { codes[i] = FP8Attention.rounded(x.pointer[i] * s) }
        }
        return (codes, storage, amax)
    }
}
