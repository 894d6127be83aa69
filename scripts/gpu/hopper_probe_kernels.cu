// Stage-by-stage probes of Reel's Hopper attention kernel (Sources/ReelCUDA/Kernels/attention_sm90.cu), whose device
// helpers they call, so that a wrong result is pinned to one piece (scripts/gpu/hopper_attention_probe.cpp runs them):
//   probe_tma  one TMA box (128 rows x 64 columns, 128-byte swizzle) read back through the swizzle formula the
//              kernel's descriptors assume: the tensor map and the shared-memory layout
//   probe_qk   S = Q K^T for one tile (warpgroup 0's 64 query rows x 128 keys) by `issue_qk`, written by the
//              accumulator layout: the K-major descriptors and the accumulator layout
//   probe_pv   O = P V for one tile, P read from memory into A fragments as `pack_p` lays them, V by TMA, by
//              `issue_pv`: the A-fragment layout and V's transposed (MN-major) descriptor
// Each runs as one CTA of 128 threads (one warpgroup) with 1024 + 3 x 32768 + 64 bytes of dynamic shared memory.
#include "attention_sm90.cu"

// The 1024-aligned start of the dynamic shared memory (its shared address and a generic pointer to it) and one
// mbarrier after `bytes` of it.
struct ProbeSmem { u32 base; unsigned char* ptr; u32 bar; };
__device__ __forceinline__ ProbeSmem probe_smem(unsigned char* raw, u32 bytes) {
    const u32 start = smem_addr(raw), base = (start + 1023) & ~1023u;
    return ProbeSmem{base, raw + (base - start), base + bytes};
}

// The mbarrier made by thread 0 and seen by every thread before any load is issued.
__device__ __forceinline__ void probe_barrier(const ProbeSmem& sm) {
    if (threadIdx.x == 0) {
        mbar_init(sm.bar, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();
}

// Rows 0..<128, columns col0..<col0 + 64 of a [1, rows, 1, H*128]-shaped map, as out[128][64].
extern "C" __global__ void __launch_bounds__(128, 1) probe_tma(const __grid_constant__ TmaMap t, u16* out, int col0) {
    extern __shared__ unsigned char raw[];
    const ProbeSmem sm = probe_smem(raw, 16384);
    probe_barrier(sm);
    if (threadIdx.x == 0) {
        mbar_expect_tx(sm.bar, 16384);
        tma_load(sm.base, &t, sm.bar, col0, 0, 0);
    }
    mbar_wait(sm.bar, 0);
    for (int i = threadIdx.x; i < 128 * 64; i += blockDim.x) {
        const int r = i / 64, byte = (i % 64) * 2;
        // 128-byte swizzle: the 16-byte chunk index is XORed with the row's index within its group of 8.
        const int at = r * ATOM_ROW + ((((byte / 16) ^ (r % 8)) * 16) | (byte % 16));
        out[i] = *(const u16*)(sm.ptr + at);
    }
}

// S [64][128] floats = Q rows 0..<64 (a 128-row box of each head-dim half) times K rows 0..<128, transposed.
extern "C" __global__ void __launch_bounds__(128, 1) probe_qk(const __grid_constant__ TmaMap tq, const __grid_constant__ TmaMap tk,
                                                         float* out) {
    extern __shared__ unsigned char raw[];
    const ProbeSmem sm = probe_smem(raw, 3 * 32768);
    const u32 sQ = sm.base, sK = sm.base + 32768;
    probe_barrier(sm);
    if (threadIdx.x == 0) {
        mbar_expect_tx(sm.bar, 4 * 16384);
        tma_load(sQ, &tq, sm.bar, 0, 0, 0);
        tma_load(sQ + BM * ATOM_ROW, &tq, sm.bar, 64, 0, 0);
        tma_load(sK, &tk, sm.bar, 0, 0, 0);
        tma_load(sK + BN * ATOM_ROW, &tk, sm.bar, 64, 0, 0);
    }
    mbar_wait(sm.bar, 0);
    float sc[64];
    #pragma unroll
    for (int i = 0; i < 64; i++) sc[i] = 0.f;
    reg_fence(sc);
    wgmma_fence();
    issue_qk(sc, sQ, sK);
    wgmma_commit();
    wgmma_wait<0>();
    reg_fence(sc);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    #pragma unroll
    for (int i = 0; i < 64; i++) {
        const int r = warp * 16 + lane / 4 + 8 * ((i / 2) % 2), c = 8 * (i / 4) + 2 * (lane % 4) + (i % 2);
        out[r * 128 + c] = sc[i];
    }
}

// O [64][128] floats = P [64][128] (bf16, row-major) times V rows 0..<128 (both head-dim halves).
extern "C" __global__ void __launch_bounds__(128, 1) probe_pv(const u16* __restrict__ pIn, const __grid_constant__ TmaMap tv,
                                                         float* out) {
    extern __shared__ unsigned char raw[];
    const ProbeSmem sm = probe_smem(raw, 3 * 32768);
    const u32 sV = sm.base;
    probe_barrier(sm);
    if (threadIdx.x == 0) {
        mbar_expect_tx(sm.bar, 2 * 16384);
        tma_load(sV, &tv, sm.bar, 0, 0, 0);
        tma_load(sV + BN * ATOM_ROW, &tv, sm.bar, 64, 0, 0);
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    // P's values where the S accumulator layout holds them, then packed as the kernel packs them.
    float sc[64], acc[64];
    u32 p[32];
    #pragma unroll
    for (int i = 0; i < 64; i++) {
        const int r = warp * 16 + lane / 4 + 8 * ((i / 2) % 2), c = 8 * (i / 4) + 2 * (lane % 4) + (i % 2);
        sc[i] = bf16_to_f32(pIn[r * 128 + c]);
        acc[i] = 0.f;
    }
    pack_p(sc, p);
    mbar_wait(sm.bar, 0);
    reg_fence(acc);
    wgmma_fence();
    issue_pv(acc, p, sV);
    wgmma_commit();
    wgmma_wait<0>();
    reg_fence(acc);
    #pragma unroll
    for (int i = 0; i < 64; i++) {
        const int r = warp * 16 + lane / 4 + 8 * ((i / 2) % 2), c = 8 * (i / 4) + 2 * (lane % 4) + (i % 2);
        out[r * 128 + c] = acc[i];
    }
}
