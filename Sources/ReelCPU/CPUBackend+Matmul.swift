import Foundation
import ReelCore

extension CPUBackend {
    public func matmul(_ a: Tensor, _ b: Tensor, transposeB: Bool, bias: Tensor?) throws -> Tensor {
        let op = "matmul"
        try requireFloat(a, op); try requireFloat(b, op)
        try require(a.dtype != .fp8e4m3 && b.dtype != .fp8e4m3, op,
                    "FP8 operands come with per-row scales: use quantizeRows and quantizedLinear")
        try require(a.rank >= 2, op, "a must be [..., M, K], got \(a.shape)")
        let m = a.shape[-2], k = a.shape[-1]
        let batched = b.rank == 3
        try require(b.rank == 2 || b.rank == 3, op, "b must be [K, N], [N, K] or [batch, ., .], got \(b.shape)")
        let kb = transposeB ? b.shape[-1] : b.shape[-2]
        let n = transposeB ? b.shape[-2] : b.shape[-1]
        try require(kb == k, op, "inner dimensions differ: a \(a.shape), b \(b.shape)\(transposeB ? " (transposed)" : "")")
        let batch: Int
        if batched {
            try require(a.rank == 3 && a.shape[0] == b.shape[0], op, "batched b \(b.shape) needs a [\(b.shape[0]), M, K], got \(a.shape)")
            batch = a.shape[0]
        } else {
            batch = 1
        }
        if let bias {
            try requireFloat(bias, op)
            try require(bias.count == n, op, "bias \(bias.shape) does not match N = \(n)")
        }
        // Without a batched b, every leading axis of a folds into M.
        let rows = batched ? batch * m : a.shape.dims.dropLast().reduce(1, *)
        let outShape = a.shape.replacing(axis: -1, with: n)
        let ain = try floats(a, op), bin = try floats(b, op)
        let biasIn = try bias.map { try floats($0, op) }
        return try makeOutput(outShape, a.dtype) { out in
            if let biasIn {
                let bp = biasIn.pointer
                parallelFor(rows, grain: 64) { r in
                    for i in r { (out + i * n).update(from: bp, count: n) }
                }
            }
            let beta: Float = biasIn == nil ? 0 : 1
            for g in 0..<batch {
                try sgemm(transB: transposeB, m: batched ? m : rows, n: n, k: k, alpha: 1,
                          a: ain.pointer + g * m * k, lda: k, b: bin.pointer + g * n * k, ldb: transposeB ? k : n,
                          beta: beta, c: out + g * m * n, ldc: n)
            }
        }
    }

    /// Row-major single-precision GEMM through the configured path (`gemmPath`).
    public func sgemm(transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) throws {
        switch gemmPath {
        case .own:
            SGEMM.run(transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                      beta: beta, c: c, ldc: ldc, backend: self)
        case .blas:
            guard let blas = BLAS.shared else {
                throw ReelError.library(name: "BLAS", message: "no CBLAS library found; install OpenBLAS (libopenblas0) or set REEL_BLAS to a libcblas path")
            }
            try blas.sgemm(transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                           beta: beta, c: c, ldc: ldc, threads: threads)
        case .auto:
            if resolvedGEMMPath == .blas, let blas = BLAS.shared {
                try blas.sgemm(transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                               beta: beta, c: c, ldc: ldc, threads: threads)
            } else {
                SGEMM.run(transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                          beta: beta, c: c, ldc: ldc, backend: self)
            }
        }
    }
}
