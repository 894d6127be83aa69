import Foundation
import ReelCore

// Fused attention (Kernels/attention.cu): never a materialized score matrix.
extension CUDABackend {
    public func attention(query: Tensor, key: Tensor, value: Tensor, scale: Float, bias: Tensor?) throws -> Tensor {
        for t in [query, key, value] { try requireFloat(t, "attention") }
        try require(query.rank == 4 && key.rank == 4 && value.rank == 4, "attention",
                    "expected q [B,Lq,H,D], k [B,Lk,H,D], v [B,Lk,H,Dv], got \(query.shape), \(key.shape), \(value.shape)")
        let (b, lq, h, d) = (query.shape[0], query.shape[1], query.shape[2], query.shape[3])
        let (lk, dv) = (key.shape[1], value.shape[3])
        try require(key.shape[0] == b && key.shape[2] == h && key.shape[3] == d, "attention", "k \(key.shape) does not match q \(query.shape)")
        try require(value.shape[0] == b && value.shape[1] == lk && value.shape[2] == h, "attention", "v \(value.shape) does not match k \(key.shape)")
        if let bias {
            try requireFloat(bias, "attention")
            try require(bias.shape == [h, lq, lk], "attention", "bias must be [H, Lq, Lk] = [\(h), \(lq), \(lk)], got \(bias.shape)")
        }
        let out = try allocate([b, lq, h, dv], dtype: query.dtype)
        if out.count == 0 { return out }
        if lk == 0 { try fill(out, with: 0); return out }
        let pq = try arg(query, "attention"), pk = try arg(key, "attention"), pv = try arg(value, "attention")
        let po = try arg(out, "attention"), pb = try arg(bias, "attention")

        let half = query.dtype == .bf16 || query.dtype == .f16
        let sameType = key.dtype == query.dtype && value.dtype == query.dtype
        let aligned = [pq, pk, pv, po].allSatisfy { $0 % 16 == 0 }
        let cudnnShape = half && sameType && aligned && bias == nil && d == dv && d % 8 == 0 && d <= 128
        if attentionPath == .hopper || (attentionPath == .auto && tuning.hopperAttention && lk >= tuning.hopperAttentionMinKeys) {
            let hopperShape = query.dtype == .bf16 && sameType && aligned && bias == nil && d == 128 && dv == 128
                && cudaDevice.info.arch == "sm_90" && driver.cuTensorMapEncodeTiled != nil
            if hopperShape {
                try hopperAttention(b: b, lq: lq, lk: lk, h: h, q: pq, k: pk, v: pv, out: out, scale: scale)
                return out
            }
            // `.auto` goes on to cuDNN and Reel's other kernels for the shapes this one does not take.
            if attentionPath == .hopper {
                throw ReelError.unsupported(backend: name, op: "attention", message: "Reel's Hopper kernel needs an sm_90 GPU "
                    + "(this one: \(cudaDevice.info.arch)), a driver with cuTensorMapEncodeTiled, bf16 q, k, v, no bias, "
                    + "D = Dv = 128, 16-byte aligned; got \(query.dtype) D \(d) Dv \(dv)\(bias == nil ? "" : " with a bias")")
            }
        }
        if attentionPath == .cudnn && !cudnnShape {
            throw ReelError.unsupported(backend: name, op: "attention",
                                        message: "cuDNN path needs bf16/f16 q, k, v, no bias, D = Dv <= 128 (multiple of 8), 16-byte aligned")
        }
        if cudnnShape && attentionPath != .own {
            let plain = CuDNNAttentionPlan.Key(b: b, lq: lq, lk: lk, h: h, d: d, dtype: query.dtype)
            let splits = b == 1 ? attentionSplits(lq: lq, lk: lk, heads: h) : 1
            if splits > 1 {
                var key = plain
                key.splits = splits
                // A refused split falls back to the plain attention below, unless both were forced.
                do {
                    if try cudnnAttention(key: key, q: query, k: pk, v: pv, o: out, scale: scale) { return out }
                } catch {
                    if attentionPath == .cudnn && attentionSplitOverride != nil { throw error }
                }
            }
            do {
                if try cudnnAttention(key: plain, q: pq, k: pk, v: pv, o: po, scale: scale) { return out }
            } catch {
                if attentionPath == .cudnn { throw error }
            }
        }
        if half && sameType && aligned && bias == nil && d == dv && (d == 64 || d == 128 || d == 384) {
            // Heads of 384 (the VAE) produce 128 output columns per block and keep Q in shared memory.
            let dvBlock = d == 384 ? 128 : d
            let kernel = "attn_mma_d\(d)_\(query.dtype == .bf16 ? "bf16" : "f16")"
            let shared = (2 * 64 * (d + 8) + 2 * 64 * (dvBlock + 8) + (d == 384 ? 64 * (d + 8) : 0)) * 2
            try launch("attention", kernel, grid: ((lq + 63) / 64, h * (dv / dvBlock), b), block: (128, 1, 1), sharedBytes: shared) { k in
                k.add(pq); k.add(pk); k.add(pv); k.add(po); k.add(Int32(lq)); k.add(Int32(lk)); k.add(Int32(h)); k.add(Int32(dv)); k.add(scale)
            }
            return out
        }
        if d > 384 || dv > 384 { return try wideHeadAttention(query: query, key: key, value: value, scale: scale, bias: bias, into: out) }
        let shared = 16 * (d + dv) * 4
        try launch("attention", "attn_generic", grid: ((lq + 7) / 8, h, b), block: (256, 1, 1), sharedBytes: shared) { k in
            k.add(pq); k.add(pk); k.add(pv); k.add(pb); k.add(po)
            k.add(Int32(lq)); k.add(Int32(lk)); k.add(Int32(h)); k.add(Int32(d)); k.add(Int32(dv)); k.add(scale)
            k.add(query.dtype.kernelCode); k.add(key.dtype.kernelCode); k.add(value.dtype.kernelCode)
            k.add((bias?.dtype ?? .f32).kernelCode); k.add(out.dtype.kernelCode)
        }
        return out
    }
}

extension CUDABackend {
    /// Reel's Hopper attention (Kernels/attention_sm90.cu) on contiguous bf16 [B, L, H, 128] tensors: TMA
    /// descriptors for q, k and v, then one launch over the units of `hopperSchedule`; the key parts of split tiles
    /// (B = 1) merged by `attn_merge_v8` into their rows of `out`.
    func hopperAttention(b: Int, lq: Int, lk: Int, h: Int, q: UInt64, k: UInt64, v: UInt64, out: Tensor, scale: Float) throws {
        let schedule = b == 1 ? hopperSchedule(lq: lq, lk: lk, heads: h) : .plain(lq: lq)
        // The kernel cuts the keys into `splits` parts of Lk / splits: a remainder would be dropped.
        try require(schedule.splits == 1 || lk % schedule.splits == 0, "attention",
                    "the Hopper kernel's schedule (\(schedule)) needs Lk = \(lk) divisible by its \(schedule.splits) key parts")
        let (tq, tk, tv) = (try tensorMap(q, rows: lq, batch: b, heads: h), try tensorMap(k, rows: lk, batch: b, heads: h),
                            try tensorMap(v, rows: lk, batch: b, heads: h))
        let rows = schedule.splitRows(lq: lq)
        let parts = rows > 0 ? try allocate([schedule.splits, rows, h, 128], dtype: .bf16) : nil
        let stats = rows > 0 ? try allocate([schedule.splits, h, rows], dtype: .f32) : nil
        let po = try arg(parts, "attention"), ps = try arg(stats, "attention"), final = try arg(out, "attention")
        // Alignment slack, Q, room for 3 stages of K and V (the kernel's STAGES is 2 or 3; one CTA an SM either way), barriers.
        let shared = 1024 + 128 * 128 * 2 + 6 * 128 * 128 * 2 + 128
        try launch("attention_sm90", "attn_sm90_d128_bf16", grid: (schedule.units(lq: lq, heads: h, batch: b), 1, 1),
                   block: (384, 1, 1), sharedBytes: shared) { a in
            a.add(tq); a.add(tk); a.add(tv); a.add(final); a.add(po); a.add(ps)
            a.add(Int32(lq)); a.add(Int32(lk)); a.add(Int32(h)); a.add(Int32(schedule.wholeTiles)); a.add(Int32(schedule.splits))
            a.add(scale * 1.4426950408889634)
        }
        guard rows > 0 else { return }
        try mergeKeyParts(parts: po, stats: ps, into: final + UInt64(schedule.firstSplitRow * h * 128 * 2), lq: rows, h: h,
                          splits: schedule.splits)
    }

    /// The Hopper kernel's schedule for one batch: `hopperScheduleOverride` when set; every tile in the parts
    /// `REEL_ATTN_SPLITS` forces; with `hopperFillLastWave` the schedule of the shortest predicted time
    /// (`HopperAttentionSchedule.filled`, kept per shape); else every tile in the parts of the wave-fill rule.
    func hopperSchedule(lq: Int, lk: Int, heads: Int) -> HopperAttentionSchedule {
        if let forced = hopperScheduleOverride { return forced }
        if attentionSplitOverride != nil || !hopperFillLastWave {
            return .everyTileSplit(lq: lq, splits: attentionSplits(lq: lq, lk: lk, heads: heads))
        }
        let key = HopperScheduleKey(lq: lq, lk: lk, heads: heads)
        plans.scheduleLock.lock()
        defer { plans.scheduleLock.unlock() }
        if let known = plans.hopperSchedules[key] { return known }
        let made = HopperAttentionSchedule.filled(lq: lq, lk: lk, heads: heads, sms: cudaDevice.info.multiprocessors)
        plans.hopperSchedules[key] = made
        return made
    }

    /// The key parts of a split attention (bf16 [splits, Lq, H, 128], each part's log-sum-exp [splits, H, Lq]) merged
    /// into `out` by `attn_merge_v8`.
    func mergeKeyParts(parts: UInt64, stats: UInt64, into out: UInt64, lq: Int, h: Int, splits: Int) throws {
        let n = lq * h * 16
        try launch("attention", "attn_merge_v8", grid: ((n + 255) / 256, 1, 1), block: (256, 1, 1)) { a in
            a.add(parts); a.add(stats); a.add(out)
            a.add(Int64(lq * h)); a.add(Int32(lq)); a.add(Int32(h)); a.add(Int32(128)); a.add(Int32(splits)); a.add(DType.bf16.kernelCode)
        }
    }

    /// A TMA descriptor for bf16 [batch, rows, heads, 128] at `pointer`, read in boxes of 128 rows x 64 columns
    /// of one head with the 128-byte swizzle; rows past the end read as zeros.
    func tensorMap(_ pointer: UInt64, rows: Int, batch: Int, heads: Int) throws -> TensorMap {
        try tensorMap(pointer, elementBytes: 2, inner: heads * 128, rows: rows, batch: batch, box: 64)
    }

    /// A TMA descriptor for a [batch, rows, inner] tensor of 2-byte (bf16) or 1-byte (FP8 codes) elements at
    /// `pointer`, read in boxes of 128 rows x `box` elements (128 bytes: one swizzle atom) with the 128-byte swizzle;
    /// rows and columns past the end read as zeros.
    func tensorMap(_ pointer: UInt64, elementBytes: Int, inner: Int, rows: Int, batch: Int, box boxInner: Int) throws -> TensorMap {
        guard let encode = driver.cuTensorMapEncodeTiled else {
            throw ReelError.unsupported(backend: name, op: "attention", message: "this CUDA driver has no cuTensorMapEncodeTiled")
        }
        var map = TensorMap()
        let dims: [UInt64] = [UInt64(inner), UInt64(rows), UInt64(batch)]
        let strides: [UInt64] = [UInt64(inner * elementBytes), UInt64(rows * inner * elementBytes)]
        let box: [UInt32] = [UInt32(boxInner), 128, 1], steps: [UInt32] = [1, 1, 1]
        // bf16 (9) or uint8 (0), no interleave (0), 128-byte swizzle (3), L2 promotion of 128 bytes (2), zeros out of bounds (0).
        let dataType: Int32 = elementBytes == 2 ? 9 : 0
        let status = withUnsafeMutableBytes(of: &map) {
            encode($0.baseAddress!, dataType, 3, UnsafeMutableRawPointer(bitPattern: UInt(pointer))!, dims, strides, box, steps, 0, 3, 2, 0)
        }
        try driver.check(status, "cuTensorMapEncodeTiled(\(elementBytes == 2 ? "bf16" : "fp8") [\(batch), \(rows), \(inner)])")
        return map
    }

    /// Score rows of one wide-head attention pass held at once, at most (float32: 128 MiB).
    static let wideHeadScoreBytes = 128 << 20

    /// Attention with heads wider than the fused kernels take (the Wan2.2 VAE's middle attention: one head of 640 in
    /// the encoder, 1024 in the decoder): per batch and head, a tile of query rows at a time, scores in float32
    /// through GEMMs, softmax, then the weighted values. The score tile is bounded (`wideHeadScoreBytes`), never the
    /// whole Lq x Lk matrix of a long sequence; these layers have one head over one frame's latents (3520 at 704x1280).
    func wideHeadAttention(query: Tensor, key: Tensor, value: Tensor, scale: Float, bias: Tensor?, into out: Tensor) throws -> Tensor {
        let (b, lq, h, d) = (query.shape[0], query.shape[1], query.shape[2], query.shape[3])
        let (lk, dv) = (key.shape[1], value.shape[3])
        // [B, L, H, D] -> one head's [L, D] rows, float32.
        func head(_ x: Tensor, _ n: Int, _ j: Int) throws -> Tensor {
            let rows = h == 1 ? try x.reshaped([x.shape[0], x.shape[1], x.shape[3]])
                : try permute(x, [0, 2, 1, 3]).reshaped([x.shape[0] * h, x.shape[1], x.shape[3]])
            let one = try slice(rows, axis: 0, start: n * h + j, length: 1).reshaped([x.shape[1], x.shape[3]])
            return one.dtype == .f32 ? one : try cast(one, to: .f32)
        }
        let tile = max(1, min(lq, CUDABackend.wideHeadScoreBytes / max(4 * lk, 1)))
        var heads: [Tensor] = []
        for n in 0..<b {
            for j in 0..<h {
                let (q, k, v) = (try head(query, n, j), try head(key, n, j), try head(value, n, j))
                var parts: [Tensor] = []
                var start = 0
                while start < lq {
                    let rows = min(tile, lq - start)
                    let qt = rows == lq ? q : try slice(q, axis: 0, start: start, length: rows)
                    var scores = try affine(try matmul(qt, k, transposeB: true, bias: nil), scale: scale, bias: 0)   // [rows, Lk]
                    if let bias {
                        let bh = try slice(bias, axis: 0, start: j, length: 1).reshaped([lq, lk])
                        let bt = rows == lq ? bh : try slice(bh, axis: 0, start: start, length: rows)
                        scores = try binary(.add, scores, bt.dtype == .f32 ? bt : try cast(bt, to: .f32))
                    }
                    parts.append(try matmul(try softmax(scores), v, transposeB: false, bias: nil))                  // [rows, Dv]
                    start += rows
                }
                heads.append(parts.count == 1 ? parts[0] : try concat(parts, axis: 0))
            }
        }
        // [B * H, Lq, Dv] -> [B, Lq, H, Dv] in the output's dtype.
        let stacked = try concat(try heads.map { try $0.reshaped([1, lq, dv]) }, axis: 0).reshaped([b, h, lq, dv])
        let ordered = h == 1 ? try stacked.reshaped([b, lq, 1, dv]) : try permute(stacked, [0, 2, 1, 3])
        try copy(ordered.dtype == out.dtype ? ordered : try cast(ordered, to: out.dtype), into: out, axis: 0, at: 0)
        return out
    }

    /// Runs cuDNN's fused attention; false when cuDNN is absent or refused this shape before
    /// (the reason is kept in `cudnnRefusals`), so the caller uses Reel's own kernel.
    /// A split key (`splits` > 1) also writes `stats` and partial outputs to `o`.
    func cudnnAttention(key: CuDNNAttentionPlan.Key, q: UInt64, k: UInt64, v: UInt64, o: UInt64, stats: UInt64 = 0,
                        scale: Float) throws -> Bool {
        plans.cudnnLock.lock()
        defer { plans.cudnnLock.unlock() }
        if plans.cudnnRefused.contains(key) {
            if attentionPath == .cudnn { throw ReelError.unsupported(backend: name, op: "attention", message: cudnnRefusals.last ?? "refused by cuDNN") }
            return false
        }
        let dnn: CuDNN
        do { dnn = try cudnnContext() } catch {
            if attentionPath == .cudnn { throw error }
            return false
        }
        let plan: CuDNNAttentionPlan
        if let p = plans.cudnnPlans[key] { plan = p } else {
            do { plan = try CuDNNAttentionPlan(dnn: dnn, handle: plans.cudnnHandle, key: key) } catch {
                plans.cudnnRefused.insert(key)
                plans.cudnnRefusals.append("B\(key.b) Lq\(key.lq) Lk\(key.lk) H\(key.h) D\(key.d) \(key.dtype): \(error)")
                throw error
            }
            plans.cudnnPlans[key] = plan
        }
        try cudaDevice.makeCurrent()
        try plan.execute(handle: plans.cudnnHandle, q: q, k: k, v: v, o: o, stats: stats, scale: scale,
                         workspace: try cudnnScratch(plan.workspaceBytes), on: self, label: key.profileLabel)
        return true
    }

    /// How many parts to cut the keys into (1: none) so that cuDNN's tiles of 128 queries x 1 head,
    /// one per SM at a time, fill the last wave: the smallest S in 1...4 whose wave fill
    /// (tiles x S / SMs over its ceiling) is within 2% of the best, keeping each part at least 2048
    /// keys and Lk divisible by S. `attentionSplitOverride` (`REEL_ATTN_SPLITS`) forces S (1: off).
    func attentionSplits(lq: Int, lk: Int, heads: Int) -> Int {
        if let forced = attentionSplitOverride {
            return (2...4).contains(forced) && lk % forced == 0 && lk / forced >= 8 ? forced : 1  // attn_merge_v8 takes up to 4 parts
        }
        let sms = Double(max(1, cudaDevice.info.multiprocessors))
        let tiles = Double((lq + 127) / 128 * heads)
        func fill(_ s: Int) -> Double { let w = tiles * Double(s) / sms; return w / w.rounded(.up) }
        let candidates = (1...4).filter { $0 == 1 || (lk % $0 == 0 && lk / $0 >= 2048) }
        let best = candidates.map(fill).max() ?? 1
        return candidates.first { fill($0) >= best - 0.02 } ?? 1
    }

    /// The split-key attention of `key` (splits > 1): one batched cuDNN call over the key parts, then
    /// `attn_merge_v8` weights each part's output by its share of the softmax denominator.
    func cudnnAttention(key: CuDNNAttentionPlan.Key, q query: Tensor, k: UInt64, v: UInt64, o out: Tensor, scale: Float) throws -> Bool {
        let (s, lq, h, d) = (key.splits, key.lq, key.h, key.d)
        let parts = try allocate([s, lq, h, d], dtype: key.dtype), stats = try allocate([s, h, lq], dtype: .f32)
        let pp = try arg(parts, "attention"), ps = try arg(stats, "attention"), po = try arg(out, "attention")
        guard try cudnnAttention(key: key, q: try arg(query, "attention"), k: k, v: v, o: pp, stats: ps, scale: scale) else { return false }
        let n = lq * h * (d / 8)
        try launch("attention", "attn_merge_v8", grid: ((n + 255) / 256, 1, 1), block: (256, 1, 1)) { a in
            a.add(pp); a.add(ps); a.add(po)
            a.add(Int64(lq * h)); a.add(Int32(lq)); a.add(Int32(h)); a.add(Int32(d)); a.add(Int32(s)); a.add(key.dtype.kernelCode)
        }
        return true
    }

    /// cuDNN with the device's handle (created on first use) bound to this stream: one handle per device,
    /// so that every stream runs the plans it made. Call with `plans.cudnnLock` held.
    func cudnnContext() throws -> CuDNN {
        let dnn = try CUDALibraries.cudnn()
        if plans.cudnnHandle == nil {
            try cudaDevice.makeCurrent()
            _ = try? CUDALibraries.nvrtc()  // cuDNN's runtime-compiled engines find the NVRTC already loaded
            try dnn.check(dnn.cudnnCreate(&plans.cudnnHandle), "cudnnCreate")
        }
        if plans.cudnnStream != stream {
            try dnn.check(dnn.cudnnSetStream(plans.cudnnHandle, stream), "cudnnSetStream")
            plans.cudnnStream = stream
        }
        return dnn
    }

    /// A workspace of at least `bytes` on this stream (grown, never shrunk). Call with `plans.cudnnLock` held.
    func cudnnScratch(_ bytes: Int) throws -> UInt64 {
        if bytes > (cudnnWorkspace?.byteCount ?? 0) {
            cudnnWorkspace = try cudaDevice.allocator.allocate(bytes, stream: stream)
        }
        return cudnnWorkspace?.pointer ?? 0
    }
}

/// CUtensorMap: 128 opaque bytes that cuTensorMapEncodeTiled fills, passed to a kernel by value.
struct TensorMap: BitwiseCopyable {
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}
