import Foundation
import ReelCore

/// One cuDNN execution plan built through the backend API: the descriptors it was made from (kept
/// alive with it), the plan, and its workspace size. Subclasses build an operation graph for one
/// problem shape (`CuDNNAttentionPlan`, `CuDNNConvPlan`) and call `choosePlan`.
class CuDNNPlan: @unchecked Sendable {
    let dnn: CuDNN
    var descriptors: [CUhandle] = []
    private(set) var plan: CUhandle = nil
    private(set) var workspaceBytes = 0

    init(dnn: CuDNN) { self.dnn = dnn }

    deinit { destroyDescriptors() }

    func destroyDescriptors() {
        for dsc in descriptors.reversed() { _ = dnn.cudnnBackendDestroyDescriptor(dsc) }
        descriptors = []
    }

    /// `REEL_CUDNN_LOG`: print each plan's engine and workspace (to see what a stream's plans cost).
    static let logPlans = ProcessInfo.processInfo.environment["REEL_CUDNN_LOG"] != nil

    /// Operation graph -> heuristics (mode A, then fallback) -> the engine configs that finalize into
    /// execution plans. Without `time`, the heuristics' first such plan is kept. With it, up to
    /// `candidates` plans (workspace at most `maxTimedWorkspace`) are each run and timed by `time`
    /// (milliseconds; the plan, its workspace bytes) and the fastest is kept: the heuristics' first
    /// choice is not always the fastest (the Wan VAE's 96-channel convolutions).
    func choosePlan(handle: CUhandle, ops: [CUhandle], candidates: Int = 1,
                    time: ((CUhandle, Int) throws -> Double)? = nil) throws {
        var found: [(plan: CUhandle, bytes: Int, rank: Int)] = []
        let wanted = time == nil ? 1 : max(1, candidates)
        let graph = try make(CuDNN.operationGraphDescriptor) { g in
            var hd = handle
            try set(g, CuDNN.attrGraphHandle, CuDNN.typeHandle, &hd)
            try ops.withUnsafeBufferPointer { p in
                try dnn.check(dnn.cudnnBackendSetAttribute(g, CuDNN.attrGraphOps, CuDNN.typeBackendDescriptor, Int64(p.count), p.baseAddress!), "set OPERATIONGRAPH_OPS")
            }
        }
        var lastError: Error?
        // Timed choices also take mode B's candidates (its ranking differs from A's).
        let modes = time == nil ? [CuDNN.heurModeA, CuDNN.heurModeFallback] : [CuDNN.heurModeA, CuDNN.heurModeB, CuDNN.heurModeFallback]
        for mode in modes {
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
            for (rank, cfg) in cfgs.prefix(Int(got)).enumerated() where found.count < wanted {
                do {
                    let chosen = try make(CuDNN.executionPlanDescriptor) { pl in
                        var hd = handle, c = cfg
                        try set(pl, CuDNN.attrPlanHandle, CuDNN.typeHandle, &hd)
                        try set(pl, CuDNN.attrPlanEngineConfig, CuDNN.typeBackendDescriptor, &c)
                    }
                    var ws: Int64 = 0, n: Int64 = 0
                    try dnn.check(dnn.cudnnBackendGetAttribute(chosen, CuDNN.attrPlanWorkspaceSize, CuDNN.typeInt64, 1, &n, &ws), "get WORKSPACE_SIZE")
                    if found.isEmpty || Int(ws) <= Self.maxTimedWorkspace { found.append((chosen, Int(ws), rank)) }
                } catch { lastError = error }
            }
            if found.count >= wanted || (time == nil && !found.isEmpty) { break }
        }
        guard let first = found.first else {
            throw lastError ?? ReelError.library(name: "cuDNN", message: "no engine for this graph")
        }
        guard let time, found.count > 1 else { return adopt(first.plan, bytes: first.bytes, rank: first.rank) }
        var best = first, bestMs = Double.infinity
        var report: [String] = []
        for candidate in found {
            guard let ms = try? time(candidate.plan, candidate.bytes) else { report.append("#\(candidate.rank) failed"); continue }
            report.append(String(format: "#%d %.3f ms", candidate.rank, ms))
            if ms < bestMs { best = candidate; bestMs = ms }
        }
        if Self.logPlans {
            FileHandle.standardError.write(Data("cuDNN \(type(of: self)): timed \(report.joined(separator: ", "))\n".utf8))
        }
        adopt(best.plan, bytes: best.bytes, rank: best.rank)
    }

    /// Plans needing more scratch than this are not timed as alternatives to the first.
    static let maxTimedWorkspace = 256 << 20


    private func adopt(_ chosen: CUhandle, bytes: Int, rank: Int) {
        plan = chosen
        workspaceBytes = bytes
        if Self.logPlans {
            FileHandle.standardError.write(Data("cuDNN \(type(of: self)): engine config #\(rank), workspace \(bytes >> 20) MB\n".utf8))
        }
    }

    /// Runs the plan (or a `candidate` being timed) on `handle`'s stream with the tensors' unique ids
    /// bound to device pointers (by-value scalars: host pointers). With `backend` (the handle's), the
    /// execution is timed by the profiler under `label`; candidates' runs are timed by their caller.
    func execute(handle: CUhandle, uids: [Int64], pointers: [UnsafeMutableRawPointer?], workspace: UInt64,
                 plan candidate: CUhandle? = nil, on backend: CUDABackend? = nil, label: @autoclosure () -> String = "") throws {
        var ids = uids, ptrs = pointers
        var ws = UnsafeMutableRawPointer(bitPattern: UInt(workspace))
        var pack: CUhandle = nil
        try dnn.check(dnn.cudnnBackendCreateDescriptor(CuDNN.variantPackDescriptor, &pack), "create VARIANT_PACK")
        defer { _ = dnn.cudnnBackendDestroyDescriptor(pack) }
        try dnn.check(dnn.cudnnBackendSetAttribute(pack, CuDNN.attrVariantUIDs, CuDNN.typeInt64, Int64(ids.count), &ids), "set VARIANT_PACK_UNIQUE_IDS")
        try dnn.check(dnn.cudnnBackendSetAttribute(pack, CuDNN.attrVariantPointers, CuDNN.typeVoidPtr, Int64(ptrs.count), &ptrs), "set VARIANT_PACK_DATA_POINTERS")
        try dnn.check(dnn.cudnnBackendSetAttribute(pack, CuDNN.attrVariantWorkspace, CuDNN.typeVoidPtr, 1, &ws), "set VARIANT_PACK_WORKSPACE")
        try dnn.check(dnn.cudnnBackendFinalize(pack), "finalize VARIANT_PACK")
        let status: CuDNN.Status
        if let backend {
            status = backend.profiled(label()) { dnn.cudnnBackendExecute(handle, candidate ?? plan, pack) }
        } else {
            status = dnn.cudnnBackendExecute(handle, candidate ?? plan, pack)
        }
        try dnn.check(status, "cudnnBackendExecute")
    }

    // MARK: Descriptor helpers

    func make(_ type: Int32, _ configure: (CUhandle) throws -> Void) throws -> CUhandle {
        var d: CUhandle = nil
        try dnn.check(dnn.cudnnBackendCreateDescriptor(type, &d), "cudnnBackendCreateDescriptor(\(type))")
        descriptors.append(d)
        try configure(d)
        try dnn.check(dnn.cudnnBackendFinalize(d), "cudnnBackendFinalize(descriptor type \(type))")
        return d
    }

    func set<T>(_ d: CUhandle, _ name: Int32, _ type: Int32, _ value: inout T) throws {
        try dnn.check(dnn.cudnnBackendSetAttribute(d, name, type, 1, &value), "cudnnBackendSetAttribute(\(name))")
    }

    func tensor(_ uid: Int64, _ dims: [Int64], _ strides: [Int64], _ dtype: Int32, virtual: Bool = false, byValue: Bool = false) throws -> CUhandle {
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

    func matmul(_ a: CUhandle, _ b: CUhandle, _ c: CUhandle) throws -> CUhandle {
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

    func pointwise(_ mode: Int32, _ y: CUhandle, _ x: CUhandle, _ b: CUhandle?) throws -> CUhandle {
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

    func reduction(_ mode: Int32, _ x: CUhandle, _ y: CUhandle) throws -> CUhandle {
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
