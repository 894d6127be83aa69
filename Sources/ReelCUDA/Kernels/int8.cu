// The INT8 linear's epilogue (CUDABackend.int8Linear): cuBLASLt's int8 GEMM writes the exact int32
// sums of the codes' products, acc [M, N]; this turns them into the layer's output in one pass:
//   y = acc * sx[row] * sw[col] (float32, in that order) + bias[col], tanh GELU, + residual[row, col]
// rounded once to y's dtype: the arithmetic of Backend.integerLinear (the CPU's), so the GEMM's
// results match the CPU's bit for bit before the bias. The products are __fmul_rn and the sums
// __fadd_rn: no FMA contraction, which the CPU's separate ops do not have either.
#include "common.cuh"

// PyTorch's approximate="tanh" (as elementwise.cu's U_GELU_TANH).
__device__ __forceinline__ float gelu_tanh(float x) {
    return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// N a multiple of 4, acc 16-byte aligned: each thread takes 4 neighbouring sums (one 16-byte load)
// in a grid-stride loop. bias and residual may be null; any float dtype each.
extern "C" __global__ void __launch_bounds__(256) int8_linear_epilogue(
    const int* __restrict__ acc, const float* __restrict__ sx, const float* __restrict__ sw,
    const void* __restrict__ bias, const void* __restrict__ residual, void* __restrict__ y,
    i64 M, int N, int gelu, int dtb, int dtr, int dty) {
    const i64 n4 = N / 4, total = M * n4;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        const i64 row = i / n4;
        const int c0 = (int)(i - row * n4) * 4;
        const int4 a = ((const int4*)acc)[i];
        const int av[4] = {a.x, a.y, a.z, a.w};
        const float s = sx[row];
        #pragma unroll
        for (int e = 0; e < 4; e++) {
            const int c = c0 + e;
            float v = __fmul_rn(__fmul_rn((float)av[e], s), sw[c]);
            if (bias) v = __fadd_rn(v, load_f(bias, c, dtb));
            if (gelu) v = gelu_tanh(v);
            if (residual) v = __fadd_rn(v, load_f(residual, row * N + c, dtr));
            store_f(y, row * N + c, dty, v);
        }
    }
}
