import Foundation
import ReelCore

extension CPUBackend {
    /// Wan 3D RoPE: pair i of a head rotates by position * frequency, where the first `t` pairs use
    /// the absolute frame (`frameOffset + f`), the next `h` the row and the last `w` the column
    /// (`RoPEGrid.pairSplit`). Angles, their cos/sin and the rotation run in float64 like the
    /// reference (`torch.polar` on float64 frequencies, complex128 multiply), rounded to float32 once.
    /// Three small tables (per frame, row, column) replace the reference's 1024-row table, so there
    /// is no limit on the frame index.
    public func rope3d(_ x: Tensor, grid: RoPEGrid) throws -> Tensor {
        let op = "rope3d"
        try requireFloat(x, op)
        try require(x.rank == 4, op, "expected x [B, L, H, D], got \(x.shape)")
        let (bsz, l, heads, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        try require(l == grid.tokens, op, "L = \(l) but the grid \(grid.frames)x\(grid.height)x\(grid.width) has \(grid.tokens) tokens")
        try require(d % 2 == 0 && d > 0, op, "head size \(d) must be even")
        try require(grid.frameOffset >= 0, op, "negative frame offset \(grid.frameOffset)")
        let split = RoPEGrid.pairSplit(headDim: d)
        let pairs = d / 2

        // table[pos][j] = (cos, sin) of pos * frequency(j) for one axis.
        func table(_ positions: Int, start: Int, _ n: Int) -> [Double] {
            var t = [Double](repeating: 0, count: positions * n * 2)
            for p in 0..<positions {
                for j in 0..<n {
                    let angle = Double(start + p) * grid.frequency(pair: j, of: n)
                    t[(p * n + j) * 2] = cos(angle)
                    t[(p * n + j) * 2 + 1] = sin(angle)
                }
            }
            return t
        }
        let tf = table(grid.frames, start: grid.frameOffset, split.t)
        let th = table(grid.height, start: 0, split.h)
        let tw = table(grid.width, start: 0, split.w)
        let xin = try floats(x, op)
        return try makeOutput(x.shape, x.dtype) { out in
            let src = xin.pointer
            let hw = grid.height * grid.width
            tf.withUnsafeBufferPointer { tf in th.withUnsafeBufferPointer { th in tw.withUnsafeBufferPointer { tw in
                parallelFor(bsz * l, grain: 16) { r in
                    var cs = [Double](repeating: 0, count: pairs * 2)
                    for row in r {
                        let token = row % l
                        let f = token / hw, y = (token / grid.width) % grid.height, xx = token % grid.width
                        // Assemble this token's (cos, sin) per pair from the three axes.
                        for j in 0..<split.t { cs[2 * j] = tf[(f * split.t + j) * 2]; cs[2 * j + 1] = tf[(f * split.t + j) * 2 + 1] }
                        for j in 0..<split.h {
                            let p = split.t + j
                            cs[2 * p] = th[(y * split.h + j) * 2]; cs[2 * p + 1] = th[(y * split.h + j) * 2 + 1]
                        }
                        for j in 0..<split.w {
                            let p = split.t + split.h + j
                            cs[2 * p] = tw[(xx * split.w + j) * 2]; cs[2 * p + 1] = tw[(xx * split.w + j) * 2 + 1]
                        }
                        for head in 0..<heads {
                            let base = (row * heads + head) * d
                            let s = src + base, o = out + base
                            for p in 0..<pairs {
                                let x0 = Double(s[2 * p]), x1 = Double(s[2 * p + 1])
                                let c = cs[2 * p], sn = cs[2 * p + 1]
                                o[2 * p] = Float(x0 * c - x1 * sn)
                                o[2 * p + 1] = Float(x0 * sn + x1 * c)
                            }
                        }
                    }
                }
            }}}
        }
    }
}
