import ReelCore
import ReelCUDA

/// Attention: [B, L, heads, D] queries, keys and values, with an optional [heads, Lq, Lk] bias; on CUDA
/// by path (cuDNN's fused flash attention, Reel's own tensor-core kernel) and by key parts.
extension OpCaseList {
    mutating func attention(_ dt: DType) {
        func qkv(_ lq: Int, _ lk: Int, _ h: Int, _ d: Int, dv: Int? = nil, batch b: Int = 1) -> [InputSpec] {
            [InputSpec(shape: [b, lq, h, d], dtype: dt), InputSpec(shape: [b, lk, h, d], dtype: dt),
             InputSpec(shape: [b, lk, h, dv ?? d], dtype: dt)]
        }
        // Lq and Lk not multiples of the 64-row tiles, so the edge masking is exercised. 16-bit cases with
        // D <= 128 run on each path: cuDNN's fused kernel (when cuDNN is installed) and Reel's own kernel.
        let paths: [CUDABackend.AttentionPath] = dt == .f32 ? [.auto] : (cudnn ? [.cudnn, .own] : [.own])
        for (lq, lk, h, d) in [(200, 333, 2, 128), (77, 140, 3, 64), (130, 64, 1, 128), (50, 90, 1, 384), (33, 47, 2, 40)] {
            for path in (d <= 128 && d % 8 == 0 ? paths : [.auto]) {
                let tag = path == .auto ? "" : "(\(path))"
                check("attention", "q[1,\(lq),\(h),\(d)] k\(lk) \(tag)", dt, qkv(lq, lk, h, d), factor: 10) { b, t in
                    try withAttentionPath(b, path) {
                        try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(d).squareRoot(), bias: nil)
                    }
                }
            }
        }
        if dt != .f32 && cudnn {
            // Split keys (cuDNN, forced): parts of 1/2 and 1/3 of the keys merged by their softmax statistics.
            for (lq, lk, h, splits) in [(200, 4096, 2, 2), (77, 1500, 3, 3), (130, 64, 1, 4)] {
                check("attention", "q[1,\(lq),\(h),128] k\(lk) (cudnn, \(splits) key parts)", dt, qkv(lq, lk, h, 128), factor: 10) { b, t in
                    try withAttentionPath(b, .cudnn, splits: splits) {
                        try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(128).squareRoot(), bias: nil)
                    }
                }
            }
        }
        if dt == .bf16 {
            // The DiT's real shapes: self-attention over the window (split by the wave rule and whole),
            // cross-attention over 512 text tokens.
            for (lk, path, splits) in [(18720, CUDABackend.AttentionPath.auto, nil), (18720, .cudnn, 1), (18720, .own, nil),
                                       (512, .auto, nil)] {
                check("attention", "DiT q[1,4680,12,128] k\(lk) (\(path)\(splits == 1 ? ", keys whole" : ""))", dt, qkv(4680, lk, 12, 128),
                      factor: 10) { b, t in
                    try withAttentionPath(b, path, splits: splits) {
                        try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(128).squareRoot(), bias: nil)
                    }
                }
            }
        }
        check("attention", "q[2,40,4,64] k56 + bias[4,40,56], no scale", dt,
              qkv(40, 56, 4, 64, batch: 2) + [InputSpec(shape: [4, 40, 56], dtype: dt)], factor: 10) { b, t in
            try b.attention(query: t[0], key: t[1], value: t[2], scale: 1, bias: t[3])
        }
        check("attention", "q[1,64,2,64] k30 v Dv=32", dt, qkv(64, 30, 2, 64, dv: 32), factor: 10) { b, t in
            try b.attention(query: t[0], key: t[1], value: t[2], scale: 0.125, bias: nil)
        }
        // Heads wider than the fused kernels (the Wan2.2 VAE's middle attention: 640 in the encoder, 1024 in the
        // decoder), a score tile at a time; two heads and a bias exercise the permutes and the bias slices.
        for (lq, lk, h, d, withBias) in [(90, 90, 1, 640, false), (200, 200, 1, 1024, false), (33, 50, 2, 512, true)] {
            let inputs = qkv(lq, lk, h, d, batch: withBias ? 2 : 1) + (withBias ? [InputSpec(shape: [h, lq, lk], dtype: dt)] : [])
            check("attention", "wide head q[\(withBias ? 2 : 1),\(lq),\(h),\(d)] k\(lk)\(withBias ? " + bias" : "")", dt, inputs,
                  factor: 10) { b, t in
                try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(d).squareRoot(), bias: withBias ? t[3] : nil)
            }
        }
    }

    /// Reel's Hopper kernel (`.hopper`: wgmma and TMA, sm_90 only; check-ops drops these cases on other GPUs), added
    /// after every other case so that theirs keep their inputs: tiles cut at both ends (Lq and Lk not multiples
    /// of 128, one key), two batches, forced key parts (a part shorter than a tile), the DiT's shapes.
    mutating func hopperAttention() {
        func qkv(_ b: Int, _ lq: Int, _ lk: Int, _ h: Int) -> [InputSpec] {
            [InputSpec(shape: [b, lq, h, 128], dtype: .bf16), InputSpec(shape: [b, lk, h, 128], dtype: .bf16),
             InputSpec(shape: [b, lk, h, 128], dtype: .bf16)]
        }
        let cases: [(b: Int, lq: Int, lk: Int, h: Int, splits: Int?)] = [
            (1, 200, 333, 2, 1), (1, 130, 64, 1, 1), (1, 77, 1, 3, 1), (2, 256, 256, 2, nil), (2, 300, 520, 2, nil),
            (1, 200, 4096, 2, 2), (1, 77, 1500, 3, 3), (1, 129, 384, 1, 4),
            (1, 4680, 18720, 12, nil), (1, 4680, 18720, 12, 1), (1, 4680, 512, 12, nil)]
        for (b, lq, lk, h, splits) in cases {
            let parts = splits.map { $0 == 1 ? ", keys whole" : ", \($0) key parts" } ?? ""
            check("attention", "q[\(b),\(lq),\(h),128] k\(lk) (hopper\(parts))", .bf16, qkv(b, lq, lk, h), factor: 10,
                  arch: "sm_90") { bk, t in
                try withAttentionPath(bk, .hopper, splits: splits) {
                    try bk.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(128).squareRoot(), bias: nil)
                }
            }
        }
        // Whole tiles first, the later ones in key parts (HopperAttentionSchedule): a cut last tile among the parts,
        // parts not a multiple of 128 keys, the schedule the fill rule picks for the DiT's shape on 132 SMs.
        let dit = HopperAttentionSchedule.filled(lq: 4680, lk: 18720, heads: 12, sms: 132)
        let scheduled: [(lq: Int, lk: Int, h: Int, schedule: HopperAttentionSchedule)] = [
            (200, 4096, 2, .init(wholeTiles: 1, splits: 2)), (300, 1500, 3, .init(wholeTiles: 2, splits: 3)),
            (640, 2048, 2, .init(wholeTiles: 3, splits: 4)), (4680, 18720, 12, dit)]
        for (lq, lk, h, schedule) in scheduled {
            check("attention", "q[1,\(lq),\(h),128] k\(lk) (hopper, \(schedule))", .bf16, qkv(1, lq, lk, h), factor: 10,
                  arch: "sm_90") { bk, t in
                try withAttentionPath(bk, .hopper) {
                    try withCUDASetting(bk, \.hopperScheduleOverride, schedule) {
                        try bk.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(128).squareRoot(), bias: nil)
                    }
                }
            }
        }
    }

    mutating func attentionPerf() {
        // CPU, f32: self (DiT-like heads, one block of queries over a window) and cross with bias.
        for (lq, lk, h, d, bias) in [(1560, 4680, 12, 128, false), (512, 512, 16, 64, true), (2048, 2048, 1, 384, false)] {
            var inputs = [InputSpec(shape: [1, lq, h, d], dtype: .f32), InputSpec(shape: [1, lk, h, d], dtype: .f32),
                          InputSpec(shape: [1, lk, h, d], dtype: .f32)]
            if bias { inputs.append(InputSpec(shape: [h, lq, lk], dtype: .f32)) }
            perf(.cpu, "attention", "q\(lq) k\(lk) h\(h) d\(d)\(bias ? " +bias" : "")", .f32, inputs,
                 flops: 2.0 * Double(lq * lk * h * d) * 2,
                 bytes: Double((lq + 2 * lk) * h * d + lq * h * d + (bias ? h * lq * lk : 0)) * 4) { b, t in
                try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(d).squareRoot(), bias: bias ? t[3] : nil)
            }
        }
        // CUDA, bf16; FLOPs counted as 4 * Lq * Lk * D * H (QK^T and PV). The DiT shapes on each path: what `.auto`
        // picks, cuDNN's fused flash attention, Reel's mma.sync kernel and its Hopper kernel.
        let (tokens, heads, hd, window) = (4680, 12, 128, 18720)
        for (lq, lk, h, d, what, path) in [(tokens, window, heads, hd, "DiT self", CUDABackend.AttentionPath.auto),
                                           (tokens, window, heads, hd, "DiT self", .cudnn),
                                           (tokens, window, heads, hd, "DiT self", .own),
                                           (tokens, window, heads, hd, "DiT self", .hopper),
                                           (tokens, 512, heads, hd, "DiT cross", .auto), (tokens, 512, heads, hd, "DiT cross", .cudnn),
                                           (tokens, 512, heads, hd, "DiT cross", .own), (tokens, 512, heads, hd, "DiT cross", .hopper),
                                           (6240, 6240, 1, 384, "VAE middle", .auto)] {
            perf(.cuda, "attention", "q\(lq) k\(lk) \(h)x\(d) (\(what), \(path))", .bf16,
                 [InputSpec(shape: [1, lq, h, d], dtype: .bf16), InputSpec(shape: [1, lk, h, d], dtype: .bf16),
                  InputSpec(shape: [1, lk, h, d], dtype: .bf16)],
                 flops: 4 * Double(lq * lk * d * h), bytes: 2 * Double((2 * lq + 2 * lk) * h * d)) { b, t in
                try withAttentionPath(b, path) {
                    try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(d).squareRoot(), bias: nil)
                }
            }
        }
        // The Hopper kernel's two schedules (every tile split by the wave-fill rule; only the last wave's tiles) at the
        // self-attention shapes of the 1.3B, the 14B (40 heads) and LongLive 2.0's 5B (7040 queries, 35200 keys, 24 heads).
        for (lq, lk, h, what) in [(4680, 18720, 12, "1.3B self"), (4680, 18720, 40, "14B self"), (7040, 35200, 24, "5B self")] {
            for fill in [false, true] {
                perf(.cuda, "attention", "q\(lq) k\(lk) \(h)x128 (\(what), hopper, \(fill ? "last wave split" : "every tile split"))",
                     .bf16, [InputSpec(shape: [1, lq, h, 128], dtype: .bf16), InputSpec(shape: [1, lk, h, 128], dtype: .bf16),
                             InputSpec(shape: [1, lk, h, 128], dtype: .bf16)],
                     flops: 4 * Double(lq * lk * 128 * h), bytes: 2 * Double((2 * lq + 2 * lk) * h * 128)) { b, t in
                    try withAttentionPath(b, .hopper) {
                        try withCUDASetting(b, \.hopperFillLastWave, fill) {
                            try b.attention(query: t[0], key: t[1], value: t[2], scale: 1 / Float(128).squareRoot(), bias: nil)
                        }
                    }
                }
            }
        }
    }
}
