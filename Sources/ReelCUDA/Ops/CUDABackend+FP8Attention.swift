import Foundation
import ReelCore

// FP8 attention (`Backend.fp8Attention`, `--attention fp8`): Kernels/attention.cu's `fp8_attn_*` around cuDNN's
// FP8 SDPA graph (`CuDNNAttentionPlan` with `Key.fp8`). Never the default path of `attention`.
extension CUDABackend {
    /// Q, K and V's largest magnitudes on the device (no host sync), their E4M3 codes at `FP8Attention`'s
    /// scales, cuDNN's FP8 graph writing O's codes, then O back to q's dtype. K and V may be views of a
    /// KV cache (the bf16 path's layouts: [B, L, H, D], contiguous from the view's start); a cache stored in
    /// FP8 (`--kv-cache fp8`) has already been read back to the model's dtype, so its per-row codes are
    /// requantized here per tensor. Refused, with the versions found, below cuDNN 9.13 or compute capability 9.0.
    public func fp8Attention(query: Tensor, key: Tensor, value: Tensor, scale: Float) throws -> Tensor {
        let op = "fp8Attention"
        for t in [query, key, value] { try requireFloat(t, op) }
        let (b, lq, h, d, lk) = try FP8Attention.checkedShape(query: query, key: key, value: value, op: op)
        try require(query.dtype != .fp8e4m3 && key.dtype == query.dtype && value.dtype == query.dtype, op,
                    "q, k, v of one float dtype (FP8 attention quantizes them itself), got "
                        + "\(query.dtype), \(key.dtype), \(value.dtype)")
        try require(d % 16 == 0 && d <= 128, op, "cuDNN's FP8 SDPA takes heads of at most 128, a multiple of 16; got \(d)")
        let out = try allocate([b, lq, h, d], dtype: query.dtype)
        if out.count == 0 { return out }
        if lk == 0 { try fill(out, with: 0); return out }
        let pq = try arg(query, op), pk = try arg(key, op), pv = try arg(value, op), po = try arg(out, op)
        if fp8AttentionPath == .hopper || (fp8AttentionPath == .auto && tuning.hopperFP8Attention) {
            let eligible = query.dtype == .bf16 && d == 128 && cudaDevice.info.arch == "sm_90"
                && driver.cuTensorMapEncodeTiled != nil && [pq, pk, pv].allSatisfy { $0 % 16 == 0 }
            if eligible {
                try hopperFP8Attention(b: b, lq: lq, lk: lk, h: h, q: pq, k: pk, v: pv, values: key.count, dtype: query.dtype,
                                       out: out, scale: scale)
                return out
            }
            if fp8AttentionPath == .hopper {
                throw ReelError.unsupported(backend: name, op: op, message: "Reel's Hopper FP8 attention needs an sm_90 GPU (this one: "
                    + "\(cudaDevice.info.arch)), a driver with cuTensorMapEncodeTiled, bf16 q, k, v with D = 128, 16-byte aligned; "
                    + "got \(query.dtype) D \(d)")
            }
        }
        let q8 = try allocate(query.shape, dtype: .fp8e4m3), k8 = try allocate(key.shape, dtype: .fp8e4m3)
        let v8 = try allocate(value.shape, dtype: .fp8e4m3), o8 = try allocate(out.shape, dtype: .fp8e4m3)
        let stats = try allocate([b, h, lq], dtype: .f32)
        let pq8 = try arg(q8, op), pk8 = try arg(k8, op), pv8 = try arg(v8, op), po8 = try arg(o8, op)
        let slots = try fp8AttentionCodes(q: pq, k: pk, v: pv, queries: query.count, keys: key.count, dtype: query.dtype,
                                          q8: pq8, k8: pk8, v8: pv8)
        let ps = try arg(slots, op)
        var planKey = CuDNNAttentionPlan.Key(b: b, lq: lq, lk: lk, h: h, d: d, dtype: query.dtype)
        planKey.fp8 = true
        let ran = try cudnnFP8Attention(key: planKey, q: pq8, k: pk8, v: pv8, o: po8, stats: try arg(stats, op), slots: ps,
                                        scale: scale)
        if !ran { return try emulatedFP8Attention(q8: q8, k8: k8, v8: v8, slots: slots, scale: scale, into: out) }
        let n = out.count, blockCap = 16 * max(1, cudaDevice.info.multiprocessors)
        try launch("attention", "fp8_attn_output", grid: (max(1, min((n + 255) / 256, blockCap)), 1, 1), block: (256, 1, 1)) { a in
            a.add(po8); a.add(ps); a.add(po); a.add(Int64(n)); a.add(out.dtype.kernelCode)
        }
        return out
    }

    /// FP8 attention's per-tensor scales and codes: a zeroed slots buffer (attention.cu's layout), Q's, K's and V's
    /// largest magnitudes in it (`fp8_attn_amax`), then the E4M3 codes of Q, K and, unless `v8` is nil, V
    /// (`fp8_attn_quantize`, which also writes their descales). `queries` and `keys` count the values of q and of k
    /// (and v). Returns the slots.
    func fp8AttentionCodes(q: UInt64, k: UInt64, v: UInt64, queries: Int, keys: Int, dtype: DType,
                           q8: UInt64, k8: UInt64, v8: UInt64?) throws -> Tensor {
        let slots = try allocate([48], dtype: .f32), ps = try arg(slots, "fp8Attention")
        try fill(slots, with: 0)
        let (nq, nk) = (Int64(queries), Int64(keys))
        let blocks = max(1, min((max(queries, keys) + 255) / 256, 16 * max(1, cudaDevice.info.multiprocessors)))
        try launch("attention", "fp8_attn_amax", grid: (blocks, 3, 1), block: (256, 1, 1)) { a in
            a.add(q); a.add(k); a.add(v); a.add(nq); a.add(nk); a.add(dtype.kernelCode); a.add(ps)
        }
        // Grid y picks the tensor: 0 Q, 1 K, 2 V.
        try launch("attention", "fp8_attn_quantize", grid: (blocks, v8 == nil ? 2 : 3, 1), block: (256, 1, 1)) { a in
            a.add(q); a.add(k); a.add(v); a.add(q8); a.add(k8); a.add(v8 ?? 0); a.add(nq); a.add(nk); a.add(dtype.kernelCode)
            a.add(ps)
        }
        return slots
    }

    /// Reel's Hopper FP8 attention (Kernels/attention_sm90.cu, `attn_sm90_d128_e4m3`): Q and K quantized per tensor as
    /// for cuDNN's graph (`fp8_attn_amax`, `fp8_attn_quantize`), V quantized into its transposed, key-permuted layout
    /// (`fp8_attn_quantize_vt`: [B, H, 128, Lk rounded up to 32]), then one launch; P's codes at scale 448 as cuDNN's,
    /// O kept in float32 until it is written in bf16 (cuDNN's graph rounds O to E4M3 too). For B = 1 the keys are
    /// cut by the wave rule when each part is a multiple of 32 keys (V's groups), merged by `attn_merge_v8`.
    func hopperFP8Attention(b: Int, lq: Int, lk: Int, h: Int, q: UInt64, k: UInt64, v: UInt64, values: Int, dtype: DType,
                            out: Tensor, scale: Float) throws {
        let op = "fp8Attention"
        let lk8 = (lk + 31) / 32 * 32
        let q8 = try allocate([b, lq, h, 128], dtype: .fp8e4m3), k8 = try allocate([b, lk, h, 128], dtype: .fp8e4m3)
        let vt = try allocate([b, h, 128, lk8], dtype: .fp8e4m3)
        let pq8 = try arg(q8, op), pk8 = try arg(k8, op), pvt = try arg(vt, op)
        // Q's and K's codes; V's go through their own kernel below.
        let slots = try fp8AttentionCodes(q: q, k: k, v: v, queries: b * lq * h * 128, keys: values, dtype: dtype,
                                          q8: pq8, k8: pk8, v8: nil)
        let ps = try arg(slots, op)
        try launch("attention_sm90", "fp8_attn_quantize_vt", grid: (lk8 / 32, 4 * h, b), block: (32, 8, 1)) { a in
            a.add(v); a.add(pvt); a.add(ps); a.add(Int32(lk)); a.add(Int32(lk8)); a.add(Int32(h)); a.add(dtype.kernelCode)
        }
        var splits = b == 1 ? attentionSplits(lq: lq, lk: lk, heads: h) : 1
        if splits > 1 && (lk % splits != 0 || (lk / splits) % 32 != 0) { splits = 1 }
        let (tq, tk, tv) = (try tensorMap(pq8, elementBytes: 1, inner: h * 128, rows: lq, batch: b, box: 128),
                            try tensorMap(pk8, elementBytes: 1, inner: h * 128, rows: lk, batch: b, box: 128),
                            try tensorMap(pvt, elementBytes: 1, inner: lk8, rows: h * 128, batch: b, box: 128))
        let parts = splits > 1 ? try allocate([splits, lq, h, 128], dtype: .bf16) : out
        let stats = splits > 1 ? try allocate([splits, h, lq], dtype: .f32) : nil
        let pp = try arg(parts, op), pst = try arg(stats, op)
        let shared = 1024 + 128 * 128 + 2 * 4 * 128 * 128 + 128   // alignment slack, Q, 4 stages of K and V^T, barriers
        try launch("attention_sm90", "attn_sm90_d128_e4m3", grid: ((lq + 127) / 128, h, b * splits), block: (384, 1, 1),
                   sharedBytes: shared) { a in
            a.add(tq); a.add(tk); a.add(tv); a.add(ps); a.add(pp); a.add(pst)
            a.add(Int32(lq)); a.add(Int32(lk)); a.add(Int32(h)); a.add(Int32(splits)); a.add(scale * 1.4426950408889634)
        }
        if splits > 1 { try mergeKeyParts(parts: pp, stats: pst, into: try arg(out, op), lq: lq, h: h, splits: splits) }
    }

    /// cuDNN's FP8 graph for `key` (built once per shape, kept with the bf16 plans), enqueued on this stream: true.
    /// Throws, naming the versions, where cuDNN or the GPU cannot run FP8 attention at all; false where cuDNN refused
    /// this shape's graph (said once on standard error, kept in `cudnnRefusals`), so the caller emulates it.
    func cudnnFP8Attention(key: CuDNNAttentionPlan.Key, q: UInt64, k: UInt64, v: UInt64, o: UInt64, stats: UInt64, slots: UInt64,
                           scale: Float) throws -> Bool {
        plans.cudnnLock.lock()
        defer { plans.cudnnLock.unlock() }
        let info = cudaDevice.info
        let gpu = "\(info.name) (compute capability \(info.computeCapability.major).\(info.computeCapability.minor))"
        let dnn: CuDNN
        do { dnn = try cudnnContext() } catch {
            throw ReelError.unsupported(backend: name, op: "fp8Attention",
                                        message: "--attention fp8 runs on cuDNN's FP8 SDPA, which did not load: \(error)")
        }
        guard info.computeCapability.major >= 9, dnn.version >= 91300 else {
            throw ReelError.unsupported(backend: name, op: "fp8Attention",
                                        message: "--attention fp8 needs cuDNN >= 9.13 on a GPU of compute capability "
                                            + ">= 9.0 (Hopper); found cuDNN \(dnn.versionString) on \(gpu)")
        }
        if plans.cudnnRefused.contains(key) { return false }
        let plan: CuDNNAttentionPlan
        if let p = plans.cudnnPlans[key] { plan = p } else {
            do { plan = try CuDNNAttentionPlan(dnn: dnn, handle: plans.cudnnHandle, key: key) } catch {
                plans.cudnnRefused.insert(key)
                let refusal = "B\(key.b) Lq\(key.lq) Lk\(key.lk) H\(key.h) D\(key.d) fp8 on \(gpu): \(error)"
                plans.cudnnRefusals.append(refusal)
                let note = "cuDNN refused FP8 attention at \(refusal); emulated by composed ops (slower)\n"
                FileHandle.standardError.write(Data(note.utf8))
                return false
            }
            plans.cudnnPlans[key] = plan
        }
        try cudaDevice.makeCurrent()
        try plan.executeFP8(handle: plans.cudnnHandle, q: q, k: k, v: v, o: o, stats: stats, slots: slots, scale: scale,
                            workspace: try cudnnScratch(plan.workspaceBytes), on: self, label: key.profileLabel)
        return true
    }

    /// FP8 attention where cuDNN refused the shape's graph: `Backend.composedFP8Attention` from the same codes and
    /// the scales `fp8_attn_quantize` wrote (read back to the host: one sync).
    func emulatedFP8Attention(q8: Tensor, k8: Tensor, v8: Tensor, slots: Tensor, scale: Float, into out: Tensor) throws -> Tensor {
        let s = try slots.toFloats()
        let scales = FP8Attention.Scales(descaleQ: s[12], descaleK: s[16], descaleV: s[20], outputScale: s[32], outputDescale: s[36])
        return try composedFP8Attention(q8: q8, k8: k8, v8: v8, scales: scales, scale: scale, into: out,
                                        scoreBytes: CUDABackend.wideHeadScoreBytes)
    }
}
