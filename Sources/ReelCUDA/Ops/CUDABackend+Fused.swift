import Foundation
import ReelCore

// The DiT block's fused ops (Kernels/fused.cu): one kernel and one output each, where the composed
// defaults run two or three kernels with a temporary between each pair. Every dtype mix the
// composed ops accept is accepted here (e.g. bf16 activations with f32 modulation): the kernels
// load each operand in its own storage type and compute in float32.
extension CUDABackend {
    public func modulatedLayerNorm(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float) throws -> Tensor {
        let op = "modulatedLayerNorm"
        let (g, r, c) = try groupedShape(x, [scale, shift], op)
        try require(c > 0, op, "needs a non-empty last axis, got \(x.shape)")
        let y = try allocate(x.shape, dtype: x.dtype)
        let rows = g * r
        if rows == 0 { return y }
        let px = try arg(x, op), ps = try arg(scale, op), ph = try arg(shift, op), py = try arg(y, op)
        // As rowNorm: rows of 256 to 8192 stay in registers; narrower rows would idle most of the warp.
        let held = c % 8 == 0 && c >= 256 && Self.aligned(px, ps, ph, py) ? rowKernel("mod_layer_norm", c: c, rows: rows) : nil
        let (kernel, grid, block) = held ?? ("mod_layer_norm", ((rows + 7) / 8, 1, 1), (256, 1, 1))
        try launch("fused", kernel, grid: grid, block: block) { k in
            k.add(px); k.add(ps); k.add(ph); k.add(py); k.add(Int64(rows)); k.add(Int32(r)); k.add(Int32(c))
            k.add(Int64(scale.shape[0] == 1 ? 0 : c)); k.add(Int64(shift.shape[0] == 1 ? 0 : c)); k.add(eps)
            k.add(x.dtype.kernelCode); k.add(scale.dtype.kernelCode); k.add(shift.dtype.kernelCode); k.add(y.dtype.kernelCode)
        }
        return y
    }

    /// `mod_layer_norm_quantized_v8` (`_wide_v8`) for the rows `mod_layer_norm_v8` (`_wide_v8`) takes; otherwise the
    /// two ops in turn.
    public func modulatedLayerNormQuantized(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float,
                                            to format: DType) throws -> RowQuantized {
        let op = "modulatedLayerNormQuantized"
        let (g, r, c) = try groupedShape(x, [scale, shift], op)
        let px = try arg(x, op), ps = try arg(scale, op), ph = try arg(shift, op)
        guard c % 8 == 0 && c >= 256 && Self.aligned(px, ps, ph),
              let held = rowKernel("mod_layer_norm_quantized", c: c, rows: g * r) else {
            return try quantizeRows(try modulatedLayerNorm(x, scale: scale, shift: shift, eps: eps), to: format)
        }
        try requireQuantized(format, op)
        let rows = g * r
        let values = try allocate(x.shape, dtype: format), scales = try allocate([rows], dtype: .f32)
        if rows > 0 {
            let (pq, pqs) = (try arg(values, op), try arg(scales, op))
            try launch("fused", held.name, grid: held.grid, block: held.block) { k in
                k.add(px); k.add(ps); k.add(ph); k.add(pq); k.add(pqs); k.add(Int64(rows)); k.add(Int32(r)); k.add(Int32(c))
                k.add(Int64(scale.shape[0] == 1 ? 0 : c)); k.add(Int64(shift.shape[0] == 1 ? 0 : c)); k.add(eps)
                k.add(x.dtype.kernelCode); k.add(scale.dtype.kernelCode); k.add(shift.dtype.kernelCode); k.add(x.dtype.kernelCode)
                k.add(Self.quantizedFormatCode(format))
            }
        }
        return try RowQuantized(values: values, scales: scales, sourceType: x.dtype)
    }

    /// The kernel and launch of a row op whose rows stay in registers (RowVec8 in common.cuh): `<name>_v8`, a warp a
    /// row and 4 rows a block, for rows of up to 2048 values; `<name>_wide_v8`, a block of 128 threads a row, up
    /// to 8192 (the 14B's 5120, the 5B's 3072; not with `Tuning.wideRowKernels` off, REEL_WIDE_ROWS=0); nil past that. C must be a
    /// multiple of 8, the pointers 16-byte aligned.
    func rowKernel(_ name: String, c: Int, rows: Int) -> (name: String, grid: (Int, Int, Int), block: (Int, Int, Int))? {
        if c <= 2048 { return (name + "_v8", ((rows + 3) / 4, 1, 1), (128, 1, 1)) }
        if c <= 8192 && tuning.wideRowKernels { return (name + "_wide_v8", (rows, 1, 1), (128, 1, 1)) }
        return nil
    }

    public func gatedResidual(_ x: Tensor, _ y: Tensor, gate: Tensor) throws -> Tensor {
        let op = "gatedResidual"
        try requireFloat(y, op)
        try require(x.shape == y.shape, op, "x \(x.shape) and y \(y.shape) differ")
        let (g, r, c) = try groupedShape(x, [gate], op)
        let out = try allocate(x.shape, dtype: x.dtype)
        let rows = g * r
        if rows == 0 || c == 0 { return out }
        let px = try arg(x, op), py = try arg(y, op), pg = try arg(gate, op), po = try arg(out, op)
        let wide = c % 8 == 0 && Self.aligned(px, py, pg, po)
        try launch("fused", wide ? "gated_residual_v8" : "gated_residual", grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1)) { k in
            k.add(px); k.add(py); k.add(pg); k.add(po); k.add(Int64(rows)); k.add(Int32(r)); k.add(Int32(c))
            k.add(Int64(gate.shape[0] == 1 ? 0 : c))
            k.add(x.dtype.kernelCode); k.add(y.dtype.kernelCode); k.add(gate.dtype.kernelCode); k.add(out.dtype.kernelCode)
        }
        return out
    }

    public func rmsNormRoPE(_ x: Tensor, weight: Tensor?, eps: Float, grid: RoPEGrid) throws -> Tensor {
        try rmsNormRoPE(x, weight: weight, eps: eps, grid: grid, output: nil)
    }

    public func rmsNormRoPE(_ x: Tensor, weight: Tensor?, eps: Float, grid: RoPEGrid, into out: Tensor) throws {
        try require(out.count == x.count && out.dtype == x.dtype, "rmsNormRoPE",
                    "output \(out.shape) \(out.dtype) does not hold the result \(x.shape) \(x.dtype)")
        _ = try rmsNormRoPE(x, weight: weight, eps: eps, grid: grid, output: out)
    }

    private func rmsNormRoPE(_ x: Tensor, weight: Tensor?, eps: Float, grid: RoPEGrid, output: Tensor?) throws -> Tensor {
        let op = "rmsNormRoPE"
        try requireFloat(x, op)
        try require(x.rank == 4, op, "expected x [B, L, H, D], got \(x.shape)")
        let (b, l, h, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        try require(l == grid.tokens, op, "L = \(l) but the grid \(grid.frames)x\(grid.height)x\(grid.width) has \(grid.tokens) tokens")
        try require(d % 2 == 0 && d >= 6, op, "head dim \(d) must be even and at least 6")
        try require(grid.frameOffset >= 0, op, "negative frame offset \(grid.frameOffset)")
        let c = h * d
        try require(c > 0, op, "needs at least one head, got \(x.shape)")
        if let weight {
            try requireFloat(weight, op)
            try require(weight.count == c, op, "weight has \(weight.count) elements for rows of \(h) heads x \(d) = \(c)")
        }
        let px = try arg(x, op), pw = try arg(weight, op)
        // The kernel keeps the row in registers (C <= 8192) and gives each thread the same 4 pairs of
        // every head it touches (256 % D == 0: D = 8 ... 256). Other shapes run the two ops.
        let po = try output.map { try arg($0, op) } ?? 16
        let fused = c % 8 == 0 && d % 8 == 0 && 256 % d == 0 && Self.aligned(px, pw == 0 ? 16 : pw, po)
        guard fused, let held = rowKernel("rms_norm_rope", c: c, rows: b * l) else {
            let normed = try rmsNorm(try x.reshaped([b, l, c]), weight: weight, eps: eps)
            let y = try rope3d(try normed.reshaped(x.shape), grid: grid)
            if let output { try copyWhole(y, into: output, op: op); return output }
            return y
        }
        let y = try output ?? allocate(x.shape, dtype: x.dtype)
        let rows = b * l
        if rows == 0 { return y }
        let py = try arg(y, op)
        let split = RoPEGrid.pairSplit(headDim: d)
        let table = try ropeTable(grid, headDim: d)
        try launch("fused", held.name, grid: held.grid, block: held.block) { k in
            k.add(px); k.add(pw); k.add(py); k.add(Int64(rows)); k.add(Int32(l)); k.add(Int32(c)); k.add(Int32(d))
            k.add(Int32(grid.height)); k.add(Int32(grid.width)); k.add(table); k.add(Int32(grid.frames))
            k.add(Int32(split.t)); k.add(Int32(split.h)); k.add(Int32(split.w)); k.add(eps)
            k.add(x.dtype.kernelCode); k.add((weight?.dtype ?? .f32).kernelCode); k.add(y.dtype.kernelCode)
        }
        return y
    }

    /// The float64 (cos, sin) table of `grid`'s rotation angles for heads of `headDim` that
    /// `rms_norm_rope_v8` reads (fused.cu `rope_table_v1`), written on this stream the first time the
    /// grid is seen. A block's passes and its 30 layers' q and k share one grid, so the table is
    /// built about once per block; the last `ropeTableLimit` grids are kept.
    func ropeTable(_ grid: RoPEGrid, headDim d: Int) throws -> UInt64 {
        ropeTableLock.lock()
        defer { ropeTableLock.unlock() }
        let key = RoPETableKey(grid: grid, headDim: d)
        if let i = ropeTables.firstIndex(where: { $0.key == key }) { return try arg(ropeTables[i].table, "rmsNormRoPE") }
        let split = RoPEGrid.pairSplit(headDim: d)
        let n = grid.frames * split.t + grid.height * split.h + grid.width * split.w
        // n (cos, sin) float64 pairs: 16 bytes each, allocated as 4 f32.
        let table = try allocate([n * 4], dtype: .f32)
        let pt = try arg(table, "rmsNormRoPE")
        try launch("fused", "rope_table_v1", grid: ((n + 127) / 128, 1, 1), block: (128, 1, 1)) { k in
            k.add(pt); k.add(Int32(grid.frames)); k.add(Int32(grid.height)); k.add(Int32(grid.width))
            k.add(Int64(grid.frameOffset)); k.add(grid.theta); k.add(Int32(split.t)); k.add(Int32(split.h)); k.add(Int32(split.w))
        }
        if ropeTables.count >= Self.ropeTableLimit { ropeTables.removeFirst() }
        ropeTables.append((key, table))
        return pt
    }

    static let ropeTableLimit = 8

    /// x `[G, R, C]` with per-group vectors `[G, 1, C]` or `[1, 1, C]`: returns (G, R, C).
    private func groupedShape(_ x: Tensor, _ vectors: [Tensor], _ op: String) throws -> (Int, Int, Int) {
        try requireFloat(x, op)
        try require(x.rank == 3, op, "expected x [G, R, C], got \(x.shape)")
        let (g, r, c) = (x.shape[0], x.shape[1], x.shape[2])
        try require(r <= Int(Int32.max) && c <= Int(Int32.max), op, "rows of \(c) in groups of \(r) exceed the kernels' 32-bit extents")
        for v in vectors {
            try requireFloat(v, op)
            try require(v.rank == 3 && (v.shape[0] == g || v.shape[0] == 1) && v.shape[1] == 1 && v.shape[2] == c, op,
                        "expected [\(g), 1, \(c)] or [1, 1, \(c)] against x \(x.shape), got \(v.shape)")
        }
        return (g, r, c)
    }
}
