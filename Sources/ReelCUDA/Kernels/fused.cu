// The DiT block's fused kernels (WanDiT.blockForward): adaLN (LayerNorm without affine, then the
// per-frame modulation), the gated residual, and the q/k RMSNorm followed by 3D RoPE. Each is one
// pass over the activations where the composed ops take two or three, each with a temporary.
// One warp per token row, as in norm.cu: the row's frame (which modulation vector it takes) and
// its position (which RoPE angles) are computed once per warp instead of per element.
// Pointers are __restrict__: outputs are fresh allocations, so loads of the next vectors may be
// issued before the stores of the previous ones.
#include "common.cuh"

// ---- adaLN: y = LayerNorm(x) * (1 + scale[g]) + shift[g], x [G, R, C] as rows of C, g = row / R
// (the latent frame). scale and shift are [G, 1, C] (stride C) or [1, 1, C] (stride 0), each on its
// own. Statistics in float32, two passes (mean, then centred squares) as LayerNorm does.

// Rows of C a multiple of 8, 16-byte aligned, held by a row group of S threads (RowVec8: a warp for 256 <= C <= 2048,
// the `_wide` kernels a block of 128 threads a row for C <= 8192): the row is read once into registers and written
// once. `ModulatedRow` is the group's row: its statistics, then vector i of the output on demand (scale and shift
// read from L1).
template <int S>
struct ModulatedRow {
    RowVec8<S> r;
    const void* scale;
    const void* shift;
    i64 sc8, sh8;
    int dtsc, dtsh;
    float mean, rstd;

    __device__ __forceinline__ ModulatedRow(const void* x, const void* scale_, const void* shift_, i64 row, int R, int C,
                                            i64 scaleStride, i64 shiftStride, float eps, int lane, int dtx, int dtsc_, int dtsh_)
        : r(x, row * (C / 8), C / 8, lane, dtx), scale(scale_), shift(shift_), dtsc(dtsc_), dtsh(dtsh_) {
        // The modulation vectors of this row's frame, in units of 8 elements (C % 8 == 0).
        const i64 g = row / R;
        sc8 = g * scaleStride / 8; sh8 = g * shiftStride / 8;
        mean = group_sum<S>(r.sum(false)) / C;
        rstd = rsqrtf(group_sum<S>(r.sum(true, mean)) / C + eps);
    }
    __device__ __forceinline__ bool has(int i) const { return r.has(i); }
    __device__ __forceinline__ i64 index(int i) const { return r.base8 + r.vec(i); }
    // Output vector i (has(i)) as 8 floats.
    __device__ __forceinline__ void get(int i, float* o) const {
        int vi = r.vec(i);
        float v[8], sc[8], sh[8];
        r.get(i, v);
        load8(scale, sc8 + vi, dtsc, sc);
        load8(shift, sh8 + vi, dtsh, sh);
        #pragma unroll
        for (int e = 0; e < 8; e++) o[e] = (v[e] - mean) * rstd * (1.f + sc[e]) + sh[e];
    }
};

template <int S>
__device__ __forceinline__ void mod_layer_norm_row(const void* x, const void* scale, const void* shift, void* y, i64 row, int lane,
                                                   int R, int C, i64 scaleStride, i64 shiftStride, float eps,
                                                   int dtx, int dtsc, int dtsh, int dty) {
    ModulatedRow<S> m(x, scale, shift, row, R, C, scaleStride, shiftStride, eps, lane, dtx, dtsc, dtsh);
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        if (m.has(i)) {
            float o[8];
            m.get(i, o);
            store8(y, m.index(i), dty, o);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) mod_layer_norm_v8(
    const void* __restrict__ x, const void* __restrict__ scale, const void* __restrict__ shift, void* __restrict__ y,
    i64 rows, int R, int C, i64 scaleStride, i64 shiftStride, float eps, int dtx, int dtsc, int dtsh, int dty) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    mod_layer_norm_row<32>(x, scale, shift, y, row, threadIdx.x & 31, R, C, scaleStride, shiftStride, eps, dtx, dtsc, dtsh, dty);
}

// 128 threads; grid: one block a row.
extern "C" __global__ void __launch_bounds__(128) mod_layer_norm_wide_v8(
    const void* __restrict__ x, const void* __restrict__ scale, const void* __restrict__ shift, void* __restrict__ y,
    i64 rows, int R, int C, i64 scaleStride, i64 shiftStride, float eps, int dtx, int dtsc, int dtsh, int dty) {
    mod_layer_norm_row<128>(x, scale, shift, y, blockIdx.x, threadIdx.x, R, C, scaleStride, shiftStride, eps, dtx, dtsc, dtsh, dty);
}

// mod_layer_norm_v8 with its rows quantized for an FP8 or INT8 GEMM: each output value rounded to
// `dtr` (the dtype the plain op writes), then the row's max |value| gives the scale and the values go
// out as `fmt` codes (quantize_rows's arithmetic), so the codes and scales are those of the two
// ops in turn, without the 16-bit rows written and read back. The modulated row is computed twice
// (for the max, then for the codes): the row stays in registers, scale and shift come from L1.
__device__ __forceinline__ float round_to(int dt, float v) {
    return dt == DT_BF16 ? bf16_to_f32(f32_to_bf16(v)) : dt == DT_F16 ? f16_to_f32(f32_to_f16(v)) : v;
}
template <int S>
__device__ __forceinline__ void mod_layer_norm_quantized_row(
    const void* x, const void* scale, const void* shift, unsigned char* q, float* qscales, i64 row, int lane,
    int R, int C, i64 scaleStride, i64 shiftStride, float eps, int dtx, int dtsc, int dtsh, int dtr, int fmt) {
    ModulatedRow<S> m(x, scale, shift, row, R, C, scaleStride, shiftStride, eps, lane, dtx, dtsc, dtsh);
    float amax = 0.f;
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        if (m.has(i)) {
            float o[8];
            m.get(i, o);
            #pragma unroll
            for (int e = 0; e < 8; e++) amax = fmaxf(amax, fabsf(round_to(dtr, o[e])));
        }
    }
    amax = group_max<S>(amax);
    const float qm = q_max(fmt), inv = amax > 0.f ? qm / amax : 1.f;
    if (lane == 0) qscales[row] = amax > 0.f ? amax / qm : 1.f;
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        if (m.has(i)) {
            float o[8];
            m.get(i, o);
            #pragma unroll
            for (int e = 0; e < 8; e++) o[e] = round_to(dtr, o[e]);
            ((uint2*)q)[m.index(i)] = q8x8(o, inv, fmt);
        }
    }
}

extern "C" __global__ void __launch_bounds__(128) mod_layer_norm_quantized_v8(
    const void* __restrict__ x, const void* __restrict__ scale, const void* __restrict__ shift,
    unsigned char* __restrict__ q, float* __restrict__ qscales,
    i64 rows, int R, int C, i64 scaleStride, i64 shiftStride, float eps, int dtx, int dtsc, int dtsh, int dtr, int fmt) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    mod_layer_norm_quantized_row<32>(x, scale, shift, q, qscales, row, threadIdx.x & 31, R, C, scaleStride, shiftStride, eps,
                                     dtx, dtsc, dtsh, dtr, fmt);
}

// 128 threads; grid: one block a row.
extern "C" __global__ void __launch_bounds__(128) mod_layer_norm_quantized_wide_v8(
    const void* __restrict__ x, const void* __restrict__ scale, const void* __restrict__ shift,
    unsigned char* __restrict__ q, float* __restrict__ qscales,
    i64 rows, int R, int C, i64 scaleStride, i64 shiftStride, float eps, int dtx, int dtsc, int dtsh, int dtr, int fmt) {
    mod_layer_norm_quantized_row<128>(x, scale, shift, q, qscales, blockIdx.x, threadIdx.x, R, C, scaleStride, shiftStride, eps,
                                      dtx, dtsc, dtsh, dtr, fmt);
}

// Any C and alignment: three passes over the row (the second and third hit L1).
extern "C" __global__ void __launch_bounds__(256) mod_layer_norm(
    const void* __restrict__ x, const void* __restrict__ scale, const void* __restrict__ shift, void* __restrict__ y,
    i64 rows, int R, int C, i64 scaleStride, i64 shiftStride, float eps, int dtx, int dtsc, int dtsh, int dty) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const i64 base = row * C, g = row / R;
    const i64 so = g * scaleStride, ho = g * shiftStride;
    float s = 0.f;
    for (int c = lane; c < C; c += 32) s += load_f(x, base + c, dtx);
    float mean = warp_sum(s) / C;
    float ss = 0.f;
    for (int c = lane; c < C; c += 32) { float d = load_f(x, base + c, dtx) - mean; ss += d * d; }
    float inv = rsqrtf(warp_sum(ss) / C + eps);
    for (int c = lane; c < C; c += 32) {
        float v = (load_f(x, base + c, dtx) - mean) * inv;
        store_f(y, base + c, dty, v * (1.f + load_f(scale, so + c, dtsc)) + load_f(shift, ho + c, dtsh));
    }
}

// ---- Gated residual: out = x + y * gate[g], x and y [G, R, C], gate [G, 1, C] (stride C) or
// [1, 1, C] (stride 0), g = row / R.

// C a multiple of 8, 16-byte aligned. Chunks of 8 vectors per lane: all of a chunk's loads are
// issued before its stores.
extern "C" __global__ void __launch_bounds__(256) gated_residual_v8(
    const void* __restrict__ x, const void* __restrict__ y, const void* __restrict__ gate, void* __restrict__ out,
    i64 rows, int R, int C, i64 gateStride, int dtx, int dty, int dtg, int dto) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int nv = C / 8;
    const i64 base8 = row * nv, g8 = (row / R) * gateStride / 8;
    for (int v0 = 0; v0 < nv; v0 += 256) {
        #pragma unroll
        for (int i = 0; i < 8; i++) {
            int vi = v0 + lane + 32 * i;
            if (vi < nv) {
                float a[8], b[8], w[8];
                load8(x, base8 + vi, dtx, a);
                load8(y, base8 + vi, dty, b);
                load8(gate, g8 + vi, dtg, w);
                #pragma unroll
                for (int e = 0; e < 8; e++) a[e] += b[e] * w[e];
                store8(out, base8 + vi, dto, a);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) gated_residual(
    const void* __restrict__ x, const void* __restrict__ y, const void* __restrict__ gate, void* __restrict__ out,
    i64 rows, int R, int C, i64 gateStride, int dtx, int dty, int dtg, int dto) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const i64 base = row * C, go = (row / R) * gateStride;
    for (int c = lane; c < C; c += 32)
        store_f(out, base + c, dto, load_f(x, base + c, dtx) + load_f(y, base + c, dty) * load_f(gate, go + c, dtg));
}

// ---- q/k RMSNorm over the whole token row (all H heads, as Wan's norm_q / norm_k), times the
// weight, then Wan's 3D RoPE on each head (rope.cu: pair j of a head is rotated by
// pos * theta^(-2jj / (2 part)), angles in float64 from absolute positions). x [B, L, H, D] as rows
// of C = H * D, row = b * L + token.
// Rows of C <= 2048 in registers, C and D multiples of 8 with 256 % D == 0: lane `lane` then holds
// the vectors starting at 8 * (lane + 32 i), whose offset within their head is (8 * lane) % D for
// every i, so the lane's 4 pairs and their 4 float64 angles serve all of its vectors.
// The angles' cosines and sines as a table `rope_table_v1` writes once per grid (frame offset
// included) and every q/k of that grid's passes reads: (cos, sin) in float64 for the time part
// [frames x pt] (positions frameOffset + f), then the height part [gridH x ph], then the width part
// [gridW x pw], each computed exactly as rope.cu computes them (the same float64 pow and sincos), so
// the table changes no result. Without it every lane of every call took 4 float64 pows and sincos.
extern "C" __global__ void rope_table_v1(double2* __restrict__ table, int frames, int gridH, int gridW, i64 frameOffset,
                                         double theta, int pt, int ph, int pw) {
    const int nt = frames * pt, nh = gridH * ph, n = nt + nh + gridW * pw;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    i64 pos;
    int jj, part;
    if (i < nt) { pos = frameOffset + i / pt; jj = i % pt; part = pt; }
    else if (i < nt + nh) { pos = (i - nt) / ph; jj = (i - nt) % ph; part = ph; }
    else { pos = (i - nt - nh) / pw; jj = (i - nt - nh) % pw; part = pw; }
    double freq = 1.0 / pow(theta, (double)(2 * jj) / (double)(2 * part));
    double sn, cs;
    sincos((double)pos * freq, &sn, &cs);
    table[i] = make_double2(cs, sn);
}

// The row's RMSNorm then RoPE, held by a row group of S threads (rms_norm_rope_v8: a warp a row, C <= 2048;
// rms_norm_rope_wide_v8: a block of 128 threads a row, C <= 8192). Thread t's vectors t + S i start at element
// 8 t + 8 S i, the same offset in a head for every i (D divides 256), so it rotates the same 4 pairs in each.
template <int S>
__device__ __forceinline__ void rms_norm_rope_row(
    const void* x, const void* w, void* y, i64 row, int lane, int L, int C, int D, int gridH, int gridW,
    const double2* table, int frames, int pt, int ph, int pw, float eps, int dtx, int dtw, int dty) {
    const int nv = C / 8;
    const i64 base8 = row * nv;
    RowVec8<S> r(x, base8, nv, lane, dtx);
    float inv = rsqrtf(group_sum<S>(r.sum(true)) / C + eps);

    // This thread's 4 pairs j0 .. j0+3 of a head, and the token's (frame, row, column).
    const i64 token = row % L;
    const i64 f = token / ((i64)gridH * gridW), hw = token % ((i64)gridH * gridW);
    const int j0 = ((8 * lane) % D) / 2;
    double cs[4], sn[4];
    #pragma unroll
    for (int p = 0; p < 4; p++) {
        int j = j0 + p;
        i64 at;
        if (j < pt) at = f * pt + j;
        else if (j < pt + ph) at = (i64)frames * pt + (hw / gridW) * ph + (j - pt);
        else at = (i64)frames * pt + (i64)gridH * ph + (hw % gridW) * pw + (j - pt - ph);
        double2 e = table[at];
        cs[p] = e.x; sn[p] = e.y;
    }
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        int vi = r.vec(i);
        if (vi < nv) {
            float v[8], wv[8], o[8];
            r.get(i, v);
            if (w) load8(w, vi, dtw, wv);
            #pragma unroll
            for (int p = 0; p < 4; p++) {
                // The normalized value in float32 (as rmsNorm computes it), rotated in float64 (as rope3d).
                float a = v[2 * p] * inv, b = v[2 * p + 1] * inv;
                if (w) { a *= wv[2 * p]; b *= wv[2 * p + 1]; }
                o[2 * p] = (float)((double)a * cs[p] - (double)b * sn[p]);
                o[2 * p + 1] = (float)((double)a * sn[p] + (double)b * cs[p]);
            }
            store8(y, base8 + vi, dty, o);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) rms_norm_rope_v8(
    const void* __restrict__ x, const void* __restrict__ w, void* __restrict__ y, i64 rows, int L, int C, int D,
    int gridH, int gridW, const double2* __restrict__ table, int frames, int pt, int ph, int pw, float eps,
    int dtx, int dtw, int dty) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    rms_norm_rope_row<32>(x, w, y, row, threadIdx.x & 31, L, C, D, gridH, gridW, table, frames, pt, ph, pw, eps, dtx, dtw, dty);
}

// 128 threads; grid: one block a row.
extern "C" __global__ void __launch_bounds__(128) rms_norm_rope_wide_v8(
    const void* __restrict__ x, const void* __restrict__ w, void* __restrict__ y, i64 rows, int L, int C, int D,
    int gridH, int gridW, const double2* __restrict__ table, int frames, int pt, int ph, int pw, float eps,
    int dtx, int dtw, int dty) {
    rms_norm_rope_row<128>(x, w, y, blockIdx.x, threadIdx.x, L, C, D, gridH, gridW, table, frames, pt, ph, pw, eps, dtx, dtw, dty);
}

// Rows of x [rows, K] as 8-bit codes with a float32 scale each (Backend.quantizeRows), `fmt` FP8 E4M3
// (Q = 448) or INT8 (Q = 127): scale = max|row| / Q (1 for a row of zeros), q = x * (Q / max|row|)
// rounded to nearest even and saturated (FP8) or clamped to [-127, 127] (INT8), as the host does.

// Any K and alignment: one warp per row, the row read twice (the second time from L1/L2).
extern "C" __global__ void __launch_bounds__(256) quantize_rows(
    const void* __restrict__ x, unsigned char* __restrict__ q, float* __restrict__ scales, i64 rows, int K, int dtx, int fmt) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    float amax = 0.f;
    for (int i = lane; i < K; i += 32) amax = fmaxf(amax, fabsf(load_f(x, row * K + i, dtx)));
    amax = warp_max(amax);
    const float qm = q_max(fmt), inv = amax > 0.f ? qm / amax : 1.f;
    if (lane == 0) scales[row] = amax > 0.f ? amax / qm : 1.f;
    for (int i = lane; i < K; i += 32) q[row * K + i] = f32_to_q8(load_f(x, row * K + i, dtx) * inv, fmt);
}

// 16-bit rows, K a multiple of 8 and at most 8 x 8 x blockDim.x, 16-byte aligned (8-byte for q):
// one row per block, each thread holding up to 8 packed vectors (all loads issued first), so the
// row is read from memory once. The block's warps meet in shared memory for the row's maximum.
extern "C" __global__ void __launch_bounds__(1024) quantize_rows_v8(
    const void* __restrict__ x, unsigned char* __restrict__ q, float* __restrict__ scales, i64 rows, int K, int dtx, int fmt) {
    __shared__ float warpMax[32];
    const i64 row = blockIdx.x;
    const int t = threadIdx.x, T = blockDim.x, nv = K / 8;
    const i64 base8 = row * nv;
    uint4 raw[8];
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        int vi = t + T * i;
        raw[i] = vi < nv ? __ldg((const uint4*)x + base8 + vi) : make_uint4(0, 0, 0, 0);
    }
    float amax = 0.f;
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        float v[8];
        unpack8(raw[i], dtx, v);
        #pragma unroll
        for (int e = 0; e < 8; e++) amax = fmaxf(amax, fabsf(v[e]));
    }
    amax = warp_max(amax);
    if ((t & 31) == 0) warpMax[t / 32] = amax;
    __syncthreads();
    amax = 0.f;
    for (int w = 0; w < T / 32; w++) amax = fmaxf(amax, warpMax[w]);
    const float qm = q_max(fmt), inv = amax > 0.f ? qm / amax : 1.f;
    if (t == 0) scales[row] = amax > 0.f ? amax / qm : 1.f;
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        int vi = t + T * i;
        if (vi < nv) {
            float v[8];
            unpack8(raw[i], dtx, v);
            ((uint2*)q)[base8 + vi] = q8x8(v, inv, fmt);
        }
    }
}

// FP8 rows back to floats (Backend.dequantizeRows; the FP8 KV cache read into the model's dtype right
// before attention): y = code * scale[row] in float32, rounded once to y's dtype, as the host does.
// Memory-bound (1 byte in, 2 out a value): the scale is a broadcast read that stays in L1.

// Any K and alignment: one value per thread.
extern "C" __global__ void dequantize_rows_fp8(const unsigned char* __restrict__ q, const float* __restrict__ scales,
                                               void* __restrict__ y, i64 n, int K, int dty) {
    GRID_STRIDE(i, n) store_f(y, i, dty, fp8_to_f32(q[i]) * scales[i / K]);
}

// K a multiple of 8, q 8-byte and y 16-byte aligned: 8 codes (one 8-byte load, all in one row) a thread,
// stored as one 16-byte vector (32 bytes for f32).
extern "C" __global__ void dequantize_rows_fp8_v8(const unsigned char* __restrict__ q, const float* __restrict__ scales,
                                                  void* __restrict__ y, i64 n8, int K, int dty) {
    GRID_STRIDE(j, n8) {
        const uint2 raw = __ldg((const uint2*)q + j);
        const float s = __ldg(scales + (j * 8) / K);
        const u32 w[2] = {raw.x, raw.y};
        float v[8];
        #pragma unroll
        for (int e = 0; e < 8; e++) v[e] = fp8_to_f32((unsigned char)((w[e / 4] >> (8 * (e % 4))) & 0xFF)) * s;
        store8(y, j, dty, v);
    }
}
