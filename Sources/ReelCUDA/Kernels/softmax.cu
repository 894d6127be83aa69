// Softmax over the last axis, one warp per row (max, sum of exponentials, write).
#include "common.cuh"

extern "C" __global__ void softmax_rows(const void* x, void* y, i64 rows, int C, int dtx, int dty) {
    i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    i64 base = row * C;
    float m = -INFINITY;
    for (int c = lane; c < C; c += 32) m = fmaxf(m, load_f(x, base + c, dtx));
    m = warp_max(m);
    float s = 0.f;
    for (int c = lane; c < C; c += 32) s += expf(load_f(x, base + c, dtx) - m);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    float inv = 1.f / s;
    for (int c = lane; c < C; c += 32) store_f(y, base + c, dty, expf(load_f(x, base + c, dtx) - m) * inv);
}
