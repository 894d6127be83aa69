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

        /// The profiler's label: `cudnn sdpa Lq x Lk` with the batch (if not 1), heads and head size.
        var profileLabel: String {
            "cudnn sdpa \(lq)x\(lk)" + (b == 1 ? "" : " b\(b)") + (splits == 1 ? "" : " split\(splits)") + " h\(h) d\(d)"
        }
    }

    private static let uidQ: Int64 = 1, uidK: Int64 = 2, uidV: Int64 = 3, uidO: Int64 = 4, uidScale: Int64 = 5, uidStats: Int64 = 6

    init(dnn: CuDNN, handle: CUhandle, key: Key) throws {
        super.init(dnn: dnn)
        let (b, lq, lk, h, d) = (Int64(key.b), Int64(key.lq), Int64(key.lk), Int64(key.h), Int64(key.d))
        let io: Int32 = key.dtype == .bf16 ? CuDNN.dataBFloat16 : CuDNN.dataHalf
        var failures: [String] = []
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
