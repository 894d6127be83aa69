import Foundation
import ReelCore

/// cuDNN's fused flash attention for one problem shape, built through the backend API: the single
/// SDPA forward operation of cuDNN >= 9.13, else the graph cuDNN's runtime fusion engine fuses
/// (the one cudnn-frontend's SDPA node emits for inference):
///
///     S = Q K^T            matmul, float32 accumulate         [B, H, Lq, Lk] (virtual)
///     S = S * scale        pointwise, scale passed by value
///     P = softmax(S)       max-reduce, sub, exp, sum-reduce, div (all virtual)
///     O = P V              matmul                              [B, H, Lq, D]
///
/// The virtual tensors never reach memory: the engine fuses the whole graph into one kernel.
/// Q, K, V, O keep Reel's [B, L, H, D] layout, described to cuDNN by strides.
///
/// Split keys (`Key.splits` = S > 1, B = 1, SDPA operation only): the keys are cut into S equal
/// consecutive parts that run as a batch of S against the same queries (Q's batch stride is 0; where
/// cuDNN refuses the graph, the caller runs the plain attention), each writing its partial output
/// `[S, Lq, H, D]` and its softmax statistics (natural-log sum of exponentials) `[S, H, Lq]` f32, which
/// `attn_merge_v8` combines. cuDNN's kernel gives each SM one tile of 128 queries of one head, so the
/// DiT's 37 x 12 = 444 tiles on 132 SMs run in 4 waves, the last a third full; as 888 tiles of
/// half the keys they run in 7 nearly full waves.
final class CuDNNAttentionPlan: CuDNNPlan, @unchecked Sendable {

    struct Key: Hashable {
        var b, lq, lk, h, d: Int
        var dtype: DType
        /// Key parts run as a batch (1: the plain attention).
        var splits = 1
        /// The FP8 graph (`buildFP8Ops`): Q, K, V and O in FP8 E4M3 with per-tensor scales; `dtype` is then the
        /// dtype the caller's Q, K, V came in.
        var fp8 = false

        /// The profiler's label: `cudnn sdpa Lq x Lk` with the batch (if not 1), heads and head size.
        var profileLabel: String {
            "cudnn sdpa \(lq)x\(lk)" + (b == 1 ? "" : " b\(b)") + (splits == 1 ? "" : " split\(splits)") + " h\(h) d\(d)"
                + (fp8 ? " fp8" : "")
        }
    }

    private static let uidQ: Int64 = 1, uidK: Int64 = 2, uidV: Int64 = 3, uidO: Int64 = 4, uidScale: Int64 = 5, uidStats: Int64 = 6

    init(dnn: CuDNN, handle: CUhandle, key: Key) throws {
        super.init(dnn: dnn)
        let (b, lq, lk, h, d) = (Int64(key.b), Int64(key.lq), Int64(key.lk), Int64(key.h), Int64(key.d))
        let io: Int32 = key.dtype == .bf16 ? CuDNN.dataBFloat16 : CuDNN.dataHalf
        var failures: [String] = []
        if key.fp8 {
            do {
                try choosePlan(handle: handle, ops: try buildFP8Ops(b: b, lq: lq, lk: lk, h: h, d: d))
                return
            } catch {
                destroyDescriptors()
                throw ReelError.unsupported(backend: "cuda", op: "fp8Attention",
                                            message: "cuDNN \(dnn.versionString), FP8 SDPA graph: \(error)")
            }
        }
        if key.splits > 1 {
            // Only the SDPA operation writes the statistics the merge needs.
            do {
                try choosePlan(handle: handle, ops: try buildSplitOps(splits: Int64(key.splits), lq: lq, lk: lk, h: h, d: d, io: io))
                return
            } catch {
                destroyDescriptors()
                throw ReelError.unsupported(backend: "cuda", op: "attention", message: "cuDNN, \(key.splits) key parts: \(error)")
            }
        }
        // cuDNN >= 9.13 has a single SDPA operation; older versions only fuse the composite graph.
        for variant in [Variant.sdpaOperation, .composite] {
            do {
                let ops = try buildOps(variant, b: b, lq: lq, lk: lk, h: h, d: d, io: io)
                try choosePlan(handle: handle, ops: ops)
                return
            } catch {
                failures.append("\(variant): \(error)")
            }
        }
        destroyDescriptors()
        throw ReelError.unsupported(backend: "cuda", op: "attention", message: "cuDNN: " + failures.joined(separator: "; "))
    }

    enum Variant: String { case sdpaOperation = "SDPA operation", composite = "composite graph" }

    private func buildOps(_ variant: Variant, b: Int64, lq: Int64, lk: Int64, h: Int64, d: Int64, io: Int32) throws -> [CUhandle] {
        let f32 = CuDNN.dataFloat
        // [B, H, L, D] dims over [B, L, H, D] memory.
        let q = try tensor(Self.uidQ, [b, h, lq, d], [lq * h * d, d, h * d, 1], io)
        let v = try tensor(Self.uidV, [b, h, lk, d], [lk * h * d, d, h * d, 1], io)
        let o = try tensor(Self.uidO, [b, h, lq, d], [lq * h * d, d, h * d, 1], io)
        let scale = try tensor(Self.uidScale, [1, 1, 1, 1], [1, 1, 1, 1], f32, byValue: true)
        if variant == .sdpaOperation {
            let k = try tensor(Self.uidK, [b, h, lk, d], [lk * h * d, d, h * d, 1], io)
            return [try sdpaOperation(q: q, k: k, v: v, o: o, scale: scale, stats: nil)]
        }
        let kt = try tensor(Self.uidK, [b, h, d, lk], [lk * h * d, d, 1, h * d], io)  // K^T by strides
        let full: [Int64] = [b, h, lq, lk], fullStrides: [Int64] = [h * lq * lk, lq * lk, lk, 1]
        let row: [Int64] = [b, h, lq, 1], rowStrides: [Int64] = [h * lq, lq, 1, 1]
        var uid: Int64 = 100
        func virt(_ dims: [Int64], _ strides: [Int64], _ dt: Int32 = f32) throws -> CUhandle {
            uid += 1
            return try tensor(uid, dims, strides, dt, virtual: true)
        }
        let s = try virt(full, fullStrides), ss = try virt(full, fullStrides)
        let mx = try virt(row, rowStrides), sub = try virt(full, fullStrides), ex = try virt(full, fullStrides)
        let sum = try virt(row, rowStrides), p = try virt(full, fullStrides, io)
        return [
            try matmul(q, kt, s),
            try pointwise(CuDNN.pwMul, ss, s, scale),
            try reduction(CuDNN.reduceMax, ss, mx),
            try pointwise(CuDNN.pwSub, sub, ss, mx),
            try pointwise(CuDNN.pwExp, ex, sub, nil),
            try reduction(CuDNN.reduceAdd, ex, sum),
            try pointwise(CuDNN.pwDiv, p, ex, sum),
            try matmul(p, v, o),
        ]
    }

    private static let uidDescaleQ: Int64 = 7, uidDescaleK: Int64 = 8, uidDescaleV: Int64 = 9, uidDescaleP: Int64 = 10
    private static let uidScaleP: Int64 = 11, uidScaleO: Int64 = 12, uidAmaxP: Int64 = 13, uidAmaxO: Int64 = 14

    /// cuDNN's FP8 SDPA forward as cudnn-frontend hands it to the backend (scripts/gpu/NOTES.md, session 7: 18
    /// operations, every pointwise and matmul in float32): S = Q8 K8^T * scale * descaleQ * descaleK; the
    /// softmax with its statistics (max + log of the sum, written to `stats` [B, H, Lq, 1]); P = exp / sum,
    /// its amax, P8 = P * scaleP (FP8, virtual); O = P8 V8 * descaleP * descaleV * scaleO in FP8 ([B, L, H, D]
    /// strides), and the amax of O before its scale. Scales and amaxes are [1, 1, 1, 1] float32 tensors by
    /// pointer; the attention scale is by value.
    private func buildFP8Ops(b: Int64, lq: Int64, lk: Int64, h: Int64, d: Int64) throws -> [CUhandle] {
        let f32 = CuDNN.dataFloat, fp8 = CuDNN.dataFP8E4M3
        let q = try tensor(Self.uidQ, [b, h, lq, d], [lq * h * d, d, h * d, 1], fp8)
        let kt = try tensor(Self.uidK, [b, h, d, lk], [lk * h * d, d, 1, h * d], fp8)  // K^T by strides
        let v = try tensor(Self.uidV, [b, h, lk, d], [lk * h * d, d, h * d, 1], fp8)
        let o = try tensor(Self.uidO, [b, h, lq, d], [lq * h * d, d, h * d, 1], fp8)
        let stats = try tensor(Self.uidStats, [b, h, lq, 1], [h * lq, lq, 1, 1], f32)
        let scale = try tensor(Self.uidScale, [1, 1, 1, 1], [1, 1, 1, 1], f32, byValue: true)
        func scalar(_ uid: Int64) throws -> CUhandle { try tensor(uid, [1, 1, 1, 1], [1, 1, 1, 1], f32) }
        let descaleQ = try scalar(Self.uidDescaleQ), descaleK = try scalar(Self.uidDescaleK), descaleV = try scalar(Self.uidDescaleV)
        let descaleP = try scalar(Self.uidDescaleP), scaleP = try scalar(Self.uidScaleP), scaleO = try scalar(Self.uidScaleO)
        let amaxP = try scalar(Self.uidAmaxP), amaxO = try scalar(Self.uidAmaxO)
        let full: [Int64] = [b, h, lq, lk], fullStrides: [Int64] = [h * lq * lk, lq * lk, lk, 1]
        let row: [Int64] = [b, h, lq, 1], rowStrides: [Int64] = [h * lq, lq, 1, 1]
        let packed: [Int64] = [b, h, lq, d], packedStrides: [Int64] = [h * lq * d, lq * d, d, 1]
        var uid: Int64 = 100
        func virt(_ dims: [Int64], _ strides: [Int64], _ dt: Int32 = f32) throws -> CUhandle {
            uid += 1
            return try tensor(uid, dims, strides, dt, virtual: true)
        }
        let s = try virt(full, fullStrides), s1 = try virt(full, fullStrides), s2 = try virt(full, fullStrides)
        let s3 = try virt(full, fullStrides), mx = try virt(row, rowStrides), sub = try virt(full, fullStrides)
        let ex = try virt(full, fullStrides), sum = try virt(row, rowStrides), logSum = try virt(row, rowStrides)
        let p = try virt(full, fullStrides), p8 = try virt(full, fullStrides, fp8)
        let pv = try virt(packed, packedStrides), o1 = try virt(packed, packedStrides), o2 = try virt(packed, packedStrides)
        return [
            try matmul(q, kt, s),                                   // 1
            try pointwise(CuDNN.pwMul, s1, s, scale),               // 2-4
            try pointwise(CuDNN.pwMul, s2, s1, descaleQ),
            try pointwise(CuDNN.pwMul, s3, s2, descaleK),
            try reduction(CuDNN.reduceMax, s3, mx),                 // 5
            try pointwise(CuDNN.pwSub, sub, s3, mx),                // 6
            try pointwise(CuDNN.pwExp, ex, sub, nil),               // 7
            try reduction(CuDNN.reduceAdd, ex, sum),                // 8
            try pointwise(CuDNN.pwLog, logSum, sum, nil),           // 9
            try pointwise(CuDNN.pwAdd, stats, mx, logSum),          // 10
            try pointwise(CuDNN.pwDiv, p, ex, sum),                 // 11
            try reduction(CuDNN.reduceAmax, p, amaxP),              // 12
            try pointwise(CuDNN.pwMul, p8, p, scaleP),              // 13
            try matmul(p8, v, pv),                                  // 14
            try pointwise(CuDNN.pwMul, o1, pv, descaleP),           // 15-17
            try pointwise(CuDNN.pwMul, o2, o1, descaleV),
            try pointwise(CuDNN.pwMul, o, o2, scaleO),
            try reduction(CuDNN.reduceAmax, o2, amaxO),             // 18
        ]
    }

    /// Runs the FP8 plan: `q`, `k`, `v`, `o` FP8 codes, `stats` [B, H, Lq] f32, `slots` the scale slots of
    /// `fp8_attn_quantize` (Kernels/attention.cu: slot s at byte 16 s).
    func executeFP8(handle: CUhandle, q: UInt64, k: UInt64, v: UInt64, o: UInt64, stats: UInt64, slots: UInt64, scale: Float,
                    workspace: UInt64, on backend: CUDABackend, label: @autoclosure () -> String) throws {
        var scaleValue = scale
        try withUnsafeMutablePointer(to: &scaleValue) { sp in
            let slot: [(Int64, UInt64)] = [(Self.uidDescaleQ, 3), (Self.uidDescaleK, 4), (Self.uidDescaleV, 5), (Self.uidScaleP, 6),
                                           (Self.uidDescaleP, 7), (Self.uidScaleO, 8), (Self.uidAmaxP, 10), (Self.uidAmaxO, 11)]
            let uids = [Self.uidQ, Self.uidK, Self.uidV, Self.uidO, Self.uidStats, Self.uidScale] + slot.map(\.0)
            let device = [q, k, v, o, stats].map { UnsafeMutableRawPointer(bitPattern: UInt($0)) }
            let scalars = slot.map { UnsafeMutableRawPointer(bitPattern: UInt(slots + 16 * $0.1)) }
            let ptrs = device + [UnsafeMutableRawPointer(sp)] + scalars
            try execute(handle: handle, uids: uids, pointers: ptrs, workspace: workspace, on: backend, label: label())
        }
    }

    /// The split graph: batch `splits` over K and V's consecutive parts (batch stride Lk/S rows), Q
    /// with batch stride 0, partial outputs and statistics per part.
    private func buildSplitOps(splits s: Int64, lq: Int64, lk: Int64, h: Int64, d: Int64, io: Int32) throws -> [CUhandle] {
        let part = lk / s
        let q = try tensor(Self.uidQ, [s, h, lq, d], [0, d, h * d, 1], io)
        let k = try tensor(Self.uidK, [s, h, part, d], [part * h * d, d, h * d, 1], io)
        let v = try tensor(Self.uidV, [s, h, part, d], [part * h * d, d, h * d, 1], io)
        let o = try tensor(Self.uidO, [s, h, lq, d], [lq * h * d, d, h * d, 1], io)
        let stats = try tensor(Self.uidStats, [s, h, lq, 1], [h * lq, lq, 1, 1], CuDNN.dataFloat)
        let scale = try tensor(Self.uidScale, [1, 1, 1, 1], [1, 1, 1, 1], CuDNN.dataFloat, byValue: true)
        return [try sdpaOperation(q: q, k: k, v: v, o: o, scale: scale, stats: stats)]
    }

    /// cuDNN's single SDPA forward operation over tensor descriptors (`stats`: also its softmax statistics).
    private func sdpaOperation(q: CUhandle, k: CUhandle, v: CUhandle, o: CUhandle, scale: CUhandle, stats: CUhandle?) throws -> CUhandle {
        try make(CuDNN.operationSDPAForwardDescriptor) { op in
            var qq = q, kk = k, vv = v, oo = o, sc = scale
            try set(op, CuDNN.attrSDPAForwardQ, CuDNN.typeBackendDescriptor, &qq)
            try set(op, CuDNN.attrSDPAForwardK, CuDNN.typeBackendDescriptor, &kk)
            try set(op, CuDNN.attrSDPAForwardV, CuDNN.typeBackendDescriptor, &vv)
            try set(op, CuDNN.attrSDPAForwardO, CuDNN.typeBackendDescriptor, &oo)
            if var st = stats { try set(op, CuDNN.attrSDPAForwardStats, CuDNN.typeBackendDescriptor, &st) }
            try set(op, CuDNN.attrSDPAForwardScale, CuDNN.typeBackendDescriptor, &sc)
        }
    }

    /// Runs the plan on `handle`'s stream. `workspace` holds at least `workspaceBytes`. Split plans
    /// also take `stats` and write partial outputs to `o`.
    func execute(handle: CUhandle, q: UInt64, k: UInt64, v: UInt64, o: UInt64, stats: UInt64 = 0, scale: Float, workspace: UInt64,
                 on backend: CUDABackend, label: @autoclosure () -> String) throws {
        var scaleValue = scale
        try withUnsafeMutablePointer(to: &scaleValue) { sp in
            var uids = [Self.uidQ, Self.uidK, Self.uidV, Self.uidO, Self.uidScale]
            var ptrs = [q, k, v, o].map { UnsafeMutableRawPointer(bitPattern: UInt($0)) } + [UnsafeMutableRawPointer(sp)]
            if stats != 0 {
                uids.append(Self.uidStats)
                ptrs.append(UnsafeMutableRawPointer(bitPattern: UInt(stats)))
            }
            try execute(handle: handle, uids: uids, pointers: ptrs, workspace: workspace, on: backend, label: label())
        }
    }
}
