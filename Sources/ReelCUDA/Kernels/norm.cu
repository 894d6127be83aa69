// Row normalizations over the last axis: LayerNorm, RMSNorm and the Wan VAE's channel L2 norm.
// One warp per row: rows are short (96 .. 5120) and many, so a warp-wide reduction with shuffles
// beats a block-wide one, and the row stays in L1 between the passes.
#include "common.cuh"

#define N_LAYER 0
#define N_RMS 1
#define N_L2 2

extern "C" __global__ void row_norm(const void* x, const void* w, const void* b, void* y, i64 rows, int C,
                                    float eps, float scale, int mode, int dtx, int dtw, int dtb, int dty) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    i64 base = row * C;
    float mean = 0.f;
    if (mode == N_LAYER) {
        float s = 0.f;
        for (int c = lane; c < C; c += 32) s += load_f(x, base + c, dtx);
        mean = warp_sum(s) / C;
    }
    // Second pass on centred values: no catastrophic cancellation of E[x^2] - E[x]^2.
    float ss = 0.f;
    for (int c = lane; c < C; c += 32) { float v = load_f(x, base + c, dtx) - mean; ss += v * v; }
    ss = warp_sum(ss);
    float inv;
    if (mode == N_LAYER) inv = rsqrtf(ss / C + eps);
    else if (mode == N_RMS) inv = rsqrtf(ss / C + eps);
    else inv = scale / fmaxf(sqrtf(ss), eps);
    for (int c = lane; c < C; c += 32) {
        float v = (load_f(x, base + c, dtx) - mean) * inv;
        if (w) v *= load_f(w, c, dtw);
        if (b) v += load_f(b, c, dtb);
        store_f(y, base + c, dty, v);
    }
}

// Rows of C a multiple of 8, 16-byte aligned, held by a row group of S threads (RowVec8): a warp for C <= 2048
// (row_norm_v8, a warp a row), a block of 128 threads for C <= 8192 (row_norm_wide_v8, a block a row: the 14B's
// 5120, the 5B's 3072). The row is read once into registers and written once, instead of three passes over memory.
// act = 1 applies SiLU to the result (the Wan VAE's 384-channel norms, which all feed one).
template <int S>
__device__ __forceinline__ void row_norm_row(const void* x, const void* w, const void* b, void* y, i64 row, int lane, int C,
                                             float eps, float scale, int mode, int act, int dtx, int dtw, int dtb, int dty) {
    const int nv = C / 8;
    const i64 base8 = row * nv;
    RowVec8<S> r(x, base8, nv, lane, dtx);
    float mean = mode == N_LAYER ? group_sum<S>(r.sum(false)) / C : 0.f;
    float ss = group_sum<S>(r.sum(true, mean));
    float inv = mode == N_L2 ? scale / fmaxf(sqrtf(ss), eps) : rsqrtf(ss / C + eps);
    #pragma unroll
    for (int i = 0; i < 8; i++) {
        int vi = r.vec(i);
        if (vi < nv) {
            float v[8], o[8], wv[8], bv[8];
            r.get(i, v);
            if (w) load8(w, vi, dtw, wv);
            if (b) load8(b, vi, dtb, bv);
            #pragma unroll
            for (int e = 0; e < 8; e++) {
                o[e] = (v[e] - mean) * inv;
                if (w) o[e] *= wv[e];
                if (b) o[e] += bv[e];
                if (act == 1) o[e] = o[e] / (1.f + __expf(-o[e]));
            }
            store8(y, base8 + vi, dty, o);
        }
    }
}

extern "C" __global__ void __launch_bounds__(256) row_norm_v8(const void* x, const void* w, const void* b, void* y, i64 rows, int C,
                                       float eps, float scale, int mode, int act, int dtx, int dtw, int dtb, int dty) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    row_norm_row<32>(x, w, b, y, row, threadIdx.x & 31, C, eps, scale, mode, act, dtx, dtw, dtb, dty);
}

// 128 threads; grid: one block a row.
extern "C" __global__ void __launch_bounds__(128) row_norm_wide_v8(const void* x, const void* w, const void* b, void* y, i64 rows,
                                       int C, float eps, float scale, int mode, int act, int dtx, int dtw, int dtb, int dty) {
    row_norm_row<128>(x, w, b, y, blockIdx.x, threadIdx.x, C, eps, scale, mode, act, dtx, dtw, dtb, dty);
}

// The Wan VAE's channel L2 norm on narrow rows (C a multiple of 8, at most 256: 96, 192 in the VAE),
// optionally followed by SiLU (act = 1: every VAE norm feeds one). A group of G lanes per row (G a
// power of two with 4 G >= C / 8: 4 for C = 96, 8 for C = 192), lane g of a group holding vectors g,
// g + G, g + 2G, g + 3G, so a row is read once and written once with every lane busy; a warp
// instruction reads 32 / G consecutive rows, 16 G contiguous bytes of each. (The warp-wide row_norm_v8
// would leave most lanes idle on such rows; half a warp per row left 4 of 16 lanes idle at 96 and 192
// channels and was slower: docs/perf-notes.md, session 7.) Each group takes L2G_ROWS rows
// (block b, group q: rows (256 / G) (L2G_ROWS b + r) + q), all their loads issued first.
#define L2G_ROWS 2
extern "C" __global__ void __launch_bounds__(256) l2_norm_group_v8(const void* x, const void* w, void* y, i64 rows, int C, int G,
                                                                 float eps, float scale, int act, int dtx, int dtw, int dty) {
    const int groups = 256 / G, q = threadIdx.x / G, g = threadIdx.x % G;
    const i64 first = (i64)blockIdx.x * groups * L2G_ROWS + q;
    const int nv = C / 8;
    uint4 raw[L2G_ROWS][4];
    if (dtx != DT_F32) {
        #pragma unroll
        for (int r = 0; r < L2G_ROWS; r++) {
            const i64 row = first + (i64)groups * r;
            #pragma unroll
            for (int j = 0; j < 4; j++) {
                const int vi = g + G * j;
                raw[r][j] = row < rows && vi < nv ? __ldg((const uint4*)x + row * nv + vi) : make_uint4(0, 0, 0, 0);
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < L2G_ROWS; r++) {
        const i64 row = first + (i64)groups * r;
        const bool active = row < rows;            // every lane takes part in the shuffles below
        const i64 base8 = row * nv;
        float v[4][8];
        float ss = 0.f;
        #pragma unroll
        for (int j = 0; j < 4; j++) {
            const int vi = g + G * j;
            if (active && vi < nv) {
                if (dtx == DT_F32) load8(x, base8 + vi, dtx, v[j]);
                else unpack8(raw[r][j], dtx, v[j]);
                #pragma unroll
                for (int e = 0; e < 8; e++) ss += v[j][e] * v[j][e];
            }
        }
        for (int o = G / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);   // within the group
        if (!active) continue;
        const float inv = scale / fmaxf(sqrtf(ss), eps);
        #pragma unroll
        for (int j = 0; j < 4; j++) {
            const int vi = g + G * j;
            if (vi < nv) {
                float o[8], wv[8];
                if (w) load8(w, vi, dtw, wv);
                #pragma unroll
                for (int e = 0; e < 8; e++) {
                    float t = v[j][e] * inv;
                    if (w) t *= wv[e];
                    if (act == 1) t = t / (1.f + __expf(-t));
                    o[e] = t;
                }
                store8(y, base8 + vi, dty, o);
            }
        }
    }
}
