import ReelCore

// Fused versions of the DiT's adaLN and gated residual: one pass over the activations instead of
// two or three (LayerNorm, then modulate; mul, then add).
extension CPUBackend {
    public func modulatedLayerNorm(_ x: Tensor, scale: Tensor, shift: Tensor, eps: Float) throws -> Tensor {
        let op = "modulatedLayerNorm"
        let (g, r, c) = try groupedShape(x, [scale, shift], op)
        let xin = try floats(x, op), sin = try floats(scale, op), hin = try floats(shift, op)
        // Scale and shift are each per group or shared, independently.
        let scaleStride = scale.shape[0] == 1 ? 0 : c, shiftStride = shift.shape[0] == 1 ? 0 : c
        return try makeOutput(x.shape, x.dtype) { out in
            let px = xin.pointer, ps = sin.pointer, ph = hin.pointer
            parallelFor(g * r, grain: Swift.max(1, 4096 / Swift.max(c, 1))) { rows in
                for row in rows {
                    let src = px + row * c, dst = out + row * c
                    let s = ps + (row / r) * scaleStride, h = ph + (row / r) * shiftStride
                    // Two passes (mean, then centred squares), as the plain LayerNorm does.
                    let mean = sum8(src, c) / Float(c)
                    var acc = F8(), i = 0
                    let m8 = F8(repeating: mean)
                    while i + 8 <= c { let d = load8(src + i) - m8; acc += d * d; i += 8 }
                    var v = acc.sum()
                    while i < c { let d = src[i] - mean; v += d * d; i += 1 }
                    let inv = 1 / (v / Float(c) + eps).squareRoot()
                    let inv8 = F8(repeating: inv)
                    i = 0
                    while i + 8 <= c {
                        store8((load8(src + i) - m8) * inv8 * (1 + load8(s + i)) + load8(h + i), dst + i)
                        i += 8
                    }
                    while i < c { dst[i] = (src[i] - mean) * inv * (1 + s[i]) + h[i]; i += 1 }
                }
            }
        }
    }

    public func gatedResidual(_ x: Tensor, _ y: Tensor, gate: Tensor) throws -> Tensor {
        let op = "gatedResidual"
        try require(x.shape == y.shape, op, "x \(x.shape) and y \(y.shape) differ")
        let (g, r, c) = try groupedShape(x, [gate], op)
        let xin = try floats(x, op), yin = try floats(y, op), gin = try floats(gate, op)
        let perGroup = gate.shape[0] == 1 ? 0 : c
        return try makeOutput(x.shape, x.dtype) { out in
            let px = xin.pointer, py = yin.pointer, pg = gin.pointer
            parallelFor(g * r, grain: Swift.max(1, 8192 / Swift.max(c, 1))) { rows in
                for row in rows {
                    let a = px + row * c, b = py + row * c, gt = pg + (row / r) * perGroup, dst = out + row * c
                    var i = 0
                    while i + 8 <= c { store8(load8(a + i) + load8(b + i) * load8(gt + i), dst + i); i += 8 }
                    while i < c { dst[i] = a[i] + b[i] * gt[i]; i += 1 }
                }
            }
        }
    }

    /// x `[G, R, C]` with per-group vectors `[G, 1, C]` or `[1, 1, C]`: returns (G, R, C).
    private func groupedShape(_ x: Tensor, _ vectors: [Tensor], _ op: String) throws -> (Int, Int, Int) {
        try requireFloat(x, op)
        try require(x.rank == 3, op, "expected x [G, R, C], got \(x.shape)")
        let (g, r, c) = (x.shape[0], x.shape[1], x.shape[2])
        for v in vectors {
            try requireFloat(v, op)
            try require(v.rank == 3 && (v.shape[0] == g || v.shape[0] == 1) && v.shape[1] == 1 && v.shape[2] == c, op,
                        "expected [\(g), 1, \(c)] or [1, 1, \(c)] against x \(x.shape), got \(v.shape)")
        }
        return (g, r, c)
    }
}
