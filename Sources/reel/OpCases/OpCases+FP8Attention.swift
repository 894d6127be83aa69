import ReelCore

/// FP8 attention (`Backend.fp8Attention`, `--attention fp8`): cuDNN's FP8 SDPA graph against the CPU's emulation
/// of its roundings (CPUBackend+FP8Attention). Added after every other check case, so the cases before them keep
/// the inputs they passed with.
extension OpCaseList {
    /// bf16 only (the model's GPU dtype), with cuDNN. Tolerance 1e-2 (bf16's 1e-4 x 100): both sides quantize
    /// Q, K and V alike (the same float32 amax and scale), but P and O are rounded to E4M3 from float32 sums in
    /// different orders (and cuDNN's kernel may round P before its final normalization), so a value near a
    /// rounding boundary lands a step (1/16 relative) apart. A float64 model of both orders (P rounded after or
    /// before its normalization, q 256 x k 4096, D 128, normal inputs) gave 3.7e-3 each against exact attention
    /// (cuDNN measured 3.6e-3 at the DiT shape) and 2.6e-3 between them: 4x under the tolerance. A missing descale
    /// gives an nmse of order 1 (`FP8AttentionTests`'s control: 5.9), as would an unscaled P or a wrong layout.
    mutating func fp8Attention() {
        guard cudnn else { return }
        let dt = DType.bf16
        func qkv(_ lq: Int, _ lk: Int, _ h: Int, _ d: Int) -> [InputSpec] {
            [InputSpec(shape: [1, lq, h, d], dtype: dt), InputSpec(shape: [1, lk, h, d], dtype: dt),
             InputSpec(shape: [1, lk, h, d], dtype: dt)]
        }
        for (lq, lk, h, d) in [(200, 333, 2, 128), (77, 140, 3, 64), (4680, 18720, 12, 128)] {
            let what = lq == 4680 ? "DiT q[1,4680,12,128] k18720" : "q[1,\(lq),\(h),\(d)] k\(lk)"
            check("fp8Attention", what, dt, qkv(lq, lk, h, d), factor: 100) { b, t in
                try withFP8AttentionPath(b, .cudnn) {
                    try b.fp8Attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(d).squareRoot())
                }
            }
        }
        // Keys and values as a window of a larger cache (a view from token 37), as the KV cache hands them.
        check("fp8Attention", "q[1,96,2,128] k/v a view of 333 at token 37 of [1,400,2,128]", dt, qkv(96, 400, 2, 128),
              factor: 100) { b, t in
            let k = try t[1].narrowed(axis: 1, start: 37, length: 333), v = try t[2].narrowed(axis: 1, start: 37, length: 333)
            return try withFP8AttentionPath(b, .cudnn) {
                try b.fp8Attention(query: t[0], key: k, value: v, scale: 1 / Float(128).squareRoot())
            }
        }
    }

    /// Reel's Hopper FP8 kernel (`.hopper`, sm_90 only) against the same emulation and tolerance: it rounds Q, K, V
    /// and P as the graph does but keeps O in float32 (the graph rounds O to E4M3: nmse ~2e-3 of the emulation's own),
    /// and rounds P before the final normalization. Tiles cut at both ends, a single key, two batches, key parts
    /// forced (each a multiple of 32 keys), the DiT's shapes; the cache view as above.
    mutating func hopperFP8Attention() {
        let dt = DType.bf16
        func qkv(_ b: Int, _ lq: Int, _ lk: Int, _ h: Int) -> [InputSpec] {
            [InputSpec(shape: [b, lq, h, 128], dtype: dt), InputSpec(shape: [b, lk, h, 128], dtype: dt),
             InputSpec(shape: [b, lk, h, 128], dtype: dt)]
        }
        let cases: [(b: Int, lq: Int, lk: Int, h: Int, splits: Int?)] = [
            (1, 200, 333, 2, 1), (1, 130, 40, 1, 1), (1, 77, 1, 3, 1), (2, 300, 520, 2, nil), (1, 200, 4096, 2, 2),
            (1, 129, 384, 1, 3), (1, 4680, 18720, 12, nil), (1, 4680, 512, 12, nil)]
        for (b, lq, lk, h, splits) in cases {
            let parts = splits.map { $0 == 1 ? ", keys whole" : ", \($0) key parts" } ?? ""
            check("fp8Attention", "q[\(b),\(lq),\(h),128] k\(lk) (hopper\(parts))", dt, qkv(b, lq, lk, h), factor: 100,
                  arch: "sm_90") { bk, t in
                try withFP8AttentionPath(bk, .hopper, splits: splits) {
                    try bk.fp8Attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(128).squareRoot())
                }
            }
        }
        check("fp8Attention", "q[1,96,2,128] k/v a view of 333 at token 37 of [1,400,2,128] (hopper)", dt, qkv(1, 96, 400, 2),
              factor: 100, arch: "sm_90") { bk, t in
            let k = try t[1].narrowed(axis: 1, start: 37, length: 333), v = try t[2].narrowed(axis: 1, start: 37, length: 333)
            return try withFP8AttentionPath(bk, .hopper) {
                try bk.fp8Attention(query: t[0], key: k, value: v, scale: 1 / Float(128).squareRoot())
            }
        }
    }

    /// CUDA's path where cuDNN refuses a shape's FP8 graph (`Backend.composedFP8Attention`, casts to E4M3 among its
    /// ops), forced: codes made by each backend's ops from the same inputs, against the CPU's; same tolerance.
    mutating func composedFP8Attention() {
        guard cudnn else { return }
        check("fp8Attention", "q[1,200,2,128] k333 (composed ops, cuDNN's refusal path)", .bf16,
              [InputSpec(shape: [1, 200, 2, 128], dtype: .bf16), InputSpec(shape: [1, 333, 2, 128], dtype: .bf16),
               InputSpec(shape: [1, 333, 2, 128], dtype: .bf16)], factor: 100) { b, t in
            var codes: [Tensor] = [], amax: [Float] = []
            for x in t {
                let a = try x.toFloats().map(abs).max() ?? 0
                let scaled = try b.affine(try b.cast(x, to: .f32), scale: FP8Attention.scale(amax: a), bias: 0)
                codes.append(try b.cast(scaled, to: .fp8e4m3))
                amax.append(a)
            }
            let scales = FP8Attention.Scales(descaleQ: FP8Attention.descale(amax: amax[0]),
                                             descaleK: FP8Attention.descale(amax: amax[1]),
                                             descaleV: FP8Attention.descale(amax: amax[2]),
                                             outputScale: FP8Attention.outputScale(valueAmax: amax[2]),
                                             outputDescale: FP8Attention.outputDescale(valueAmax: amax[2]))
            return try b.composedFP8Attention(q8: codes[0], k8: codes[1], v8: codes[2], scales: scales,
                                              scale: 1 / Float(128).squareRoot(), into: try b.allocate([1, 200, 2, 128], dtype: .bf16))
        }
    }

    /// CUDA: the DiT's self-attention shape in FP8 through cuDNN's FP8 graph (amax, quantize, the graph, O back to
    /// bf16) and through Reel's Hopper FP8 kernel, beside the bf16 cases of `attentionPerf`; FLOPs as there.
    mutating func fp8AttentionPerf() {
        let (lq, lk, h, d) = (4680, 18720, 12, 128)
        perf(.cuda, "fp8Attention", "q\(lq) k\(lk) \(h)x\(d) (DiT self, fp8 cudnn)", .bf16,
             [InputSpec(shape: [1, lq, h, d], dtype: .bf16), InputSpec(shape: [1, lk, h, d], dtype: .bf16),
              InputSpec(shape: [1, lk, h, d], dtype: .bf16)],
             flops: 4 * Double(lq * lk * d * h), bytes: 2 * Double((2 * lq + 2 * lk) * h * d)) { b, t in
            try withFP8AttentionPath(b, .cudnn) {
                try b.fp8Attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(d).squareRoot())
            }
        }
        perf(.cuda, "fp8Attention", "q\(lq) k\(lk) \(h)x\(d) (DiT self, fp8 hopper)", .bf16,
             [InputSpec(shape: [1, lq, h, d], dtype: .bf16), InputSpec(shape: [1, lk, h, d], dtype: .bf16),
              InputSpec(shape: [1, lk, h, d], dtype: .bf16)],
             flops: 4 * Double(lq * lk * d * h), bytes: 2 * Double((2 * lq + 2 * lk) * h * d)) { b, t in
            try withFP8AttentionPath(b, .hopper) {
                try b.fp8Attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(d).squareRoot())
            }
        }
    }
}
