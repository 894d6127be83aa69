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
final class CuDNNAttentionPlan: @unchecked Sendable {
    private let dnn: CuDNN
    private var descriptors: [CUhandle] = []
    private(set) var plan: CUhandle = nil
    private(set) var workspaceBytes = 0

    struct Key: Hashable { var b, lq, lk, h, d: Int; var dtype: DType }

    private static let uidQ: Int64 = 1, uidK: Int64 = 2, uidV: Int64 = 3, uidO: Int64 = 4, uidScale: Int64 = 5

    init(dnn: CuDNN, handle: CUhandle, key: Key) throws {
        self.dnn = dnn
        let (b, lq, lk, h, d) = (Int64(key.b), Int64(key.lq), Int64(key.lk), Int64(key.h), Int64(key.d))
        let io: Int32 = key.dtype == .bf16 ? CuDNN.dataBFloat16 : CuDNN.dataHalf
        var failures: [String] = []
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
        for dsc in descriptors.reversed() { _ = dnn.cudnnBackendDestroyDescriptor(dsc) }
        descriptors = []
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
            return [try make(CuDNN.operationSDPAForwardDescriptor) { op in
                var qq = q, kk = k, vv = v, oo = o, sc = scale
                try set(op, CuDNN.attrSDPAForwardQ, CuDNN.typeBackendDescriptor, &qq)
                try set(op, CuDNN.attrSDPAForwardK, CuDNN.typeBackendDescriptor, &kk)
                try set(op, CuDNN.attrSDPAForwardV, CuDNN.typeBackendDescriptor, &vv)
                try set(op, CuDNN.attrSDPAForwardO, CuDNN.typeBackendDescriptor, &oo)
                try set(op, CuDNN.attrSDPAForwardScale, CuDNN.typeBackendDescriptor, &sc)
            }]
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

    /// Operation graph -> heuristics (mode A, then fallback) -> the first engine config that
    /// finalizes into an execution plan.
    private func choosePlan(handle: CUhandle, ops: [CUhandle]) throws {
        let graph = try make(CuDNN.operationGraphDescriptor) { g in
            var hd = handle
            try set(g, CuDNN.attrGraphHandle, CuDNN.typeHandle, &hd)
            try ops.withUnsafeBufferPointer { p in
                try dnn.check(dnn.cudnnBackendSetAttribute(g, CuDNN.attrGraphOps, CuDNN.typeBackendDescriptor, Int64(p.count), p.baseAddress!), "set OPERATIONGRAPH_OPS")
            }
        }
        var lastError: Error?
        for mode in [CuDNN.heurModeA, CuDNN.heurModeFallback] {
            let heur: CUhandle
            do {
                heur = try make(CuDNN.engineHeurDescriptor) { e in
                    var g = graph, m = mode
                    try set(e, CuDNN.attrEngineHeurOperationGraph, CuDNN.typeBackendDescriptor, &g)
                    try set(e, CuDNN.attrEngineHeurMode, CuDNN.typeHeurMode, &m)
                }
            } catch { lastError = error; continue }
            var count: Int64 = 0
            try dnn.check(dnn.cudnnBackendGetAttribute(heur, CuDNN.attrEngineHeurResults, CuDNN.typeBackendDescriptor, 0, &count, nil),
                          "count ENGINEHEUR_RESULTS")
            if count == 0 { lastError = ReelError.library(name: "cuDNN", message: "heuristic mode \(mode) found no engine"); continue }
            var cfgs = [CUhandle](repeating: nil, count: Int(count))
            for i in 0..<cfgs.count {
                try dnn.check(dnn.cudnnBackendCreateDescriptor(CuDNN.engineCfgDescriptor, &cfgs[i]), "create ENGINECFG")
                descriptors.append(cfgs[i])
            }
            var got: Int64 = 0
            try cfgs.withUnsafeMutableBufferPointer { p in
                try dnn.check(dnn.cudnnBackendGetAttribute(heur, CuDNN.attrEngineHeurResults, CuDNN.typeBackendDescriptor, count, &got, p.baseAddress!),
                              "get ENGINEHEUR_RESULTS")
            }
            for cfg in cfgs.prefix(Int(got)) {
                do {
                    let chosen = try make(CuDNN.executionPlanDescriptor) { pl in
                        var hd = handle, c = cfg
                        try set(pl, CuDNN.attrPlanHandle, CuDNN.typeHandle, &hd)
                        try set(pl, CuDNN.attrPlanEngineConfig, CuDNN.typeBackendDescriptor, &c)
                    }
                    var ws: Int64 = 0, n: Int64 = 0
                    try dnn.check(dnn.cudnnBackendGetAttribute(chosen, CuDNN.attrPlanWorkspaceSize, CuDNN.typeInt64, 1, &n, &ws), "get WORKSPACE_SIZE")
                    plan = chosen
                    workspaceBytes = Int(ws)
                    return
                } catch { lastError = error }
            }
        }
        throw lastError ?? ReelError.library(name: "cuDNN", message: "no engine for this attention graph")
    }

    deinit { for dsc in descriptors.reversed() { _ = dnn.cudnnBackendDestroyDescriptor(dsc) } }

    /// Runs the plan on `handle`'s stream. `workspace` holds at least `workspaceBytes`.
    func execute(handle: CUhandle, q: UInt64, k: UInt64, v: UInt64, o: UInt64, scale: Float, workspace: UInt64) throws {
        var scaleValue = scale
        try withUnsafeMutablePointer(to: &scaleValue) { sp in
            var uids: [Int64] = [Self.uidQ, Self.uidK, Self.uidV, Self.uidO, Self.uidScale]
            var ptrs: [UnsafeMutableRawPointer?] = [q, k, v, o].map { UnsafeMutableRawPointer(bitPattern: UInt($0)) } + [UnsafeMutableRawPointer(sp)]
            var ws = UnsafeMutableRawPointer(bitPattern: UInt(workspace))
            var pack: CUhandle = nil
            try dnn.check(dnn.cudnnBackendCreateDescriptor(CuDNN.variantPackDescriptor, &pack), "create VARIANT_PACK")
            defer { _ = dnn.cudnnBackendDestroyDescriptor(pack) }
            try dnn.check(dnn.cudnnBackendSetAttribute(pack, CuDNN.attrVariantUIDs, CuDNN.typeInt64, 5, &uids), "set VARIANT_PACK_UNIQUE_IDS")
            try dnn.check(dnn.cudnnBackendSetAttribute(pack, CuDNN.attrVariantPointers, CuDNN.typeVoidPtr, 5, &ptrs), "set VARIANT_PACK_DATA_POINTERS")
            try dnn.check(dnn.cudnnBackendSetAttribute(pack, CuDNN.attrVariantWorkspace, CuDNN.typeVoidPtr, 1, &ws), "set VARIANT_PACK_WORKSPACE")
            try dnn.check(dnn.cudnnBackendFinalize(pack), "finalize VARIANT_PACK")
            try dnn.check(dnn.cudnnBackendExecute(handle, plan, pack), "cudnnBackendExecute(attention)")
        }
    }

    // MARK: Descriptor helpers

    private func make(_ type: Int32, _ configure: (CUhandle) throws -> Void) throws -> CUhandle {
        var d: CUhandle = nil
        try dnn.check(dnn.cudnnBackendCreateDescriptor(type, &d), "cudnnBackendCreateDescriptor(\(type))")
        descriptors.append(d)
        try configure(d)
        try dnn.check(dnn.cudnnBackendFinalize(d), "cudnnBackendFinalize(descriptor type \(type))")
        return d
    }

    private func set<T>(_ d: CUhandle, _ name: Int32, _ type: Int32, _ value: inout T) throws {
        try dnn.check(dnn.cudnnBackendSetAttribute(d, name, type, 1, &value), "cudnnBackendSetAttribute(\(name))")
    }

    private func tensor(_ uid: Int64, _ dims: [Int64], _ strides: [Int64], _ dtype: Int32, virtual: Bool = false, byValue: Bool = false) throws -> CUhandle {
        try make(CuDNN.tensorDescriptor) { t in
            var dt = dtype, u = uid, align: Int64 = 16, isVirtual = virtual, isByValue = byValue
            var dd = dims, ss = strides
            try set(t, CuDNN.attrTensorDataType, CuDNN.typeDataType, &dt)
            try dnn.check(dnn.cudnnBackendSetAttribute(t, CuDNN.attrTensorDims, CuDNN.typeInt64, Int64(dd.count), &dd), "set TENSOR_DIMENSIONS")
            try dnn.check(dnn.cudnnBackendSetAttribute(t, CuDNN.attrTensorStrides, CuDNN.typeInt64, Int64(ss.count), &ss), "set TENSOR_STRIDES")
            try set(t, CuDNN.attrTensorUID, CuDNN.typeInt64, &u)
            try set(t, CuDNN.attrTensorAlignment, CuDNN.typeInt64, &align)
            if virtual { try set(t, CuDNN.attrTensorVirtual, CuDNN.typeBoolean, &isVirtual) }
            if byValue { try set(t, CuDNN.attrTensorByValue, CuDNN.typeBoolean, &isByValue) }
        }
    }

    private func matmul(_ a: CUhandle, _ b: CUhandle, _ c: CUhandle) throws -> CUhandle {
        let desc = try make(CuDNN.matmulDescriptor) { m in
            var ct = CuDNN.dataFloat
            try set(m, CuDNN.attrMatmulCompType, CuDNN.typeDataType, &ct)
        }
        return try make(CuDNN.operationMatmulDescriptor) { op in
            var aa = a, bb = b, cc = c, dd = desc
            try set(op, CuDNN.attrOpMatmulA, CuDNN.typeBackendDescriptor, &aa)
            try set(op, CuDNN.attrOpMatmulB, CuDNN.typeBackendDescriptor, &bb)
            try set(op, CuDNN.attrOpMatmulC, CuDNN.typeBackendDescriptor, &cc)
            try set(op, CuDNN.attrOpMatmulDesc, CuDNN.typeBackendDescriptor, &dd)
        }
    }

    private func pointwise(_ mode: Int32, _ y: CUhandle, _ x: CUhandle, _ b: CUhandle?) throws -> CUhandle {
        let desc = try make(CuDNN.pointwiseDescriptor) { p in
            var m = mode, prec = CuDNN.dataFloat
            try set(p, CuDNN.attrPointwiseMode, CuDNN.typePointwiseMode, &m)
            try set(p, CuDNN.attrPointwiseMathPrec, CuDNN.typeDataType, &prec)
        }
        return try make(CuDNN.operationPointwiseDescriptor) { op in
            var xx = x, yy = y, dd = desc
            try set(op, CuDNN.attrOpPointwiseDesc, CuDNN.typeBackendDescriptor, &dd)
            try set(op, CuDNN.attrOpPointwiseX, CuDNN.typeBackendDescriptor, &xx)
            if var bb = b { try set(op, CuDNN.attrOpPointwiseB, CuDNN.typeBackendDescriptor, &bb) }
            try set(op, CuDNN.attrOpPointwiseY, CuDNN.typeBackendDescriptor, &yy)
        }
    }

    private func reduction(_ mode: Int32, _ x: CUhandle, _ y: CUhandle) throws -> CUhandle {
        let desc = try make(CuDNN.reductionDescriptor) { r in
            var m = mode, ct = CuDNN.dataFloat
            try set(r, CuDNN.attrReductionOperator, CuDNN.typeReductionOperator, &m)
            try set(r, CuDNN.attrReductionCompType, CuDNN.typeDataType, &ct)
        }
        return try make(CuDNN.operationReductionDescriptor) { op in
            var xx = x, yy = y, dd = desc
            try set(op, CuDNN.attrOpReductionX, CuDNN.typeBackendDescriptor, &xx)
            try set(op, CuDNN.attrOpReductionY, CuDNN.typeBackendDescriptor, &yy)
            try set(op, CuDNN.attrOpReductionDesc, CuDNN.typeBackendDescriptor, &dd)
        }
    }
}
