import Foundation
import ReelCore

extension CPUBackend {
    /// Flash-style attention: for each (batch, head, tile of queries), key tiles stream through an
    /// online softmax (running max and sum per query), so memory is O(tile x tile), never Lq x Lk.
    public func attention(query: Tensor, key: Tensor, value: Tensor, scale: Float, bias: Tensor?) throws -> Tensor {
        let op = "attention"
        for t in [query, key, value] { try requireFloat(t, op) }
        try require(query.rank == 4 && key.rank == 4 && value.rank == 4, op,
                    "expected q [B, Lq, H, D], k [B, Lk, H, D], v [B, Lk, H, Dv], got \(query.shape), \(key.shape), \(value.shape)")
        let (bsz, lq, heads, d) = (query.shape[0], query.shape[1], query.shape[2], query.shape[3])
        let lk = key.shape[1], dv = value.shape[3]
        try require(key.shape[0] == bsz && key.shape[2] == heads && key.shape[3] == d, op,
                    "k \(key.shape) does not match q \(query.shape)")
        try require(value.shape[0] == bsz && value.shape[1] == lk && value.shape[2] == heads, op,
                    "v \(value.shape) does not match k \(key.shape)")
        if let bias {
            try requireFloat(bias, op)
            try require(bias.shape == [heads, lq, lk], op, "bias must be [H, Lq, Lk] = [\(heads), \(lq), \(lk)], got \(bias.shape)")
        }
        let qin = try floats(query, op), kin = try floats(key, op), vin = try floats(value, op)
        let biasIn = try bias.map { try floats($0, op) }
        return try makeOutput([bsz, lq, heads, dv], query.dtype) { out in
            let qTiles = (lq + AttentionTile.queries - 1) / AttentionTile.queries
            let tasks = bsz * heads * qTiles
            let q = qin.pointer, k = kin.pointer, v = vin.pointer, bp = biasIn.map { UnsafePointer($0.pointer) }
            parallelFor(tasks) { r in
                let tile = AttentionTile(d: d, dv: dv)
                for t in r {
                    let qt = t % qTiles, h = (t / qTiles) % heads, b = t / (qTiles * heads)
                    let q0 = qt * AttentionTile.queries
                    tile.run(q: q, k: k, v: v, out: out, bias: bp, b: b, h: h, q0: q0,
                             rows: Swift.min(AttentionTile.queries, lq - q0),
                             lq: lq, lk: lk, heads: heads, scale: scale)
                }
            }
        }
    }
}

/// Scratch of one worker: a tile of queries against tiles of keys.
final class AttentionTile {
    static let queries = 32
    static let keys = 64
    let d: Int, dv: Int
    let qBuf: UnsafeMutablePointer<Float>   // [queries, d], scaled
    let sBuf: UnsafeMutablePointer<Float>   // [queries, keys] scores, then probabilities
    let oBuf: UnsafeMutablePointer<Float>   // [queries, dv] unnormalized output
    var rowMax: [Float]
    var rowSum: [Float]

    init(d: Int, dv: Int) {
        self.d = d; self.dv = dv
        qBuf = .allocate(capacity: Self.queries * max(d, 1))
        sBuf = .allocate(capacity: Self.queries * Self.keys)
        oBuf = .allocate(capacity: Self.queries * max(dv, 1))
        rowMax = .init(repeating: 0, count: Self.queries)
        rowSum = .init(repeating: 0, count: Self.queries)
    }

    deinit { qBuf.deallocate(); sBuf.deallocate(); oBuf.deallocate() }

    func run(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
             out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?,
             b: Int, h: Int, q0: Int, rows: Int, lq: Int, lk: Int, heads: Int, scale: Float) {
        let qRow = heads * d, vRow = heads * dv
        for i in 0..<rows {
            let src = q + ((b * lq + q0 + i) * heads + h) * d
            for c in 0..<d { qBuf[i * d + c] = src[c] * scale }
            rowMax[i] = -.infinity
            rowSum[i] = 0
        }
        oBuf.update(repeating: 0, count: rows * dv)
        let kBase = k + b * lk * qRow + h * d
        let vBase = v + b * lk * vRow + h * dv
        var k0 = 0
        while k0 < lk {
            let cols = min(Self.keys, lk - k0)
            for i in 0..<rows {
                let s = sBuf + i * Self.keys
                let qi = qBuf + i * d
                for j in 0..<cols { s[j] = dot8(qi, kBase + (k0 + j) * qRow, d) }
                if let bias {
                    let brow = bias + (h * lq + q0 + i) * lk + k0
                    for j in 0..<cols { s[j] += brow[j] }
                }
                // Online softmax: rescale what was accumulated under the old running max.
                let m = max(rowMax[i], max8(s, cols))
                let shift = m == -.infinity ? 0 : m
                let correction = rowMax[i] == -.infinity ? 0 : expf(rowMax[i] - shift)
                rowMax[i] = m
                var sum: Float = 0
                for j in 0..<cols { let e = expf(s[j] - shift); s[j] = e; sum += e }
                rowSum[i] = rowSum[i] * correction + sum
                let o = oBuf + i * dv
                if correction != 1 { for c in 0..<dv { o[c] *= correction } }
                for j in 0..<cols { axpy8(s[j], vBase + (k0 + j) * vRow, o, dv) }
            }
            k0 += cols
        }
        for i in 0..<rows {
            let inv = rowSum[i] > 0 ? 1 / rowSum[i] : 0
            let dst = out + ((b * lq + q0 + i) * heads + h) * dv
            for c in 0..<dv { dst[c] = oBuf[i * dv + c] * inv }
        }
    }
}

@inline(__always) func dot8(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var a0 = F8(), a1 = F8()
    var i = 0
    while i + 16 <= n {
        a0 = a0.addingProduct(load8(a + i), load8(b + i))
        a1 = a1.addingProduct(load8(a + i + 8), load8(b + i + 8))
        i += 16
    }
    while i + 8 <= n { a0 = a0.addingProduct(load8(a + i), load8(b + i)); i += 8 }
    var s = (a0 + a1).sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// y += alpha * x over n elements.
@inline(__always) func axpy8(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    let a = F8(repeating: alpha)
    var i = 0
    while i + 8 <= n { store8(load8(y + i).addingProduct(a, load8(x + i)), y + i); i += 8 }
    while i < n { y[i] += alpha * x[i]; i += 1 }
}
