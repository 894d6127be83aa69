import ReelCore

/// The DiT block's fused ops (fused.cu): adaLN (`modulatedLayerNorm`), the gated residual, q/k RMSNorm
/// with RoPE.
extension OpCaseList {
    mutating func fused(_ dt: DType) {
        // The real shapes (3 frames of 1560 tokens, dim 1536, 12 heads of 128), f32 modulation beside
        // 16-bit activations, and the fallback kernels.
        for (vars, x, s, h, sdt) in [("DiT [3, 1560, 1536] by [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536], [3, 1, 1536], dt),
                                     ("DiT [3, 1560, 1536] by f32 [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536], [3, 1, 1536], .f32),
                                     ("[2, 37, 512] scale [2,1,512] shift [1,1,512]", [2, 37, 512], [2, 1, 512], [1, 1, 512], dt),
                                     ("[2, 9, 100] by [1, 1, 100] (scalar)", [2, 9, 100], [1, 1, 100], [1, 1, 100], dt),
                                     ("[2, 5, 5120] by [2, 1, 5120] (a block a row, C > 2048)", [2, 5, 5120], [2, 1, 5120], [2, 1, 5120], dt),
                                     ("14B [3, 1560, 5120] by f32 [3, 1, 5120]", [3, 1560, 5120], [3, 1, 5120], [3, 1, 5120], .f32),
                                     ("5B [2, 37, 3072] by [2, 1, 3072]", [2, 37, 3072], [2, 1, 3072], [2, 1, 3072], dt),
                                     ("[2, 5, 8200] by [2, 1, 8200] (scalar, C > 8192)", [2, 5, 8200], [2, 1, 8200], [2, 1, 8200], dt)]
                as [(String, Shape, Shape, Shape, DType)] {
            check("modulatedLayerNorm", vars, dt, [InputSpec(shape: x, dtype: dt), InputSpec(shape: s, dtype: sdt),
                                                   InputSpec(shape: h, dtype: sdt)]) { b, t in
                try b.modulatedLayerNorm(t[0], scale: t[1], shift: t[2], eps: 1e-6)
            }
        }
        for (vars, x, g, gdt) in [("DiT [3, 1560, 1536] . [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536], dt),
                                  ("DiT [3, 1560, 1536] . f32 [3, 1, 1536]", [3, 1560, 1536], [3, 1, 1536], .f32),
                                  ("[2, 7, 5120] . [1, 1, 5120] (8-wide, 3 chunks)", [2, 7, 5120], [1, 1, 5120], dt),
                                  ("[3, 4, 19] . [3, 1, 19] (scalar)", [3, 4, 19], [3, 1, 19], dt)] as [(String, Shape, Shape, DType)] {
            check("gatedResidual", vars, dt, [InputSpec(shape: x, dtype: dt), InputSpec(shape: x, dtype: dt),
                                              InputSpec(shape: g, dtype: gdt)]) { b, t in
                try b.gatedResidual(t[0], t[1], gate: t[2])
            }
        }
        // 16-bit: the fused kernel rounds once, the CPU's composed ops twice (one more rounding).
        for (vars, shape, grid, wdt) in [("DiT [1, 4680, 12, 128] 3x30x52 frame 9", [1, 4680, 12, 128],
                                          RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 9), dt),
                                         ("[1, 3x4x5, 2, 128] frame 1500, f32 weight", [1, 60, 2, 128],
                                          RoPEGrid(frames: 3, height: 4, width: 5, frameOffset: 1500), .f32),
                                         ("[2, 2x3x3, 3, 64] frame 0", [2, 18, 3, 64], RoPEGrid(frames: 2, height: 3, width: 3), dt),
                                         ("[1, 3x4x5, 2, 40] (composed: 256 % D != 0)", [1, 60, 2, 40],
                                          RoPEGrid(frames: 3, height: 4, width: 5, frameOffset: 7), dt),
                                         ("[1, 2x2x3, 20, 128] (a block a row: C > 2048)", [1, 12, 20, 128],
                                          RoPEGrid(frames: 2, height: 2, width: 3, frameOffset: 2), dt),
                                         ("14B [1, 4680, 40, 128] 3x30x52 frame 9", [1, 4680, 40, 128],
                                          RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 9), dt),
                                         ("5B [1, 2x4x5, 24, 128] frame 3, f32 weight", [1, 40, 24, 128],
                                          RoPEGrid(frames: 2, height: 4, width: 5, frameOffset: 3), .f32),
                                         ("[1, 2x2x3, 72, 128] (composed: C > 8192)", [1, 12, 72, 128],
                                          RoPEGrid(frames: 2, height: 2, width: 3, frameOffset: 2), dt)]
                as [(String, Shape, RoPEGrid, DType)] {
            check("rmsNormRoPE", vars, dt, [InputSpec(shape: shape, dtype: dt), InputSpec(shape: [shape[2] * shape[3]], dtype: wdt)],
                  factor: 2) { b, t in
                try b.rmsNormRoPE(t[0], weight: t[1], eps: 1e-6, grid: grid)
            }
        }
        // Written into a view of a larger tensor (the DiT writes keys straight into its KV cache).
        check("rmsNormRoPE", "DiT [1, 4680, 12, 128] into a cache view at frame 2", dt,
              [InputSpec(shape: [1, 4680, 12, 128], dtype: dt), InputSpec(shape: [1536], dtype: dt)], factor: 2) { b, t in
            let cache = try b.zeros([1, 7 * 1560, 12, 128], dtype: dt)  // [1, 7 frames, 12, 128]
            try b.rmsNormRoPE(t[0], weight: t[1], eps: 1e-6, grid: RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 4),
                              into: try cache.narrowed(axis: 1, start: 2 * 1560, length: 4680))
            return try b.slice(cache, axis: 1, start: 2 * 1560, length: 4680)
        }
    }

    /// CUDA: each fused op and the composed ops it replaces, on the same inputs; both against the fused
    /// op's floor (one read of each input, one write).
    mutating func fusedPerf() {
        fusedPerf(dim: 1536, heads: 12, model: "")
        fusedPerf(dim: 5120, heads: 40, model: "14B ")   // rows of 5120: a block of 128 threads a row
    }

    mutating func fusedPerf(dim: Int, heads: Int, model: String) {
        let (tokens, hd) = (4680, 128)
        let act = Double(tokens * dim) * 2
        let framed = InputSpec(shape: [3, tokens / 3, dim], dtype: .bf16), perFrame = InputSpec(shape: [3, 1, dim], dtype: .bf16)
        let grid = RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 9)
        for fused in [true, false] {
            perf(.cuda, "modulatedLayerNorm", "\(model)[3, 1560, \(dim)] by [3, 1, \(dim)] " + (fused ? "(fused)" : "(layerNorm + modulate)"),
                 .bf16, [framed, perFrame, perFrame], bytes: 2 * act) { b, t in
                if fused { return try b.modulatedLayerNorm(t[0], scale: t[1], shift: t[2], eps: 1e-6) }
                return try b.modulate(try b.layerNorm(t[0], weight: nil, bias: nil, eps: 1e-6), scale: t[1], shift: t[2])
            }
            perf(.cuda, "gatedResidual", "\(model)[3, 1560, \(dim)] + y * [3, 1, \(dim)] " + (fused ? "(fused)" : "(mul + add)"),
                 .bf16, [framed, framed, perFrame], bytes: 3 * act) { b, t in
                if fused { return try b.gatedResidual(t[0], t[1], gate: t[2]) }
                return try b.add(t[0], try b.mul(t[1], t[2]))
            }
            perf(.cuda, "rmsNormRoPE", "\(model)[1, \(tokens), \(heads), \(hd)] 3x30x52 " + (fused ? "(fused)" : "(rmsNorm + rope3d)"),
                 .bf16, [InputSpec(shape: [1, tokens, heads, hd], dtype: .bf16), InputSpec(shape: [dim], dtype: .bf16)],
                 bytes: 2 * act) { b, t in
                if fused { return try b.rmsNormRoPE(t[0], weight: t[1], eps: 1e-6, grid: grid) }
                let n = try b.rmsNorm(try t[0].reshaped([1, tokens, dim]), weight: t[1], eps: 1e-6)
                return try b.rope3d(try n.reshaped([1, tokens, heads, hd]), grid: grid)
            }
        }
    }
}
