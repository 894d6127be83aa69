import ReelCore

/// Elementwise ops: unary, affine, clamp, binary with broadcasting, modulate, axpby, fill.
extension OpCaseList {
    mutating func elementwise(_ dt: DType) {
        // Counts that are and are not multiples of 8: the 8-wide and the scalar kernels.
        for u in UnaryOp.allCases {
            let kind: InputKind = u == .rsqrt ? .positive : .normal
            check(u.rawValue, "[3, 37, 65]", dt, [InputSpec(shape: [3, 37, 65], dtype: dt, kind: kind)]) { b, t in
                try b.unary(u, t[0])
            }
            check(u.rawValue, "[2, 48, 64] (8-wide)", dt, [InputSpec(shape: [2, 48, 64], dtype: dt, kind: kind)]) { b, t in
                try b.unary(u, t[0])
            }
        }
        check("affine", "[1000] * 0.75 - 0.25", dt, [InputSpec(shape: [1000], dtype: dt)]) { b, t in
            try b.affine(t[0], scale: 0.75, bias: -0.25)
        }
        check("clamp", "[1000] to [-1, 1]", dt, [InputSpec(shape: [1000], dtype: dt)]) { b, t in try b.clamp(t[0], min: -1, max: 1) }
        for op in BinaryOp.allCases {
            let rhs: InputKind = op == .div ? .positive : .normal
            for (vars, x, y) in [("[2, 5, 7] . [2, 5, 7]", [2, 5, 7], [2, 5, 7]),
                                 ("[4, 6, 16] . [4, 6, 16] (8-wide)", [4, 6, 16], [4, 6, 16]),
                                 ("[4, 6, 16] . [16] (8-wide)", [4, 6, 16], [16]),
                                 ("[4, 6, 16] . [4, 1, 16] (8-wide)", [4, 6, 16], [4, 1, 16]),
                                 ("[2, 5, 7] . [5, 1] broadcast", [2, 5, 7], [5, 1])] as [(String, Shape, Shape)] {
                check(op.rawValue, vars, dt, [InputSpec(shape: x, dtype: dt), InputSpec(shape: y, dtype: dt, kind: rhs)]) { b, t in
                    try b.binary(op, t[0], t[1])
                }
            }
        }
        check("modulate", "[2, 3, 50, 64] by [2, 3, 1, 64] / [64]", dt,
              [InputSpec(shape: [2, 3, 50, 64], dtype: dt), InputSpec(shape: [2, 3, 1, 64], dtype: dt),
               InputSpec(shape: [64], dtype: dt)]) { b, t in
            try b.modulate(t[0], scale: t[1], shift: t[2])
        }
        check("modulate", "[1, 4680, 1536] by [1, 1, 1536] f32", dt,
              [InputSpec(shape: [1, 4680, 1536], dtype: dt), InputSpec(shape: [1, 1, 1536], dtype: .f32),
               InputSpec(shape: [1, 1, 1536], dtype: .f32)]) { b, t in
            try b.modulate(t[0], scale: t[1], shift: t[2])
        }
    }

    /// The Presenter's conversion of frames to bytes: exact (tolerance 0), normal inputs so that a third of the
    /// values are clamped. Listed last (`OpCaseList.all`), so the earlier cases keep their seeds.
    mutating func presenter() {
        for dt in [DType.f32, .bf16] {
            check("rgb8", "[2, 30, 52, 3] frames to bytes", dt, [InputSpec(shape: [2, 30, 52, 3], dtype: dt)], factor: 0) { b, t in
                try b.rgb8(t[0])
            }
        }
    }

    /// Elementwise cases listed after the fused ops (`OpCaseList.all` keeps the earlier list's order).
    mutating func elementwiseMore(_ dt: DType) {
        check("affine", "[4096] * 0.75 - 0.25 (8-wide)", dt, [InputSpec(shape: [4096], dtype: dt)]) { b, t in
            try b.affine(t[0], scale: 0.75, bias: -0.25)
        }
        check("axpby", "0.3 x + 0.7 y [4097]", dt, [InputSpec(shape: [4097], dtype: dt), InputSpec(shape: [4097], dtype: dt)]) { b, t in
            try b.axpby(0.3, t[0], 0.7, t[1])
        }
        check("fill", "[3, 333] = 1.5", dt, []) { b, _ in
            let t = try b.allocate([3, 333], dtype: dt)
            try b.fill(t, with: 1.5)
            return t
        }
    }

    mutating func elementwisePerf() {
        // CPU, f32 over [4680, 1536]: one read and one write per operand.
        let (rows, cols) = (4680, 1536), n = rows * cols
        let rw = Double(2 * n * 4)
        let x = InputSpec(shape: [rows, cols], dtype: .f32)
        for op in [UnaryOp.silu, .geluTanh, .exp] {
            perf(.cpu, "unary.\(op)", "[\(rows),\(cols)]", .f32, [x], bytes: rw) { b, t in try b.unary(op, t[0]) }
        }
        perf(.cpu, "binary.add", "[\(rows),\(cols)] + same", .f32, [x, x], bytes: Double(3 * n * 4)) { b, t in
            try b.add(t[0], t[1])
        }
        perf(.cpu, "binary.mul", "[\(rows),\(cols)] * [\(cols)]", .f32, [x, InputSpec(shape: [cols], dtype: .f32)], bytes: rw) { b, t in
            try b.mul(t[0], t[1])
        }
        perf(.cpu, "axpby", "[\(rows),\(cols)]", .f32, [x, x], bytes: Double(3 * n * 4)) { b, t in try b.axpby(0.4, t[0], 0.6, t[1]) }
        perf(.cpu, "modulate", "[3,1560,1536] by [3,1,1536]", .f32,
             [InputSpec(shape: [3, 1560, cols], dtype: .f32), InputSpec(shape: [3, 1, cols], dtype: .f32),
              InputSpec(shape: [3, 1, cols], dtype: .f32)], bytes: rw) { b, t in
            try b.modulate(t[0], scale: t[1], shift: t[2])
        }

        // CUDA, bf16 at the DiT's shapes (4680 tokens of dim 1536, FFN 8960).
        let (tokens, dim, ffn) = (4680, 1536, 8960)
        let act = Double(tokens * dim) * 2
        let h = InputSpec(shape: [tokens, dim], dtype: .bf16)
        perf(.cuda, "modulate", "[1, \(tokens), \(dim)] by [1, 1, \(dim)]", .bf16,
             [InputSpec(shape: [1, tokens, dim], dtype: .bf16), InputSpec(shape: [1, 1, dim], dtype: .f32),
              InputSpec(shape: [1, 1, dim], dtype: .f32)], bytes: 2 * act) { b, t in
            try b.modulate(t[0], scale: t[1], shift: t[2])
        }
        perf(.cuda, "geluTanh", "[\(tokens), \(ffn)]", .bf16, [InputSpec(shape: [tokens, ffn], dtype: .bf16)],
             bytes: 4 * Double(tokens * ffn)) { b, t in
            try b.unary(.geluTanh, t[0])
        }
        perf(.cuda, "add", "[\(tokens), \(dim)] + [\(tokens), \(dim)]", .bf16, [h, h], bytes: 3 * act) { b, t in try b.add(t[0], t[1]) }
        perf(.cuda, "mul", "[\(tokens), \(dim)] * [1, \(dim)] (gate)", .bf16, [h, InputSpec(shape: [1, dim], dtype: .bf16)],
             bytes: 2 * act) { b, t in
            try b.mul(t[0], t[1])
        }
        let latent = InputSpec(shape: [3, 16, 60, 104], dtype: .f32)
        perf(.cuda, "axpby", "[3, 16, 60, 104] f32 (re-noise)", .f32, [latent, latent], bytes: 12 * Double(latent.shape.count)) { b, t in
            try b.axpby(0.4, t[0], 0.6, t[1])
        }
    }
}
