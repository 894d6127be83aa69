import ReelCore

/// Row-wise ops: layerNorm, rmsNorm, l2Norm (the Wan VAE's RMS_norm), l2NormSiLU, softmax, rope3d.
extension OpCaseList {
    mutating func norms(_ dt: DType) {
        for c in [96, 100, 1536, 3072, 5120, 9000] {   // 3072 and 5120: a block a row; 9000: three passes
            let x = InputSpec(shape: [37, c], dtype: dt), w = InputSpec(shape: [c], dtype: dt)
            check("layerNorm", "[37, \(c)] affine", dt, [x, w, w]) { b, t in try b.layerNorm(t[0], weight: t[1], bias: t[2], eps: 1e-6) }
            check("layerNorm", "[37, \(c)] no affine", dt, [x]) { b, t in try b.layerNorm(t[0], weight: nil, bias: nil, eps: 1e-6) }
            check("rmsNorm", "[37, \(c)]", dt, [x, w]) { b, t in try b.rmsNorm(t[0], weight: t[1], eps: 1e-6) }
            check("l2Norm", "[37, \(c)] * sqrt(C)", dt, [x, w]) { b, t in
                try b.l2Norm(t[0], weight: t[1], scale: Float(c).squareRoot(), eps: 1e-12)
            }
        }
        for c in [16, 64, 96, 128, 192, 200, 256, 384] {
            let x = InputSpec(shape: [1001, c], dtype: dt), w = InputSpec(shape: [c], dtype: dt)
            check("l2NormSiLU", "[1001, \(c)] * sqrt(C)", dt, [x, w]) { b, t in
                try b.l2NormSiLU(t[0], weight: t[1], scale: Float(c).squareRoot(), eps: 1e-12)
            }
            check("l2Norm", "[1001, \(c)] narrow rows", dt, [x, w]) { b, t in
                try b.l2Norm(t[0], weight: t[1], scale: Float(c).squareRoot(), eps: 1e-12)
            }
        }
        check("l2NormSiLU", "[2, 1, 24, 40, 96] VAE, no weight", dt, [InputSpec(shape: [2, 1, 24, 40, 96], dtype: dt)]) { b, t in
            try b.l2NormSiLU(t[0], weight: nil, scale: Float(96).squareRoot(), eps: 1e-12)
        }
        // Written into a frame of a VAE causal cache pair (the decoder's one-frame layers), and
        // into an unaligned view (the vector kernel then stays out).
        for (start, place) in [(1, "into frame 1 of a cache pair"), (3, "into a view 3 elements in")] {
            check("l2NormSiLU", "[1, 1, 24, 40, 96] VAE \(place)", dt,
                  [InputSpec(shape: [1, 1, 24, 40, 96], dtype: dt), InputSpec(shape: [96], dtype: dt)]) { b, t in
                let frames = 24 * 40 * 96
                let pair = try b.zeros([2 * frames + 8], dtype: dt)
                let offset = start == 1 ? frames : start
                try b.l2NormSiLU(t[0], weight: t[1], scale: Float(96).squareRoot(), eps: 1e-12,
                                 into: try pair.narrowed(axis: 0, start: offset, length: frames))
                return try b.slice(pair, axis: 0, start: offset, length: frames)
            }
        }
        check("softmax", "[7, 513]", dt, [InputSpec(shape: [7, 513], dtype: dt)]) { b, t in try b.softmax(t[0]) }
        check("rope3d", "[1, 3x4x5, 2, 128] frame 1500", dt, [InputSpec(shape: [1, 60, 2, 128], dtype: dt)]) { b, t in
            try b.rope3d(t[0], grid: RoPEGrid(frames: 3, height: 4, width: 5, frameOffset: 1500))
        }
        check("rope3d", "[2, 2x3x3, 3, 64] frame 0", dt, [InputSpec(shape: [2, 18, 3, 64], dtype: dt)]) { b, t in
            try b.rope3d(t[0], grid: RoPEGrid(frames: 2, height: 3, width: 3))
        }
    }

    mutating func normsPerf() {
        // CPU, f32 over [4680, 1536]: one read and one write.
        let (rows, cols) = (4680, 1536)
        let rw = Double(2 * rows * cols * 4)
        let x = InputSpec(shape: [rows, cols], dtype: .f32), w = InputSpec(shape: [cols], dtype: .f32)
        let grid = RoPEGrid(frames: 3, height: 30, width: 52, frameOffset: 9)
        perf(.cpu, "layerNorm", "[\(rows),\(cols)]", .f32, [x], bytes: rw) { b, t in
            try b.layerNorm(t[0], weight: nil, bias: nil, eps: 1e-6)
        }
        perf(.cpu, "rmsNorm", "[\(rows),\(cols)]", .f32, [x, w], bytes: rw) { b, t in try b.rmsNorm(t[0], weight: t[1], eps: 1e-6) }
        perf(.cpu, "l2Norm", "[\(rows),\(cols)]", .f32, [x], bytes: rw) { b, t in try b.l2Norm(t[0], weight: nil, scale: 39, eps: 1e-12) }
        perf(.cpu, "softmax", "[\(rows),\(cols)]", .f32, [x], bytes: rw) { b, t in try b.softmax(t[0]) }
        perf(.cpu, "rope3d", "[1,4680,12,128] 3x30x52", .f32, [InputSpec(shape: [1, 4680, 12, 128], dtype: .f32)],
             bytes: Double(2 * 4680 * 12 * 128 * 4)) { b, t in
            try b.rope3d(t[0], grid: grid)
        }

        // CUDA, bf16: the DiT's norms over 4680 tokens of dim 1536, the VAE's over its frames' pixels.
        let (tokens, dim, heads, hd) = (4680, 1536, 12, 128)
        let act = Double(tokens * dim) * 2
        let h = InputSpec(shape: [tokens, dim], dtype: .bf16)
        perf(.cuda, "layerNorm", "[\(tokens), \(dim)] no affine", .bf16, [h], bytes: 2 * act) { b, t in
            try b.layerNorm(t[0], weight: nil, bias: nil, eps: 1e-6)
        }
        perf(.cuda, "rmsNorm", "[\(tokens), \(dim)] (q/k norm)", .bf16, [h, InputSpec(shape: [dim], dtype: .bf16)],
             bytes: 2 * act) { b, t in
            try b.rmsNorm(t[0], weight: t[1], eps: 1e-6)
        }
        perf(.cuda, "rope3d", "[1, \(tokens), \(heads), \(hd)] 3x30x52", .bf16, [InputSpec(shape: [1, tokens, heads, hd], dtype: .bf16)],
             bytes: 2 * act) { b, t in
            try b.rope3d(t[0], grid: grid)
        }
        perf(.cuda, "softmax", "[\(heads * 512), 512]", .bf16, [InputSpec(shape: [heads * 512, 512], dtype: .bf16)],
             bytes: 4 * Double(heads * 512 * 512)) { b, t in
            try b.softmax(t[0])
        }
        perf(.cuda, "l2Norm", "[\(480 * 832), 96] (VAE RMS_norm)", .bf16,
             [InputSpec(shape: [480 * 832, 96], dtype: .bf16), InputSpec(shape: [96], dtype: .bf16)],
             bytes: 4 * Double(480 * 832 * 96)) { b, t in
            try b.l2Norm(t[0], weight: t[1], scale: Float(96).squareRoot(), eps: 1e-12)
        }
        // The decoder's norm + SiLU at its two full-frame widths (one frame each).
        for (rows, c) in [(480 * 832, 96), (240 * 416, 192)] {
            perf(.cuda, "l2NormSiLU", "[\(rows), \(c)] (VAE norm + SiLU)", .bf16,
                 [InputSpec(shape: [rows, c], dtype: .bf16), InputSpec(shape: [c], dtype: .bf16)], bytes: 4 * Double(rows * c)) { b, t in
                try b.l2NormSiLU(t[0], weight: t[1], scale: Float(c).squareRoot(), eps: 1e-12)
            }
        }
    }
}
