import Foundation
import ReelCore

extension CPUBackend {
    /// Flash-style attention: for each (batch, head, tile of queries), key tiles stream through an
    /// online softmax (running max and sum per query). Beyond the inputs it holds a packed copy of
    /// K and V and one 96 x 128 score tile per worker, never Lq x Lk.
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
        let plan = AttentionPlan(batch: bsz, lq: lq, lk: lk, heads: heads, d: d, dv: dv)
        // K and V of every head packed once into the micro-kernel's strip layout (a copy the size of
        // K and V, not of the scores).
        let kPacked = try CPUStorage(byteCount: Swift.max(plan.kPackedCount, 1) * 4)
        let vPacked = try CPUStorage(byteCount: Swift.max(plan.vPackedCount, 1) * 4)
        plan.pack(k: kin.pointer, v: vin.pointer, into: kPacked.floats, vPacked.floats, self)
        return try makeOutput([bsz, lq, heads, dv], query.dtype) { out in
            let qTiles = (lq + plan.tileQ - 1) / plan.tileQ
            let tasks = bsz * heads * qTiles
            let q = qin.pointer, kp = UnsafePointer(kPacked.floats), vp = UnsafePointer(vPacked.floats)
            let bp = biasIn.map { UnsafePointer($0.pointer) }
            parallelFor(tasks) { r in
                let tile = AttentionTile(plan)
                for t in r {
                    let qt = t % qTiles, h = (t / qTiles) % heads, b = t / (qTiles * heads)
                    tile.run(q: q, kPacked: kp, vPacked: vp, out: out, bias: bp, b: b, h: h, q0: qt * plan.tileQ, scale: scale)
                }
            }
        }
    }
}

/// Sizes and packed layouts of one attention call.
///
/// Scores of a query tile against a key tile are a small GEMM: Q (rows in MR strips) times K^T
/// (keys in NR strips, `kPacked[b, h][strip][d][16]`). Probabilities times V are another one:
/// P (MR strips) times V (value columns in NR strips, `vPacked[b, h][strip][key][16]`). Both run on
/// the SGEMM micro-kernel.
struct AttentionPlan {
    let batch: Int, lq: Int, lk: Int, heads: Int, d: Int, dv: Int
    /// Queries per tile (a multiple of MR) and keys per tile (a multiple of NR).
    let tileQ: Int, tileK: Int
    let keyStrips: Int, valueStrips: Int
    var dvPadded: Int { valueStrips * SGEMM.nr }
    var kPackedCount: Int { batch * heads * keyStrips * SGEMM.nr * d }
    var vPackedCount: Int { batch * heads * valueStrips * lk * SGEMM.nr }

    init(batch: Int, lq: Int, lk: Int, heads: Int, d: Int, dv: Int) {
        self.batch = batch; self.lq = lq; self.lk = lk; self.heads = heads; self.d = d; self.dv = dv
        // 96 x 128 tiles: Q tile, score tile and output tile stay in L2 for heads up to 384.
        tileQ = min(96, (lq + SGEMM.mr - 1) / SGEMM.mr * SGEMM.mr)
        tileK = 128
        keyStrips = (lk + SGEMM.nr - 1) / SGEMM.nr
        valueStrips = (dv + SGEMM.nr - 1) / SGEMM.nr
    }

    func pack(k: UnsafePointer<Float>, v: UnsafePointer<Float>, into kp: UnsafeMutablePointer<Float>,
              _ vp: UnsafeMutablePointer<Float>, _ backend: CPUBackend) {
        let nr = SGEMM.nr
        backend.parallelFor(batch * heads * keyStrips, grain: 16) { r in
            for task in r {
                let s = task % keyStrips, bh = task / keyStrips
                let b = bh / heads, h = bh % heads
                let dst = kp + task * nr * d
                for q in 0..<nr {
                    let key = s * nr + q
                    if key < lk {
                        let src = k + ((b * lk + key) * heads + h) * d
                        for c in 0..<d { dst[c * nr + q] = src[c] }
                    } else {
                        for c in 0..<d { dst[c * nr + q] = 0 }
                    }
                }
            }
        }
        backend.parallelFor(batch * heads * valueStrips, grain: 4) { r in
            for task in r {
                let s = task % valueStrips, bh = task / valueStrips
                let b = bh / heads, h = bh % heads
                let dst = vp + task * lk * nr
                let cols = min(nr, dv - s * nr)
                for key in 0..<lk {
                    let src = v + ((b * lk + key) * heads + h) * dv + s * nr
                    let row = dst + key * nr
                    if cols == nr {
                        store8(load8(src), row); store8(load8(src + 8), row + 8)
                    } else {
                        for c in 0..<nr { row[c] = c < cols ? src[c] : 0 }
                    }
                }
            }
        }
    }
}

/// Scratch of one worker: one tile of queries against every tile of keys, with an online softmax
/// (running max and sum per query; the output is rescaled whenever the max grows).
final class AttentionTile {
    let plan: AttentionPlan
    let qPacked: UnsafeMutablePointer<Float>  // [tileQ / MR][d][MR]
    let scores: UnsafeMutablePointer<Float>   // [tileQ][tileK], scores then probabilities
    let pPacked: UnsafeMutablePointer<Float>  // [tileQ / MR][tileK][MR]
    let acc: UnsafeMutablePointer<Float>      // [tileQ][dvPadded], unnormalized output
    var rowMax: [Float]
    var rowSum: [Float]

    init(_ plan: AttentionPlan) {
        self.plan = plan
        qPacked = .allocate(capacity: plan.tileQ * max(plan.d, 1))
        scores = .allocate(capacity: plan.tileQ * plan.tileK)
        pPacked = .allocate(capacity: plan.tileQ * plan.tileK)
        acc = .allocate(capacity: plan.tileQ * max(plan.dvPadded, 1))
        rowMax = .init(repeating: 0, count: plan.tileQ)
        rowSum = .init(repeating: 0, count: plan.tileQ)
    }

    deinit { qPacked.deallocate(); scores.deallocate(); pPacked.deallocate(); acc.deallocate() }

    func run(q: UnsafePointer<Float>, kPacked: UnsafePointer<Float>, vPacked: UnsafePointer<Float>,
             out: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?,
             b: Int, h: Int, q0: Int, scale: Float) {
        let (mr, nr) = (SGEMM.mr, SGEMM.nr)
        let (d, dv, lq, lk, heads) = (plan.d, plan.dv, plan.lq, plan.lk, plan.heads)
        let tileK = plan.tileK, dvp = plan.dvPadded
        let rows = min(plan.tileQ, lq - q0)
        let strips = (rows + mr - 1) / mr
        // Pack the query tile into MR-row strips (zero rows past the end).
        for i in 0..<(strips * mr) {
            let strip = qPacked + (i / mr) * mr * d + i % mr
            if i < rows {
                let src = q + ((b * lq + q0 + i) * heads + h) * d
                for c in 0..<d { strip[c * mr] = src[c] }
            } else {
                for c in 0..<d { strip[c * mr] = 0 }
            }
            rowMax[i] = -.infinity
            rowSum[i] = 0
        }
        acc.update(repeating: 0, count: strips * mr * dvp)
        let bh = b * heads + h
        let kHead = kPacked + bh * plan.keyStrips * nr * d
        let vHead = vPacked + bh * plan.valueStrips * lk * nr
        var k0 = 0
        while k0 < lk {
            let cols = min(tileK, lk - k0)
            let keyStrips = (cols + nr - 1) / nr
            // scores = scale * Q K^T for this key tile.
            for j in 0..<keyStrips {
                let kStrip = kHead + (k0 / nr + j) * nr * d
                for i in 0..<strips {
                    SGEMM.kernel6x16(d, qPacked + i * mr * d, kStrip, scores + i * mr * tileK + j * nr, tileK, scale, 0)
                }
            }
            // Online softmax over the valid columns; probabilities are packed as MR-row strips.
            for i in 0..<rows {
                let s = scores + i * tileK
                if let bias {
                    let brow = bias + (h * lq + q0 + i) * lk + k0
                    var j = 0
                    while j + 8 <= cols { store8(load8(s + j) + load8(brow + j), s + j); j += 8 }
                    while j < cols { s[j] += brow[j]; j += 1 }
                }
                let m = max(rowMax[i], maxOfRow(s, cols))
                let shift = m == -.infinity ? 0 : m
                let correction = rowMax[i] == -.infinity ? 0 : expf(rowMax[i] - shift)
                rowMax[i] = m
                let sum = expRow(s, cols, shift)
                rowSum[i] = rowSum[i] * correction + sum
                if correction != 1 {
                    let o = acc + i * dvp
                    let c8 = F8(repeating: correction)
                    var c = 0
                    while c < dvp { store8(load8(o + c) * c8, o + c); c += 8 }
                }
                let p = pPacked + (i / mr) * mr * tileK + i % mr
                for j in 0..<cols { p[j * mr] = s[j] }
            }
            // Rows past the end of the query tile contribute nothing.
            if rows < strips * mr {
                for i in rows..<(strips * mr) {
                    let p = pPacked + (i / mr) * mr * tileK + i % mr
                    for j in 0..<cols { p[j * mr] = 0 }
                }
            }
            // acc += P V for this key tile.
            for vs in 0..<plan.valueStrips {
                let vStrip = vHead + (vs * lk + k0) * nr
                for i in 0..<strips {
                    SGEMM.kernel6x16(cols, pPacked + i * mr * tileK, vStrip, acc + i * mr * dvp + vs * nr, dvp, 1, 1)
                }
            }
            k0 += cols
        }
        for i in 0..<rows {
            let inv = rowSum[i] > 0 ? 1 / rowSum[i] : 0
            let dst = out + ((b * lq + q0 + i) * heads + h) * dv
            for c in 0..<dv { dst[c] = acc[i * dvp + c] * inv }
        }
    }
}

/// s[j] = exp(s[j] - shift) for j < n; returns their sum.
@inline(__always) func expRow(_ s: UnsafeMutablePointer<Float>, _ n: Int, _ shift: Float) -> Float {
    let m8 = F8(repeating: shift)
    var total = F8()
    var j = 0
    while j + 8 <= n {
        let e = exp8(load8(s + j) - m8)
        store8(e, s + j)
        total += e
        j += 8
    }
    var sum = total.sum()
    while j < n { s[j] = expf(s[j] - shift); sum += s[j]; j += 1 }
    return sum
}
