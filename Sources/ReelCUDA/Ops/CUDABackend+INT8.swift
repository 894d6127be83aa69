import Foundation
import ReelCore

// INT8 linear layers (W8A8, for GPUs without FP8: Ampere, compute capability 8.0 and up). Rows quantized by
// `quantize_rows` (Kernels/fused.cu) to symmetric INT8, one float32 scale per row (per token of x,
// per output channel of the weight). cuBLASLt's int8 GEMM (CUBLAS_COMPUTE_32I) sums the codes'
// products exactly in int32; cuBLASLt has no per-row scales or bias epilogue for int32 outputs, so
// one kernel (Kernels/int8.cu) scales the sums by both rows' scales and adds the bias, GELU and
// residual on the way to the 16-bit output.
extension CUDABackend {
    /// cuBLASLt's int8 GEMM then `int8_linear_epilogue` when the operands suit it; otherwise the
    /// dequantized float32 product (`dequantizedLinear`: the same up to float32's rounding of the sums).
    /// cuBLASLt's int8 kernels take the "TN" form (our weight [N, K] transposed, x [M, K] as is), which
    /// Reel's layout already is, with 4-byte aligned pointers and leading dimensions (K, and N for the
    /// int32 output) multiples of 4; K a multiple of 16 and 16-byte aligned operands here give its
    /// tensor-core kernels full vectors.
    func int8Linear(_ x: RowQuantized, weight: RowQuantized, bias: Tensor?, gelu: Bool, adding residual: Tensor?,
                    into given: Tensor?, shape: Shape) throws -> Tensor {
        let op = "quantizedLinear"
        try requireINT8(op)
        let dtype = x.sourceType, (m, n, k) = (x.rows, weight.rows, x.columns)
        let (pa, pb) = (try arg(x.values, op), try arg(weight.values, op))
        let suits = (dtype == .bf16 || dtype == .f16 || dtype == .f32) && k % 16 == 0 && k > 0 && n % 4 == 0
            && Self.aligned(pa, pb)
        guard suits else {
            return try dequantizedLinear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: given)
        }
        let out = try given ?? allocate(shape, dtype: dtype)
        if m == 0 || n == 0 { return out }
        let sums = try allocate([m, n], dtype: .int32)  // [M, N] exact int32 sums
        do {
            try gemm(a: pa, b: pb, d: try arg(sums, op), bias: nil, m: m, n: n, k: k, transposeB: true, dtype: .int32, int8: true)
        } catch ReelError.unsupported {  // no int8 algorithm for this shape in this cuBLASLt
            return try dequantizedLinear(x, weight: weight, bias: bias, gelu: gelu, adding: residual, into: given)
        }
        let (ps, pxs, pws, pbias, pres, po) = (try arg(sums, op), try arg(x.scales, op), try arg(weight.scales, op),
                                               try arg(bias, op), try arg(residual, op), try arg(out, op))
        try launch1D("int8", "int8_linear_epilogue", n: m * n / 4, detail: "\(m)x\(n)" + (gelu ? " +gelu" : "")) { l in
            l.add(ps); l.add(pxs); l.add(pws); l.add(pbias); l.add(pres); l.add(po)
            l.add(Int64(m)); l.add(Int32(n)); l.add(Int32(gelu ? 1 : 0))
            l.add(bias?.dtype.kernelCode ?? DType.f32.kernelCode); l.add(residual?.dtype.kernelCode ?? DType.f32.kernelCode)
            l.add(dtype.kernelCode)
        }
        return out
    }
}
