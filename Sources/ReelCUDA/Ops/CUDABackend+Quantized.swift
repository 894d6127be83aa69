import Foundation
import ReelCore

// Quantized linear layers. Rows quantized by `quantize_rows` (Kernels/fused.cu) to FP8 E4M3 or INT8.
// FP8: GEMMs through cuBLASLt's FP8 tensor cores with one float32 scale per row of each operand (its
// "outer vector" scaling: per token of x, per output channel of the weight), float32 accumulation, and
// the bias, GELU and residual in the epilogue, as the bf16 GEMMs do. INT8: CUDABackend+INT8.swift.
extension CUDABackend {
    /// FP8 E4M3 needs compute capability 8.9 (Ada) or newer.
    func requireFP8(_ op: String) throws {
        let cc = cudaDevice.info.computeCapability
        try require(cc.major * 10 + cc.minor >= 89, op,
                    "FP8 E4M3 needs compute capability 8.9 or newer (--int8 runs from 8.0); \(cudaDevice.info.name) is "
                    + cudaDevice.info.arch)
    }

    /// INT8 tensor cores (IMMA) start at compute capability 7.5 (Turing), but Reel's kernels take bf16, which
    /// needs 8.0 (Ampere).
    func requireINT8(_ op: String) throws {
        let cc = cudaDevice.info.computeCapability
        try require(cc.major * 10 + cc.minor >= 80, op,
                    "INT8 linears need compute capability 8.0 or newer; \(cudaDevice.info.name) is \(cudaDevice.info.arch)")
    }

    /// FP8 E4M3 or INT8 (`RowQuantized.formats`), on a GPU that has it.
    func requireQuantized(_ format: DType, _ op: String) throws {
        try require(RowQuantized.formats.contains(format), op, "rows quantize to FP8 E4M3 or INT8, not \(format)")
        try format == .int8 ? requireINT8(op) : requireFP8(op)
    }

    /// The kernels' `fmt` argument (Q_FP8, Q_INT8 in Kernels/common.cuh).
    static func quantizedFormatCode(_ format: DType) -> Int32 { format == .int8 ? 1 : 0 }

    public func quantizeRows(_ x: Tensor, to format: DType) throws -> RowQuantized {
        let op = "quantizeRows"
        try require(x.dtype.isFloatingPoint && x.dtype != .fp8e4m3 && x.rank >= 1, op,
                    "expected float rows [..., K], got \(x.shape) \(x.dtype)")
        try requireQuantized(format, op)
        let k = x.shape.last, rows = k == 0 ? 0 : x.count / k
        let values = try allocate(x.shape, dtype: format), scales = try allocate([rows], dtype: .f32)
        let fmt = Self.quantizedFormatCode(format)
        if rows > 0 {
            let (px, pq, ps) = (try arg(x, op), try arg(values, op), try arg(scales, op))
            // 16-bit rows read once into registers: one row per block, 8 vectors of 8 per thread at most.
            let warps = (k / 8 + 255) / 256
            if (x.dtype == .bf16 || x.dtype == .f16) && k % 8 == 0 && warps <= 32 && px % 16 == 0 && pq % 8 == 0 {
                try launch("fused", "quantize_rows_v8", grid: (rows, 1, 1), block: (32 * warps, 1, 1)) { l in
                    l.add(px); l.add(pq); l.add(ps); l.add(Int64(rows)); l.add(Int32(k)); l.add(x.dtype.kernelCode); l.add(fmt)
                }
            } else {
                try launch("fused", "quantize_rows", grid: ((rows + 7) / 8, 1, 1), block: (256, 1, 1)) { l in
                    l.add(px); l.add(pq); l.add(ps); l.add(Int64(rows)); l.add(Int32(k)); l.add(x.dtype.kernelCode); l.add(fmt)
                }
            }
        }
        return try RowQuantized(values: values, scales: scales, sourceType: x.dtype)
    }

    /// `dequantize_rows_fp8` (Kernels/fused.cu): eight codes a thread where the rows and pointers allow.
    /// Decoding FP8 needs no sm_89 instruction (older GPUs take the kernel's bit arithmetic).
    public func dequantizeRows(_ q: RowQuantized, into out: Tensor) throws {
        let op = "dequantizeRows"
        try require(out.dtype.isFloatingPoint && out.dtype != .fp8e4m3 && out.count == q.values.count, op,
                    "output \(out.shape) \(out.dtype) does not hold the rows \(q.values.shape) as floats")
        if q.values.dtype == .int8 {
            // INT8 rows (not written by the KV cache, which stores FP8): the host arithmetic on the device.
            try copyWhole(try cast(try q.dequantized(), to: out.dtype), into: out, op: op)
            return
        }
        let n = out.count, k = q.columns
        if n == 0 { return }
        let (pq, ps, py) = (try arg(q.values, op), try arg(q.scales, op), try arg(out, op))
        if k % 8 == 0 && pq % 8 == 0 && py % 16 == 0 {
            try launch1D("fused", "dequantize_rows_fp8_v8", n: n / 8) { l in
                l.add(pq); l.add(ps); l.add(py); l.add(Int64(n / 8)); l.add(Int32(k)); l.add(out.dtype.kernelCode)
            }
        } else {
            try launch1D("fused", "dequantize_rows_fp8", n: n) { l in
                l.add(pq); l.add(ps); l.add(py); l.add(Int64(n)); l.add(Int32(k)); l.add(out.dtype.kernelCode)
            }
        }
    }

    /// FP8: cuBLASLt's FP8 GEMM when the operands suit it (bf16 or f16 output, K a multiple of 16 and N
    /// of 8: rows of 16-byte multiples); otherwise the dequantized float32 product (`dequantizedLinear`), the
    /// same arithmetic more slowly. INT8: `int8Linear`.
    public func quantizedLinear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool,
                                adding residual: Tensor?, into given: Tensor?) throws -> Tensor {
        let op = "quantizedLinear"
        let shape = try quantizedLinearShape(x, weight: weight, bias: bias, adding: residual, into: given)
        if weight.values.dtype == .int8 {
            return try int8Linear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: given, shape: shape)
        }
        try requireFP8(op)
        let dtype = x.sourceType, (m, n, k) = (x.rows, weight.rows, x.columns)
        let (pa, pb) = (try arg(x.values, op), try arg(weight.values, op))
        let suits = (dtype == .bf16 || dtype == .f16) && k % 16 == 0 && n % 8 == 0 && Self.aligned(pa, pb)
            && (!gelu || geluEpilogue)
        guard suits else {
            return try dequantizedLinear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: given)
        }
        let out = try given ?? allocate(shape, dtype: dtype)
        if m == 0 || n == 0 { return out }
        let biasT = try bias.map { $0.dtype == dtype ? $0 : try cast($0, to: dtype) }
        let c = try residual.map { $0.dtype == dtype ? $0 : try cast($0, to: dtype) }
        try gemm(a: pa, b: pb, d: try arg(out, op), c: try c.map { try arg($0, op) }, bias: try biasT.map { try arg($0, op) },
                 m: m, n: n, k: k, transposeB: true, gelu: gelu, dtype: dtype,
                 rowScales: (try arg(x.scales, op), try arg(weight.scales, op)))
        return out
    }
}
