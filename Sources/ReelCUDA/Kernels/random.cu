// Standard normal noise from Philox4x32-10 + Box-Muller in float64, bit-identical to
// PhiloxNormal.sample on the host: element i depends only on (seed, offset + i).
// Compiled like every kernel without fast-math; the transform has no a*b+c, so FMA contraction
// cannot change a rounding.
#include "common.cuh"

__device__ __forceinline__ void philox_round(u32& c0, u32& c1, u32& c2, u32& c3, u32 k0, u32 k1) {
    u64 p0 = (u64)0xD2511F53u * c0;
    u64 p1 = (u64)0xCD9E8D57u * c2;
    u32 hi0 = (u32)(p0 >> 32), lo0 = (u32)p0;
    u32 hi1 = (u32)(p1 >> 32), lo1 = (u32)p1;
    u32 n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
}

extern "C" __global__ void philox_normal(void* y, i64 n, u64 seed, u64 offset, int dty) {
    GRID_STRIDE(i, n) {
        u64 index = offset + (u64)i;
        u32 c0 = (u32)index, c1 = (u32)(index >> 32), c2 = 0, c3 = 0;
        u32 k0 = (u32)seed, k1 = (u32)(seed >> 32);
        #pragma unroll
        for (int r = 0; r < 10; r++) {
            philox_round(c0, c1, c2, c3, k0, k1);
            k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
        }
        double u1 = ((double)c0 + 1.0) / 4294967296.0;
        double u2 = (double)c1 / 4294967296.0;
        double z = sqrt(-2.0 * log(u1)) * cos(2.0 * 3.141592653589793 * u2);
        store_f(y, i, dty, (float)z);
    }
}
