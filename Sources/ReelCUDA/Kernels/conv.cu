// im2col for channel-last 3D convolution: each output position becomes one row of
// kt*kh*kw*Cin elements in the weight's (kt, kh, kw, Cin) order, zeros where the window reads
// padding. The convolution is then one tensor-core GEMM through cuBLASLt; rows are produced in
// chunks so the column buffer stays bounded for the VAE's large frames.
#include "common.cuh"

struct ConvGeom {
    i64 T, H, W, C;          // input extents (per sample)
    i64 To, Ho, Wo;          // output extents
    int kt, kh, kw;
    int st, sh, sw;
    int pt, ph, pw;          // padding before each axis
};

__device__ __forceinline__ void move2(const void* src, i64 s, void* dst, i64 d, int esize, bool zero) {
    if (esize == 2) ((u16*)dst)[d] = zero ? (u16)0 : ((const u16*)src)[s];
    else ((u32*)dst)[d] = zero ? 0u : ((const u32*)src)[s];
}

// col [rows, K] for output rows rowStart ..< rowStart + rows (row = ((n*To + t)*Ho + y)*Wo + x).
extern "C" __global__ void im2col3d(const void* x, void* col, ConvGeom g, i64 rowStart, i64 rows, int esize) {
    i64 K = (i64)g.kt * g.kh * g.kw * g.C;
    i64 n = rows * K;
    GRID_STRIDE(i, n) {
        i64 r = rowStart + i / K, k = i % K;
        i64 ci = k % g.C; i64 kk = k / g.C;
        int b = (int)(kk % g.kw); kk /= g.kw;
        int a = (int)(kk % g.kh); int d = (int)(kk / g.kh);
        i64 xo = r % g.Wo; i64 q = r / g.Wo;
        i64 yo = q % g.Ho; q /= g.Ho;
        i64 to = q % g.To; i64 s = q / g.To;
        i64 ti = to * g.st - g.pt + d, yi = yo * g.sh - g.ph + a, xi = xo * g.sw - g.pw + b;
        bool pad = ti < 0 || ti >= g.T || yi < 0 || yi >= g.H || xi < 0 || xi >= g.W;
        i64 src = pad ? 0 : (((s * g.T + ti) * g.H + yi) * g.W + xi) * g.C + ci;
        move2(x, src, col, i, esize, pad);
    }
}

// The same with 16 bytes per thread (8 bf16/f16 or 4 f32 channels), when Cin * esize is a multiple
// of 16: one index computation and one vector load/store per 16 bytes instead of per element.
extern "C" __global__ void im2col3d_v16(const void* x, void* col, ConvGeom g, i64 rowStart, i64 rows, int esize) {
    const int per = 16 / esize;
    i64 K = (i64)g.kt * g.kh * g.kw * g.C, Kv = K / per;
    i64 n = rows * Kv;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    GRID_STRIDE(i, n) {
        i64 r = rowStart + i / Kv, k = (i % Kv) * per;
        i64 ci = k % g.C; i64 kk = k / g.C;
        int b = (int)(kk % g.kw); kk /= g.kw;
        int a = (int)(kk % g.kh); int d = (int)(kk / g.kh);
        i64 xo = r % g.Wo; i64 q = r / g.Wo;
        i64 yo = q % g.Ho; q /= g.Ho;
        i64 to = q % g.To; i64 s = q / g.To;
        i64 ti = to * g.st - g.pt + d, yi = yo * g.sh - g.ph + a, xi = xo * g.sw - g.pw + b;
        bool pad = ti < 0 || ti >= g.T || yi < 0 || yi >= g.H || xi < 0 || xi >= g.W;
        uint4 v = zero;
        if (!pad) v = *(const uint4*)((const char*)x + ((((s * g.T + ti) * g.H + yi) * g.W + xi) * g.C + ci) * esize);
        ((uint4*)col)[i] = v;
    }
}
