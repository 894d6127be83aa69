import Foundation
import ReelCore

// GEMMs through cuBLASLt: bf16/f16 tensor cores with float32 accumulation (CUBLAS_COMPUTE_32F,
// never TF32 for f32 data), the bias (and for `linearGELU` the tanh GELU) applied in the epilogue,
// the algorithm chosen once per problem shape and epilogue (cuBLASLt's heuristic candidates, timed)
// and remembered.
extension CUDABackend {
    /// Row-major `D[batch][M, N] = A[batch][M, K] x op(B[batch])` (+ bias[N]), with op(B) = B^T for
    /// B `[N, K]` when `transposeB`, else B `[K, N]`. Strides are in elements (0: shared by the batch).
    /// With `gelu`, D = GELU(D) (tanh form) in the epilogue, after the bias. With `c` (a matrix laid out
    /// as D), D = A x op(B) + C (+ bias): cuBLASLt's beta = 1. With `rowScales` (float32 vectors of M
    /// and N, for A and B), A and B are FP8 E4M3 and the product's (i, j) is scaled by both (`dtype`
    /// is then D's and C's type). With `int8`, A and B are INT8 and D int32, the exact sums of the
    /// products (CUBLAS_COMPUTE_32I; `dtype` is .int32; no bias, GELU or C: `CUDABackend.int8Linear`).
    func gemm(a: UInt64, b: UInt64, d: UInt64, c: UInt64? = nil, bias: UInt64?, m: Int, n: Int, k: Int, transposeB: Bool,
              batch: Int = 1, strideA: Int = 0, strideB: Int = 0, strideD: Int = 0, gelu: Bool = false, dtype: DType,
              rowScales: (a: UInt64, b: UInt64)? = nil, int8: Bool = false) throws {
        if m == 0 || n == 0 { return }
        precondition(!int8 || (dtype == .int32 && bias == nil && !gelu && c == nil && rowScales == nil), "gemm: INT8 is the plain product")
        let key = GemmKey(m: m, n: n, k: k, batch: batch, transposeB: transposeB, bias: bias != nil, gelu: gelu, accumulate: c != nil,
                          fp8: rowScales != nil, fastAccumulation: rowScales != nil && tuning.fp8FastAccumulation, int8: int8,
                          dtype: dtype, strides: [strideA, strideB, strideD], alignment: [a, b, d, c ?? d].map { Int($0 % 16) })
        // Descriptors are made once per shape and device (shared by its streams; the lock is held until the
        // GEMM is enqueued): per call only the bias and scale pointers change.
        plans.gemmLock.lock()
        defer { plans.gemmLock.unlock() }
        let plan: GemmPlan
        if let p = plans.gemmPlans[key] { plan = p } else {
            plan = try GemmPlan(key: key)
            plans.gemmPlans[key] = plan
        }
        let (lt, handle) = try cudaDevice.blas()
        if var biasPtr = bias {
            try lt.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CuBLASLt.descBiasPointer, &biasPtr, 8), "set BIAS_POINTER")
        }
        if let rowScales {  // cuBLAS's A is our B (see GemmPlan)
            var (sa, sb) = (rowScales.b, rowScales.a)
            try lt.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CuBLASLt.descAScalePointer, &sa, 8), "set A_SCALE_POINTER")
            try lt.check(lt.cublasLtMatmulDescSetAttribute(plan.desc, CuBLASLt.descBScalePointer, &sb, 8), "set B_SCALE_POINTER")
        }
        let algo = try cudaDevice.gemmAlgorithm(key) { try chooseAlgorithm(plan, a: a, b: b, d: d) }
        let workspace = try gemmWorkspace()
        var alpha = key.one, beta = c == nil ? 0 : key.one
        let label = (rowScales != nil ? "gemm fp8 " : int8 ? "gemm int8 " : "gemm ") + "\(m)x\(n)x\(k)" + (batch > 1 ? " batch \(batch)" : "") + (gelu ? " +gelu" : "") + (c == nil ? "" : " +c")
        let status = profiled(label) {
            algo.withUnsafeBytes { algoPtr in
                lt.cublasLtMatmul(handle, plan.desc, &alpha, b, plan.la, a, plan.lb, &beta, c ?? d, plan.ld, d, plan.ld, algoPtr.baseAddress!,
                                  workspace, CUDADevice.gemmWorkspaceBytes, stream)
            }
        }
        try lt.check(status, "cublasLtMatmul(\(m)x\(n)x\(k), batch \(batch), \(dtype))")
    }

    /// cuBLASLt's heuristic candidates for a plan; when there are several and the problem is large
    /// enough to matter, each is timed once on the real buffers and the fastest kept. (The first
    /// choice is often not the fastest at the DiT's shapes, where M = 4680 leaves a partial wave.)
    /// Not possible while capturing a graph: then the heuristic's first choice stands.
    private func chooseAlgorithm(_ plan: GemmPlan, a: UInt64, b: UInt64, d: UInt64) throws -> [UInt8] {
        let (lt, handle) = try cudaDevice.blas()
        let key = plan.key
        var pref: CUhandle = nil
        try lt.check(lt.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate")
        defer { _ = lt.cublasLtMatmulPreferenceDestroy(pref) }
        var ws = UInt64(CUDADevice.gemmWorkspaceBytes)
        try lt.check(lt.cublasLtMatmulPreferenceSetAttribute(pref, CuBLASLt.prefMaxWorkspaceBytes, &ws, 8), "set MAX_WORKSPACE_BYTES")
        let wanted = 16
        var results = [UInt8](repeating: 0, count: CuBLASLt.heuristicResultSize * wanted)
        var found: Int32 = 0
        try results.withUnsafeMutableBytes { r in
            try lt.check(lt.cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.la, plan.lb, plan.ld, plan.ld, pref, Int32(wanted), r.baseAddress!, &found),
                         "cublasLtMatmulAlgoGetHeuristic(\(key.m)x\(key.n)x\(key.k), \(key.dtype))")
        }
        guard found > 0 else {
            let what = key.gelu ? " with the GELU epilogue (REEL_GELU_EPILOGUE=0 turns it off)" : ""
            throw ReelError.unsupported(backend: "cuda", op: "matmul", message: "cuBLASLt \(lt.versionString) has no algorithm for "
                                        + "\(key.m)x\(key.n)x\(key.k) \(key.fp8 ? "FP8 E4M3 (per-row scales) to " : key.int8 ? "INT8 to " : "")\(key.dtype)\(what)")
        }
        let candidates = (0..<Int(found)).map { i in
            Array(results[(i * CuBLASLt.heuristicResultSize)..<((i + 1) * CuBLASLt.heuristicResultSize)])
        }
        var capturing: Int32 = 0
        _ = driver.cuStreamIsCapturing(stream, &capturing)
        if candidates.count == 1 || capturing != 0 || 2 * Double(key.m) * Double(key.n) * Double(key.k) * Double(key.batch) < 1e9 {
            return candidates[0]
        }
        let scratch = try gemmWorkspace()
        var best = candidates[0], bestTime = Double.infinity
        for algo in candidates {
            var alpha = key.one, beta: UInt32 = 0
            func runOnce() -> Int32 {
                algo.withUnsafeBytes { p in
                    lt.cublasLtMatmul(handle, plan.desc, &alpha, b, plan.la, a, plan.lb, &beta, d, plan.ld, d, plan.ld, p.baseAddress!,
                                      scratch, CUDADevice.gemmWorkspaceBytes, stream)
                }
            }
            if runOnce() != 0 { continue }  // an algorithm that refuses these buffers is skipped
            let start = try record(timing: true)
            for _ in 0..<5 { _ = runOnce() }
            let end = try record(timing: true)
            let t = try elapsedMilliseconds(from: start, to: end)
            if t < bestTime { bestTime = t; best = algo }
        }
        return best
    }

    public func matmul(_ a: Tensor, _ b: Tensor, transposeB: Bool, bias: Tensor?) throws -> Tensor {
        try product(a, b, transposeB: transposeB, bias: bias, gelu: false, op: "matmul")
    }

    /// One GEMM with GELU_BIAS (or GELU) as its epilogue: the [4680, 8960] pre-activation of the DiT's
    /// FFN is never written and read back. With `geluEpilogue` off, `linear` then `geluTanh`.
    public func linearGELU(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        try require(weight.rank == 2, "linearGELU", "expected a Linear weight [N, K], got \(weight.shape)")
        if !geluEpilogue { return try unary(.geluTanh, try linear(x, weight: weight, bias: bias)) }
        return try product(x, weight, transposeB: true, bias: bias, gelu: true, op: "linearGELU")
    }

    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, adding residual: Tensor) throws -> Tensor {
        try require(weight.rank == 2, "linear", "expected a Linear weight [N, K], got \(weight.shape)")
        return try product(x, weight, transposeB: true, bias: bias, gelu: false, adding: residual, op: "linear")
    }

    public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?, into out: Tensor) throws {
        try require(weight.rank == 2, "linear", "expected a Linear weight [N, K], got \(weight.shape)")
        _ = try product(x, weight, transposeB: true, bias: bias, gelu: false, into: out, op: "linear")
    }

    /// `matmul`, and with `gelu` its output through the tanh GELU in the same GEMM; with `residual`
    /// (the output's shape) added by the GEMM, or written into `given` (not both).
    private func product(_ a: Tensor, _ b: Tensor, transposeB: Bool, bias: Tensor?, gelu: Bool, adding residual: Tensor? = nil,
                         into given: Tensor? = nil, op: String) throws -> Tensor {
        try requireFloat(a, op); try requireFloat(b, op)
        try require(a.dtype != .fp8e4m3 && b.dtype != .fp8e4m3, op,
                    "FP8 operands come with per-row scales: use quantizeRows and quantizedLinear")
        try require(a.rank >= 2, op, "a must be [..., M, K], got \(a.shape)")
        let bb = b.dtype == a.dtype ? b : try cast(b, to: a.dtype)
        let k = a.shape.last
        var m = a.count / max(k, 1), batch = 1, strideA = 0, strideB = 0, strideD = 0
        let n: Int, kb: Int
        if b.rank == 2 {
            (n, kb) = transposeB ? (b.shape[0], b.shape[1]) : (b.shape[1], b.shape[0])
        } else if b.rank == 3 {
            try require(a.rank == 3 && a.shape[0] == b.shape[0], op, "batched b \(b.shape) needs a [\(b.shape[0]), M, K], got \(a.shape)")
            batch = b.shape[0]
            m = a.shape[1]
            (n, kb) = transposeB ? (b.shape[1], b.shape[2]) : (b.shape[2], b.shape[1])
            strideA = m * k; strideB = n * k; strideD = m * n
        } else {
            throw ReelError.invalidArgument(op: op, message: "b must be [N, K], [K, N] or batched, got \(b.shape)")
        }
        try require(kb == k, op, "inner dimensions differ: a \(a.shape), b \(b.shape)\(transposeB ? " (transposed)" : "")")
        var biasT: Tensor?
        if let bias {
            try require(bias.count == n, op, "bias has \(bias.count) elements for N = \(n)")
            biasT = bias.dtype == a.dtype ? bias : try cast(bias, to: a.dtype)
        }
        var outDims = Array(a.shape.dims.dropLast())
        outDims.append(n)
        let outShape = Shape(outDims)
        precondition(residual == nil || given == nil, "product: a residual and an output tensor together")
        var c: Tensor?
        if let residual {
            try require(residual.shape == outShape, op, "residual \(residual.shape) differs from the output \(outShape)")
            c = residual.dtype == a.dtype ? residual : try cast(residual, to: a.dtype)
        }
        if let given {
            try require(given.count == outShape.count && given.dtype == a.dtype, op,
                        "output \(given.shape) \(given.dtype) does not hold the result \(outShape) \(a.dtype)")
        }
        if k == 0 {  // an empty sum: the bias alone (or zeros), plus the residual
            var sum = try allocate(outShape, dtype: a.dtype)
            try fill(sum, with: 0)
            if let biasT { sum = try binary(.add, sum, biasT) }
            if gelu { sum = try unary(.geluTanh, sum) }
            if let c { sum = try binary(.add, sum, c) }
            if let given { try copyWhole(sum, into: given, op: op); return given }
            return sum
        }
        let out = try given ?? allocate(outShape, dtype: a.dtype)
        try gemm(a: try arg(a, op), b: try arg(bb, op), d: try arg(out, op), c: try c.map { try arg($0, op) }, bias: try biasT.map { try arg($0, op) },
                 m: m, n: n, k: k, transposeB: transposeB, batch: batch, strideA: strideA, strideB: strideB, strideD: strideD,
                 gelu: gelu, dtype: a.dtype)
        return out
    }
}

/// One GEMM problem as cuBLASLt's heuristic sees it.
struct GemmKey: Hashable {
    var m, n, k, batch: Int
    var transposeB, bias: Bool
    /// GELU in the epilogue: its own descriptor and its own timed algorithm choice.
    var gelu: Bool
    /// D = A x op(B) + C (beta = 1): its own timed algorithm choice.
    var accumulate = false
    /// FP8 E4M3 operands with per-row float32 scales (`dtype` is the output's).
    var fp8 = false
    /// FP8 with fast accumulation (`Tuning.fp8FastAccumulation`): a descriptor of its own.
    var fastAccumulation = false
    /// INT8 operands, int32 sums and int32 alpha and beta (CUBLAS_COMPUTE_32I; `dtype` is .int32).
    var int8 = false
    var dtype: DType
    var strides: [Int]
    var alignment: [Int]

    /// The bits of 1 in the scale type: float32, or int32 for INT8.
    var one: UInt32 { int8 ? 1 : Float(1).bitPattern }
}

extension CUDADevice {
    static let gemmWorkspaceBytes = 32 << 20
}

/// The cuBLASLt descriptors of one GEMM shape. cuBLASLt is column-major: a row-major X[r, c] is a
/// column-major X^T[c, r], so D^T[N, M] = op(B)^T[N, K] x A^T[K, M] is computed: cuBLAS's "A" is
/// our B and its "B" is our A.
final class GemmPlan {
    let key: GemmKey
    let lt: CuBLASLt
    var desc: CUhandle = nil, la: CUhandle = nil, lb: CUhandle = nil, ld: CUhandle = nil

    init(key: GemmKey) throws {
        self.key = key
        lt = try CUDALibraries.cublasLt()
        let dataType: Int32 = key.int8 ? CuBLASLt.dataI32 : key.dtype == .f32 ? CuBLASLt.dataF32
            : key.dtype == .f16 ? CuBLASLt.dataF16 : CuBLASLt.dataBF16
        let inputType = key.fp8 ? CuBLASLt.dataFP8E4M3 : key.int8 ? CuBLASLt.dataI8 : dataType
        // INT8: int32 compute and int32 alpha/beta (the only scale type cuBLASLt pairs with CUBLAS_COMPUTE_32I and
        // int32 D); the operands must be "TN" (transposeB: our weight [N, K] as cuBLAS's transposed A).
        try lt.check(lt.cublasLtMatmulDescCreate(&desc, key.int8 ? CuBLASLt.computeI32 : CuBLASLt.computeF32,
                                                 key.int8 ? CuBLASLt.dataI32 : CuBLASLt.dataF32), "cublasLtMatmulDescCreate")
        var opA: Int32 = key.transposeB ? CuBLASLt.opT : CuBLASLt.opN
        var opB: Int32 = CuBLASLt.opN
        try lt.check(lt.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descTransA, &opA, 4), "set TRANSA")
        try lt.check(lt.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descTransB, &opB, 4), "set TRANSB")
        let epilogue: Int32? = switch (key.bias, key.gelu) {
        case (false, false): nil
        case (true, false): CuBLASLt.epilogueBias
        case (false, true): CuBLASLt.epilogueGELU
        case (true, true): CuBLASLt.epilogueGELUBias
        }
        if var epi = epilogue {
            try lt.check(lt.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descEpilogue, &epi, 4), "set EPILOGUE")
        }
        if key.fp8 {
            var mode = CuBLASLt.scaleOuterVector
            try lt.check(lt.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descAScaleMode, &mode, 4), "set A_SCALE_MODE")
            try lt.check(lt.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descBScaleMode, &mode, 4), "set B_SCALE_MODE")
            if key.fastAccumulation {
                var fast: Int8 = 1
                try lt.check(lt.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descFastAccum, &fast, 1), "set FAST_ACCUM")
            }
        }
        if key.bias {
            var bt = dataType
            try lt.check(lt.cublasLtMatmulDescSetAttribute(desc, CuBLASLt.descBiasDataType, &bt, 4), "set BIAS_DATA_TYPE")
        }
        let (m, n, k, batch) = (key.m, key.n, key.k, key.batch)
        func layout(rows: Int, cols: Int, ld: Int, stride: Int, type: Int32) throws -> CUhandle {
            var l: CUhandle = nil
            try lt.check(lt.cublasLtMatrixLayoutCreate(&l, type, UInt64(rows), UInt64(cols), Int64(ld)), "cublasLtMatrixLayoutCreate")
            if batch > 1 {
                var count = Int32(batch), s = Int64(stride)
                try lt.check(lt.cublasLtMatrixLayoutSetAttribute(l, CuBLASLt.layoutBatchCount, &count, 4), "set BATCH_COUNT")
                try lt.check(lt.cublasLtMatrixLayoutSetAttribute(l, CuBLASLt.layoutStridedBatchOffset, &s, 8), "set STRIDED_BATCH_OFFSET")
            }
            return l
        }
        // Our B as cuBLAS's A: [N, K] row-major is column-major K x N (ld K); [K, N] is N x K (ld N).
        la = key.transposeB ? try layout(rows: k, cols: n, ld: k, stride: key.strides[1], type: inputType)
            : try layout(rows: n, cols: k, ld: n, stride: key.strides[1], type: inputType)
        lb = try layout(rows: k, cols: m, ld: k, stride: key.strides[0], type: inputType)
        ld = try layout(rows: n, cols: m, ld: n, stride: key.strides[2], type: dataType)
    }

    deinit {
        for l in [la, lb, ld] where l != nil { _ = lt.cublasLtMatrixLayoutDestroy(l) }
        if desc != nil { _ = lt.cublasLtMatmulDescDestroy(desc) }
    }
}
