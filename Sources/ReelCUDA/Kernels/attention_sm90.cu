// Reel's Hopper attention (sm_90a): softmax(q k^T * scale) v for head dim 128 in bf16, with wgmma and TMA.
// Layouts as attention.cu: q [B, Lq, H, 128], k and v [B, Lk, H, 128], o [B, Lq, H, 128], all bf16.
//
// A CTA takes 128 query rows of one head and walks the keys 128 at a time:
//   - warps 8-11 (the producer warpgroup, one thread of it) load tiles with TMA (cp.async.bulk.tensor, 128-byte swizzle) into a two-stage ring of
//     K and V tiles, each stage's arrival counted by an mbarrier ("full"), its release by another ("empty");
//   - warps 0-3 and 4-7 (two consumer warpgroups) each own 64 query rows: S = Q K^T by wgmma from shared memory
//     (m64n128k16, fp32 accumulators), an online softmax in base 2 on the accumulators, P packed to bf16 straight
//     from them (the accumulator and A-fragment layouts coincide), then O += P V by wgmma with P in registers and V
//     read transposed from shared memory.
// Shared-memory tiles are 64-column atoms (128 bytes a row, 1024-byte aligned) as TMA's 128-byte swizzle writes
// them and wgmma's descriptors (swizzle mode 1) read them: a K-major operand steps 32 bytes per k16 inside an atom
// (stride between 8-row groups 1024 bytes); V, read MN-major, steps 2048 bytes (16 keys) per k16, its two d-atoms
// one tile apart (leading byte offset), 8-key groups 1024 bytes apart (stride byte offset).
// Keys past the range (the tile's tail, zero-filled by TMA past Lk) are masked to -inf; query rows past Lq are
// computed on zeros and not stored. The bf16 kernel's CTAs are units of a schedule (hopper_unit below): each head's
// first `whole` query tiles take all the keys and write o; for B = 1 the later tiles may be cut into `splits` key
// ranges of Lk / splits, each unit writing its part and the part's log-sum-exp for attn_merge_v8 (attention.cu),
// so that the last wave is filled with short units instead of every tile paying for a split.
// The FP8 kernel: with `splits` > 1 (B = 1) blockIdx.z picks a key range of Lk / splits.
#include "common.cuh"

// CUtensorMap: 128 opaque bytes, made on the host by cuTensorMapEncodeTiled.
struct __align__(64) TmaMap { u64 words[16]; };

#define BM 128                       // query rows a CTA
#define BN 128                       // keys a tile
#define HD 128                       // head dim
#ifndef STAGES
#define STAGES 3                     // K/V stages in the ring (2 or 3: the launch asks for room for 3)
#endif
#define ATOM_ROW 128                 // bytes a row of a 64-column bf16 atom
#define Q_BYTES (BM * HD * 2)        // 32768
#define TILE_BYTES (BN * HD * 2)     // 32768: one K or V tile, two atoms
#define SMEM_BYTES (1024 + Q_BYTES + 2 * STAGES * TILE_BYTES + 128)
// The host asks for room for 3 stages whatever STAGES is (one CTA an SM either way): 230528 bytes of the SM's 232448.
#if STAGES > 3
#error at most 3 stages fit
#endif
// The descriptors' byte offsets (scripts/gpu/hopper_attention_probe.cpp compiles variants to tell them apart):
// V read MN-major: between its two 64-column d-atoms (leading) and between 8-key groups (stride); K-major Q and K:
// the leading offset is unused with the swizzle (16 bytes), 1024 bytes between 8-row groups.
#ifndef V_LEADING
#define V_LEADING (BN * ATOM_ROW)
#endif
#ifndef V_STRIDE
#define V_STRIDE 1024
#endif
// 1: the consumers overlap one tile's S with the previous tile's O += P V (see the kernel).
#ifndef HOPPER_OVERLAP
#define HOPPER_OVERLAP 1
#endif
// 1: the consumers take turns issuing their GEMMs (FlashAttention-3's ping-pong; see `turn_wait`).
#ifndef HOPPER_PINGPONG
#define HOPPER_PINGPONG 1
#endif
#ifndef K_LEADING
#define K_LEADING 16
#endif

__device__ __forceinline__ u32 smem_addr(const void* p) {
    u32 r;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
    return r;
}

__device__ __forceinline__ void mbar_init(u32 bar, u32 count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(u32 bar, u32 bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(u32 bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(u32 bar, u32 parity) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "WAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra WAIT;\n"
        "}\n" :: "r"(bar), "r"(parity) : "memory");
}

// One box of a 3-D tensor map ({column, row, batch}) into shared memory, counted on `bar`.
__device__ __forceinline__ void tma_load(u32 dst, const TmaMap* map, u32 bar, int c0, int c1, int c2) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];"
        :: "r"(dst), "l"((u64)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar) : "memory");
}

// A wgmma shared-memory descriptor for a 128-byte-swizzled operand: start address, leading and stride byte offsets
// (each >> 4), swizzle mode 1 (128 B) in bits 62-63; base offset 0 (atoms are 1024-byte aligned).
__device__ __forceinline__ u64 gmma_desc(u32 addr, u32 leading, u32 stride) {
    return (u64)((addr & 0x3FFFF) >> 4) | ((u64)((leading >> 4) & 0x3FFF) << 16)
         | ((u64)((stride >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
// Waits until at most N committed wgmma groups of this warpgroup are still running.
template <int N> __device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(N) : "memory"); }
// Keeps the compiler from moving accumulator reads or writes across an asynchronous wgmma.
__device__ __forceinline__ void reg_fence(float (&d)[64]) {
    #pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i]) :: "memory");
}

// 2^x by the special-function unit (relative error ~2^-22; P is rounded to bf16 after it).
__device__ __forceinline__ float fast_exp2(float x) {
    float r; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r;
}

__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
    u32 r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}

// The 64 float32 accumulators of an m64n128 wgmma as asm operands %0..%63, and their names in the instruction.
#define WGMMA_ACC64(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),\
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),\
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),\
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),\
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),\
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),\
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),\
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define WGMMA_REGS64 "{" \
    "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "\
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "\
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "\
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" \
    "}"

// D[64x128] (+)= A[64x16] B[16x128]: A and B from shared memory, both K-major (not transposed).
__device__ __forceinline__ void wgmma_ss_m64n128k16(float (&d)[64], u64 da, u64 db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WGMMA_REGS64 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : WGMMA_ACC64(d)
        : "l"(da), "l"(db), "r"(accumulate));
}

// D[64x128] += A[64x16] B[16x128]: A in registers (four bf16x2 a warp thread), B from shared memory stored
// MN-major (its N runs along the 128-byte rows: transposed).
__device__ __forceinline__ void wgmma_rs_m64n128k16_tb(float (&d)[64], u32 a0, u32 a1, u32 a2, u32 a3, u64 db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WGMMA_REGS64 ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : WGMMA_ACC64(d)
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(1));
}

// FlashAttention-3's ping-pong (HOPPER_PINGPONG): the consumer warpgroups take turns issuing their GEMMs, so that one's
// softmax runs while the other's GEMMs hold the tensor cores. Named barrier 1 + w gates warpgroup w: it waits there
// (its 128 threads and the other warpgroup's 128 arrivals), issues a tile's GEMMs, then lets the other go. Warpgroup 1 lets 0 go
// first, and 0 takes that last arrival after its loop, so that no barrier is left half-counted.
// `On`: the kernel's switch (HOPPER_PINGPONG for bf16, F8_PINGPONG for FP8); off, both are no-ops.
template <bool On = HOPPER_PINGPONG> __device__ __forceinline__ void turn_wait(int wg) {
    if (On) asm volatile("bar.sync %0, 256;" :: "r"(1 + wg) : "memory");
}
template <bool On = HOPPER_PINGPONG> __device__ __forceinline__ void turn_pass(int wg) {
    if (On) asm volatile("bar.arrive %0, 256;" :: "r"(2 - wg) : "memory");
}

// S = Q K^T for one key tile: eight k16 steps over the head dim (two 64-column atoms of Q and K).
__device__ __forceinline__ void issue_qk(float (&sc)[64], u32 qRows, u32 kTile) {
    #pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
        const u32 atom = kk / 4, step = (kk % 4) * 32;
        wgmma_ss_m64n128k16(sc, gmma_desc(qRows + atom * BM * ATOM_ROW + step, K_LEADING, 1024),
                            gmma_desc(kTile + atom * BN * ATOM_ROW + step, K_LEADING, 1024), kk > 0);
    }
}

// O += P V for one key tile: eight k16 steps over the keys, P from registers, V read transposed.
__device__ __forceinline__ void issue_pv(float (&acc)[64], const u32 (&p)[32], u32 vTile) {
    #pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
        wgmma_rs_m64n128k16_tb(acc, p[4 * kk], p[4 * kk + 1], p[4 * kk + 2], p[4 * kk + 3],
                               gmma_desc(vTile + kk * 2048, V_LEADING, V_STRIDE));
    }
}

// One tile's S = Q K^T, done before it returns: K's arrival awaited, the GEMMs issued in this warpgroup's turn, K's
// stage released once they have read it.
__device__ __forceinline__ void score_tile(float (&sc)[64], u32 qRows, u32 kTile, u32 full, u32 empty, u32 phase, int wg) {
    mbar_wait(full, phase);
    reg_fence(sc);
    turn_wait(wg);
    wgmma_fence();
    issue_qk(sc, qRows, kTile);
    wgmma_commit();
    turn_pass(wg);
    wgmma_wait<0>();
    reg_fence(sc);
    mbar_arrive(empty);
}

// One tile's O += P V, done before it returns, likewise for V.
__device__ __forceinline__ void value_tile(float (&acc)[64], const u32 (&p)[32], u32 vTile, u32 full, u32 empty, u32 phase,
                                           int wg) {
    mbar_wait(full, phase);
    reg_fence(acc);
    turn_wait(wg);
    wgmma_fence();
    issue_pv(acc, p, vTile);
    wgmma_commit();
    turn_pass(wg);
    wgmma_wait<0>();
    reg_fence(acc);
    mbar_arrive(empty);
}

// The online softmax of one tile of scores, in place and in base 2: keys at or past `valid` take no weight; m holds
// the rows' running max of the scaled scores, l this thread's share of their sums; a is the factor the rows' earlier
// output must be rescaled by.
__device__ __forceinline__ void softmax_step(float (&sc)[64], int valid, int lane, float scale_log2,
                                             float& m0, float& m1, float& l0, float& l1, float& a0, float& a1) {
    if (valid < BN) {
        #pragma unroll
        for (int i = 0; i < 64; i++) {
            const int c = 8 * (i / 4) + 2 * (lane % 4) + (i % 2);
            if (c >= valid) sc[i] = -INFINITY;
        }
    }
    float x0 = -INFINITY, x1 = -INFINITY;
    #pragma unroll
    for (int i = 0; i < 64; i += 4) {
        x0 = fmaxf(x0, fmaxf(sc[i], sc[i + 1]));
        x1 = fmaxf(x1, fmaxf(sc[i + 2], sc[i + 3]));
    }
    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffff, x0, 1));
    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffff, x0, 2));
    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffff, x1, 1));
    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffff, x1, 2));
    const float n0 = fmaxf(m0, x0 * scale_log2), n1 = fmaxf(m1, x1 * scale_log2);
    a0 = fast_exp2(m0 - n0);
    a1 = fast_exp2(m1 - n1);
    m0 = n0;
    m1 = n1;
    float s0 = 0.f, s1 = 0.f;
    #pragma unroll
    for (int i = 0; i < 64; i += 4) {
        sc[i] = fast_exp2(fmaf(sc[i], scale_log2, -n0));
        sc[i + 1] = fast_exp2(fmaf(sc[i + 1], scale_log2, -n0));
        sc[i + 2] = fast_exp2(fmaf(sc[i + 2], scale_log2, -n1));
        sc[i + 3] = fast_exp2(fmaf(sc[i + 3], scale_log2, -n1));
        s0 += sc[i] + sc[i + 1];
        s1 += sc[i + 2] + sc[i + 3];
    }
    l0 = l0 * a0 + s0;
    l1 = l1 * a1 + s1;
}

__device__ __forceinline__ void rescale(float (&acc)[64], float a0, float a1) {
    #pragma unroll
    for (int i = 0; i < 64; i += 4) {
        acc[i] *= a0; acc[i + 1] *= a0;
        acc[i + 2] *= a1; acc[i + 3] *= a1;
    }
}

// P as bf16 A fragments, one group of four registers per 16 keys (columns 16 kk + 2 (lane % 4) + {0, 1, 8, 9}).
__device__ __forceinline__ void pack_p(const float (&sc)[64], u32 (&p)[32]) {
    #pragma unroll
    for (int kk = 0; kk < 8; kk++) {
        p[4 * kk] = pack_bf16x2(sc[8 * kk], sc[8 * kk + 1]);
        p[4 * kk + 1] = pack_bf16x2(sc[8 * kk + 2], sc[8 * kk + 3]);
        p[4 * kk + 2] = pack_bf16x2(sc[8 * kk + 4], sc[8 * kk + 5]);
        p[4 * kk + 3] = pack_bf16x2(sc[8 * kk + 6], sc[8 * kk + 7]);
    }
}

// One CTA's work in the bf16 kernel's schedule. With T = ceil(Lq / 128) query tiles a head, the grid's first
// B * H * whole units are whole tiles in the order (batch, head, tile) - the tile fastest, so that the CTAs running
// at once share few heads' keys in L2 -; the remaining H * (T - whole) * splits units (B = 1, splits > 1) are the
// later tiles' key parts in the order (part, head, tile). `whole` = T and splits = 1 is the plain grid; `whole` = 0
// is every tile split.
struct HopperUnit { int b, h, mtile, split, kBegin, kEnd; bool part; };

__device__ __forceinline__ HopperUnit hopper_unit(int u, int units, int Lq, int Lk, int H, int whole, int splits) {
    const int mtiles = (Lq + BM - 1) / BM, tailTiles = mtiles - whole;
    const int wholeUnits = units - (splits > 1 ? H * tailTiles * splits : 0);
    HopperUnit w;
    if (u < wholeUnits) {
        const int perBatch = H * whole, r = u % perBatch;
        w.b = u / perBatch; w.h = r / whole; w.mtile = r % whole; w.split = 0; w.kBegin = 0; w.kEnd = Lk; w.part = false;
    } else {
        const int v = u - wholeUnits, t = v % (H * tailTiles), part = Lk / splits;
        w.b = 0; w.split = v / (H * tailTiles); w.h = t / tailTiles; w.mtile = whole + t % tailTiles;
        w.kBegin = w.split * part; w.kEnd = w.kBegin + part; w.part = true;
    }
    return w;
}

// Grid: (units of the schedule above, 1, 1); 384 threads; SMEM_BYTES of dynamic shared memory. `scale_log2` is the
// softmax scale times log2(e). Whole tiles write o [B, Lq, H, 128]; parts write `parts` [splits, Lq - 128 * whole, H,
// 128] and `stats` [splits, H, Lq - 128 * whole], the parts' natural-log log-sum-exp of the scaled scores (rows
// counted from the first split tile's).
extern "C" __global__ void __launch_bounds__(384, 1) attn_sm90_d128_bf16(
        const __grid_constant__ TmaMap tq, const __grid_constant__ TmaMap tk, const __grid_constant__ TmaMap tv,
        u16* __restrict__ o, u16* __restrict__ parts, float* __restrict__ stats, int Lq, int Lk, int H, int whole,
        int splits, float scale_log2) {
    extern __shared__ unsigned char smem_raw[];
    const u32 raw = smem_addr(smem_raw);
    const u32 sQ = (raw + 1023) & ~1023u;
    const u32 sK = sQ + Q_BYTES, sV = sK + STAGES * TILE_BYTES, bars = sV + STAGES * TILE_BYTES;
    // mbarriers, 8 bytes each (at most 13 in the 128 bytes): Q full; then per stage K full, V full, K empty, V empty.
    const u32 barQ = bars, fullK = bars + 8, fullV = fullK + 8 * STAGES, emptyK = fullV + 8 * STAGES, emptyV = emptyK + 8 * STAGES;

    const int tid = threadIdx.x;
    const HopperUnit w = hopper_unit(blockIdx.x, gridDim.x, Lq, Lk, H, whole, splits);
    const int mtile = w.mtile, h = w.h, b = w.b, kBegin = w.kBegin, kEnd = w.kEnd;
    const int tiles = (kEnd - kBegin + BN - 1) / BN;

    if (tid == 0) {
        mbar_init(barQ, 1);
        for (int s = 0; s < STAGES; s++) {
            mbar_init(fullK + 8 * s, 1);
            mbar_init(fullV + 8 * s, 1);
            mbar_init(emptyK + 8 * s, 256);
            mbar_init(emptyV + 8 * s, 256);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();

    if (tid >= 256) {
        // The producer warpgroup gives up registers for the consumers (24 + 2 x 240 per thread of each stays within
        // the SM's 64K); one thread issues every load.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;" ::: "memory");
        if (tid != 256) return;
        const int col = h * HD;
        mbar_expect_tx(barQ, Q_BYTES);
        tma_load(sQ, &tq, barQ, col, mtile * BM, b);
        tma_load(sQ + BM * ATOM_ROW, &tq, barQ, col + 64, mtile * BM, b);
        for (int j = 0; j < tiles; j++) {
            const int s = j % STAGES, use = j / STAGES, row = kBegin + j * BN;
            if (use > 0) mbar_wait(emptyK + 8 * s, (use - 1) & 1);
            mbar_expect_tx(fullK + 8 * s, TILE_BYTES);
            tma_load(sK + s * TILE_BYTES, &tk, fullK + 8 * s, col, row, b);
            tma_load(sK + s * TILE_BYTES + BN * ATOM_ROW, &tk, fullK + 8 * s, col + 64, row, b);
            if (use > 0) mbar_wait(emptyV + 8 * s, (use - 1) & 1);
            mbar_expect_tx(fullV + 8 * s, TILE_BYTES);
            tma_load(sV + s * TILE_BYTES, &tv, fullV + 8 * s, col, row, b);
            tma_load(sV + s * TILE_BYTES + BN * ATOM_ROW, &tv, fullV + 8 * s, col + 64, row, b);
        }
        return;
    }

    // A consumer warpgroup: rows 64 * wg .. + 63 of the tile. This thread holds rows r and r + 8 of its warp's 16,
    // columns 8 j + 2 (lane % 4) + {0, 1} for j in 0..<16 (the wgmma accumulator layout).
    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;" ::: "memory");
    const int wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
    const u32 qRows = sQ + wg * 64 * ATOM_ROW;
    float acc[64], sc[64];
    u32 p[32];
    #pragma unroll
    for (int i = 0; i < 64; i++) { acc[i] = 0.f; sc[i] = 0.f; }
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f, a0, a1;

    mbar_wait(barQ, 0);
    if (wg == 1) turn_pass(1);
    if (!HOPPER_OVERLAP) {
        // Each tile in turn: S, softmax, O += P V.
        for (int j = 0; j < tiles; j++) {
            const int s = j % STAGES;
            const u32 phase = (j / STAGES) & 1;
            score_tile(sc, qRows, sK + s * TILE_BYTES, fullK + 8 * s, emptyK + 8 * s, phase, wg);
            softmax_step(sc, kEnd - (kBegin + j * BN), lane, scale_log2, m0, m1, l0, l1, a0, a1);
            rescale(acc, a0, a1);
            pack_p(sc, p);
            value_tile(acc, p, sV + s * TILE_BYTES, fullV + 8 * s, emptyV + 8 * s, phase, wg);
        }
    } else {
        // Overlapped (FlashAttention-3's intra-warpgroup pipelining): tile j's S = Q K^T and tile j-1's O += P V are
        // in flight together; j's softmax runs while the second finishes; O is rescaled once it has.
        score_tile(sc, qRows, sK, fullK, emptyK, 0, wg);
        softmax_step(sc, kEnd - kBegin, lane, scale_log2, m0, m1, l0, l1, a0, a1);
        pack_p(sc, p);
        for (int j = 1; j < tiles; j++) {
            const int s = j % STAGES, prev = (j - 1) % STAGES;
            mbar_wait(fullK + 8 * s, (j / STAGES) & 1);
            mbar_wait(fullV + 8 * prev, ((j - 1) / STAGES) & 1);
            reg_fence(sc);
            reg_fence(acc);
            turn_wait(wg);
            wgmma_fence();
            issue_qk(sc, qRows, sK + s * TILE_BYTES);
            wgmma_commit();
            issue_pv(acc, p, sV + prev * TILE_BYTES);
            wgmma_commit();
            turn_pass(wg);
            wgmma_wait<1>();   // S is done (groups complete in order); O += P V may still run
            reg_fence(sc);
            mbar_arrive(emptyK + 8 * s);
            softmax_step(sc, kEnd - (kBegin + j * BN), lane, scale_log2, m0, m1, l0, l1, a0, a1);
            wgmma_wait<0>();
            reg_fence(acc);
            mbar_arrive(emptyV + 8 * prev);
            rescale(acc, a0, a1);
            pack_p(sc, p);
        }
        const int last = (tiles - 1) % STAGES;
        value_tile(acc, p, sV + last * TILE_BYTES, fullV + 8 * last, emptyV + 8 * last, ((tiles - 1) / STAGES) & 1, wg);
    }
    if (wg == 0) turn_wait(0);

    // The rows' sums over their four threads, then O / l in bf16.
    l0 += __shfl_xor_sync(0xffffffff, l0, 1);
    l0 += __shfl_xor_sync(0xffffffff, l0, 2);
    l1 += __shfl_xor_sync(0xffffffff, l1, 1);
    l1 += __shfl_xor_sync(0xffffffff, l1, 2);
    const float inv0 = 1.f / l0, inv1 = 1.f / l1;
    const int r0 = mtile * BM + wg * 64 + warp * 16 + lane / 4, r1 = r0 + 8;
    // A whole tile: batch b's rows of o; a part: part `split`'s rows of `parts`, counted from the first split tile.
    const int rowStart = w.part ? whole * BM : 0, rows = Lq - rowStart;
    const i64 rowBase = w.part ? (i64)w.split * rows - rowStart : (i64)b * Lq;
    u16* const dst = w.part ? parts : o;
    #pragma unroll
    for (int i = 0; i < 64; i += 4) {
        const int d = 8 * (i / 4) + 2 * (lane % 4);
        if (r0 < Lq) *(u32*)(dst + ((rowBase + r0) * H + h) * HD + d) = pack_bf16x2(acc[i] * inv0, acc[i + 1] * inv0);
        if (r1 < Lq) *(u32*)(dst + ((rowBase + r1) * H + h) * HD + d) = pack_bf16x2(acc[i + 2] * inv1, acc[i + 3] * inv1);
    }
    if (w.part && lane % 4 == 0) {
        const float ln2 = 0.69314718055994531f;
        if (r0 < Lq) stats[((i64)w.split * H + h) * rows + r0 - rowStart] = (m0 + log2f(l0)) * ln2;
        if (r1 < Lq) stats[((i64)w.split * H + h) * rows + r1 - rowStart] = (m1 + log2f(l1)) * ln2;
    }
}

// ---- FP8 (E4M3) attention on Hopper (Backend.fp8Attention on sm_90; `--attention fp8`) ----
// The bf16 kernel's structure (producer warpgroup with TMA into a ring, two consumer warpgroups, online softmax in
// base 2, the overlapped consumer loop) with E4M3 operands: wgmma m64n128k32, so a 128-byte swizzle atom holds a
// whole head (128 codes a row) and each operand tile is 16 KB. FP8 wgmma reads both shared-memory operands K-major,
// so V arrives transposed, vt [B, H, 128, Lk8] (keys contiguous; Lk8 = Lk rounded up to 32, zeros past Lk), written
// by fp8_attn_quantize_vt. P goes to the A fragments from the score accumulators without shuffles: a thread holds
// the scores of keys {2q, 2q+1, 8+2q, 9+2q, 16+2q, 17+2q, 24+2q, 25+2q} of each 32 (q = lane % 4) and the k32 A
// fragment wants positions {4q..4q+3, 16+4q..16+4q+3}; position 4q+i carries key fp8_vt_key(4q+i), so V's rows are
// stored in that order inside each 32-key group (fp8_vt_key), and P V sums the same products.
// P's codes are exp2(s - max) * 448 (cuDNN's FP8 graph's scale for P); O stays in float32 and is written in bf16.
// Scales: `slots` as fp8_attn_quantize fills it (attention.cu): the descales of q, k, v at slots[12], [16], [20].
#define F8_ROW 128                   // bytes a row of a Q, K or V^T tile: 128 codes
#define F8_TILE (128 * F8_ROW)       // 16384: 128 rows
#ifndef F8_STAGES
#define F8_STAGES 4
#endif
#define F8_P_SCALE 448.f
#ifndef F8_VT_IDENTITY
#define F8_VT_IDENTITY 0
#endif
// 1: the FP8 kernel's consumers take ping-pong turns too (measured without them: session 17).
#ifndef F8_PINGPONG
#define F8_PINGPONG 0
#endif

// The key whose value row sits at position p of a 32-key group of vt (see above).
// (F8_VT_IDENTITY: keys in their own order, a wrong layout for scripts/gpu/hopper_fp8_probe.cpp to catch.)
__device__ __forceinline__ int fp8_vt_key(int p) {
#if F8_VT_IDENTITY
    return p;
#else
    const int half = p & 16, q = (p & 15) >> 2, i = p & 3;
    return half + 8 * (i >> 1) + 2 * q + (i & 1);
#endif
}

__device__ __forceinline__ void wgmma_ss_m64n128k32_e4m3(float (&d)[64], u64 da, u64 db, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 " WGMMA_REGS64 ", %64, %65, p, 1, 1;\n}\n"
        : WGMMA_ACC64(d)
        : "l"(da), "l"(db), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_rs_m64n128k32_e4m3(float (&d)[64], u32 a0, u32 a1, u32 a2, u32 a3, u64 db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 " WGMMA_REGS64 ", {%64, %65, %66, %67}, %68, p, 1, 1;\n}\n"
        : WGMMA_ACC64(d)
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(1));
}

// Four floats as E4M3 codes in one register, the first in the lowest byte (round to nearest even, saturating).
__device__ __forceinline__ u32 pack_e4m3x4(float x0, float x1, float x2, float x3) {
    unsigned short lo, hi;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lo) : "f"(x1), "f"(x0));
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hi) : "f"(x3), "f"(x2));
    return (u32)lo | ((u32)hi << 16);
}

// S = Q K^T for one key tile: four k32 steps over the head (one atom).
__device__ __forceinline__ void issue_qk_e4m3(float (&sc)[64], u32 qRows, u32 kTile) {
    #pragma unroll
    for (int kk = 0; kk < 4; kk++)
        wgmma_ss_m64n128k32_e4m3(sc, gmma_desc(qRows + 32 * kk, 16, 1024), gmma_desc(kTile + 32 * kk, 16, 1024), kk > 0);
}
// O += P V for one key tile: four k32 steps over the keys, P from registers, V^T K-major.
__device__ __forceinline__ void issue_pv_e4m3(float (&acc)[64], const u32 (&p)[16], u32 vtTile) {
    #pragma unroll
    for (int kk = 0; kk < 4; kk++)
        wgmma_rs_m64n128k32_e4m3(acc, p[4 * kk], p[4 * kk + 1], p[4 * kk + 2], p[4 * kk + 3], gmma_desc(vtTile + 32 * kk, 16, 1024));
}
// P's codes (448 x the probabilities) as k32 A fragments: group kk (keys 32 kk ..) from accumulators 16 kk .. + 15.
__device__ __forceinline__ void pack_p_e4m3(const float (&sc)[64], u32 (&p)[16]) {
    const float k = F8_P_SCALE;
    #pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        const float* s = sc + 16 * kk;
        p[4 * kk] = pack_e4m3x4(s[0] * k, s[1] * k, s[4] * k, s[5] * k);
        p[4 * kk + 1] = pack_e4m3x4(s[2] * k, s[3] * k, s[6] * k, s[7] * k);
        p[4 * kk + 2] = pack_e4m3x4(s[8] * k, s[9] * k, s[12] * k, s[13] * k);
        p[4 * kk + 3] = pack_e4m3x4(s[10] * k, s[11] * k, s[14] * k, s[15] * k);
    }
}

// Grid: (ceil(Lq / 128), H, B * splits); 384 threads; F8 shared memory (see the launch). q8 [B, Lq, H, 128] and
// k8 [B, Lk, H, 128] codes through tq, tk (boxes of 128 bytes x 128 rows); vt through tv (boxes of 128 keys x 128
// rows of one head). `scale_log2`: the softmax scale times log2(e), before the descales. With splits > 1 (B = 1,
// Lk / splits a multiple of 32) o and stats are the parts as for attn_sm90_d128_bf16.
extern "C" __global__ void __launch_bounds__(384, 1) attn_sm90_d128_e4m3(
        const __grid_constant__ TmaMap tq, const __grid_constant__ TmaMap tk, const __grid_constant__ TmaMap tv,
        const float* __restrict__ slots, u16* __restrict__ o, float* __restrict__ stats, int Lq, int Lk, int H, int splits,
        float scale_log2) {
    extern __shared__ unsigned char smem_raw[];
    const u32 raw = smem_addr(smem_raw);
    const u32 sQ = (raw + 1023) & ~1023u;
    const u32 sK = sQ + F8_TILE, sV = sK + F8_STAGES * F8_TILE, bars = sV + F8_STAGES * F8_TILE;
    const u32 barQ = bars, fullK = bars + 8, fullV = fullK + 8 * F8_STAGES, emptyK = fullV + 8 * F8_STAGES,
              emptyV = emptyK + 8 * F8_STAGES;

    const int tid = threadIdx.x;
    const int mtile = blockIdx.x, h = blockIdx.y, b = blockIdx.z / splits, split = blockIdx.z % splits;
    const int part = Lk / splits, kBegin = split * part, kEnd = kBegin + part;
    const int tiles = (part + 127) / 128;

    if (tid == 0) {
        mbar_init(barQ, 1);
        for (int s = 0; s < F8_STAGES; s++) {
            mbar_init(fullK + 8 * s, 1);
            mbar_init(fullV + 8 * s, 1);
            mbar_init(emptyK + 8 * s, 256);
            mbar_init(emptyV + 8 * s, 256);
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();

    if (tid >= 256) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 24;" ::: "memory");
        if (tid != 256) return;
        mbar_expect_tx(barQ, F8_TILE);
        tma_load(sQ, &tq, barQ, h * 128, mtile * 128, b);
        for (int j = 0; j < tiles; j++) {
            const int s = j % F8_STAGES, use = j / F8_STAGES, row = kBegin + j * 128;
            if (use > 0) mbar_wait(emptyK + 8 * s, (use - 1) & 1);
            mbar_expect_tx(fullK + 8 * s, F8_TILE);
            tma_load(sK + s * F8_TILE, &tk, fullK + 8 * s, h * 128, row, b);
            if (use > 0) mbar_wait(emptyV + 8 * s, (use - 1) & 1);
            mbar_expect_tx(fullV + 8 * s, F8_TILE);
            tma_load(sV + s * F8_TILE, &tv, fullV + 8 * s, row, h * 128, b);
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 240;" ::: "memory");
    const int wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
    const u32 qRows = sQ + wg * 64 * F8_ROW;
    // The descales of q and k go into the exponent's factor; P's scale of 448 is applied as it is packed.
    const float s2 = scale_log2 * slots[12] * slots[16];
    float acc[64], sc[64];
    u32 p[16];
    #pragma unroll
    for (int i = 0; i < 64; i++) { acc[i] = 0.f; sc[i] = 0.f; }
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f, a0, a1;

    mbar_wait(barQ, 0);
    if (wg == 1) turn_pass<F8_PINGPONG>(1);
    // Overlapped: tile j's S and tile j-1's P V in flight together (as the bf16 kernel's HOPPER_OVERLAP).
    mbar_wait(fullK, 0);
    reg_fence(sc);
    turn_wait<F8_PINGPONG>(wg);
    wgmma_fence();
    issue_qk_e4m3(sc, qRows, sK);
    wgmma_commit();
    turn_pass<F8_PINGPONG>(wg);
    wgmma_wait<0>();
    reg_fence(sc);
    mbar_arrive(emptyK);
    softmax_step(sc, kEnd - kBegin, lane, s2, m0, m1, l0, l1, a0, a1);
    pack_p_e4m3(sc, p);
    for (int j = 1; j < tiles; j++) {
        const int s = j % F8_STAGES, prev = (j - 1) % F8_STAGES;
        mbar_wait(fullK + 8 * s, (j / F8_STAGES) & 1);
        mbar_wait(fullV + 8 * prev, ((j - 1) / F8_STAGES) & 1);
        reg_fence(sc);
        reg_fence(acc);
        turn_wait<F8_PINGPONG>(wg);
        wgmma_fence();
        issue_qk_e4m3(sc, qRows, sK + s * F8_TILE);
        wgmma_commit();
        issue_pv_e4m3(acc, p, sV + prev * F8_TILE);
        wgmma_commit();
        turn_pass<F8_PINGPONG>(wg);
        wgmma_wait<1>();
        reg_fence(sc);
        mbar_arrive(emptyK + 8 * s);
        softmax_step(sc, kEnd - (kBegin + j * 128), lane, s2, m0, m1, l0, l1, a0, a1);
        wgmma_wait<0>();
        reg_fence(acc);
        mbar_arrive(emptyV + 8 * prev);
        rescale(acc, a0, a1);
        pack_p_e4m3(sc, p);
    }
    {
        const int last = (tiles - 1) % F8_STAGES;
        mbar_wait(fullV + 8 * last, ((tiles - 1) / F8_STAGES) & 1);
        reg_fence(acc);
        turn_wait<F8_PINGPONG>(wg);
        wgmma_fence();
        issue_pv_e4m3(acc, p, sV + last * F8_TILE);
        wgmma_commit();
        turn_pass<F8_PINGPONG>(wg);
        wgmma_wait<0>();
        reg_fence(acc);
        mbar_arrive(emptyV + 8 * last);
    }
    if (wg == 0) turn_wait<F8_PINGPONG>(0);

    l0 += __shfl_xor_sync(0xffffffff, l0, 1);
    l0 += __shfl_xor_sync(0xffffffff, l0, 2);
    l1 += __shfl_xor_sync(0xffffffff, l1, 1);
    l1 += __shfl_xor_sync(0xffffffff, l1, 2);
    // acc sums P's codes (448 x the probabilities) times V's codes: back by V's descale over 448 l.
    const float dv = slots[20] / F8_P_SCALE;
    const float inv0 = dv / l0, inv1 = dv / l1;
    const int r0 = mtile * 128 + wg * 64 + warp * 16 + lane / 4, r1 = r0 + 8;
    const i64 rowBase = splits > 1 ? (i64)split * Lq : (i64)b * Lq;
    #pragma unroll
    for (int i = 0; i < 64; i += 4) {
        const int d = 8 * (i / 4) + 2 * (lane % 4);
        if (r0 < Lq) *(u32*)(o + ((rowBase + r0) * H + h) * 128 + d) = pack_bf16x2(acc[i] * inv0, acc[i + 1] * inv0);
        if (r1 < Lq) *(u32*)(o + ((rowBase + r1) * H + h) * 128 + d) = pack_bf16x2(acc[i + 2] * inv1, acc[i + 3] * inv1);
    }
    if (splits > 1 && lane % 4 == 0) {
        const float ln2 = 0.69314718055994531f;
        if (r0 < Lq) stats[((i64)split * H + h) * Lq + r0] = (m0 + log2f(l0)) * ln2;
        if (r1 < Lq) stats[((i64)split * H + h) * Lq + r1] = (m1 + log2f(l1)) * ln2;
    }
}

// V's E4M3 codes transposed for attn_sm90_d128_e4m3: vt [B, H, 128, Lk8] (Lk8 = Lk rounded up to 32), position p of
// each 32-key group holding key fp8_vt_key(p), zeros past Lk; v [B, Lk, H, 128] of dtype dt, scale 448 / amax(v)
// from slots[8] (fp8_attn_amax's). Block (32, 8): one head's 32 keys x 32 of its columns through shared memory, read
// along the columns and written along the keys. Grid (Lk8 / 32, 4 * H, B). The first block also writes V's descale
// (slots[20]), as fp8_attn_quantize does for its tensors.
extern "C" __global__ void __launch_bounds__(256) fp8_attn_quantize_vt(const void* v, unsigned char* vt, float* slots,
                                                                      int Lk, int Lk8, int H, int dt) {
    __shared__ unsigned char tile[32][33];
    const int g = blockIdx.x, h = blockIdx.y / 4, c0 = (blockIdx.y % 4) * 32, b = blockIdx.z;
    const float amax = slots[8];
    const float s = amax > 0.f ? __fdiv_rn(448.f, amax) : 1.f;
    for (int r = threadIdx.y; r < 32; r += 8) {          // r: the key within the group, threadIdx.x: the column
        const int key = g * 32 + r;
        const float x = key < Lk ? load_f(v, (((i64)b * Lk + key) * H + h) * 128 + c0 + threadIdx.x, dt) : 0.f;
        tile[r][threadIdx.x] = f32_to_fp8(x * s);
    }
    __syncthreads();
    for (int c = threadIdx.y; c < 32; c += 8) {          // c: the column, threadIdx.x: the position in the group
        vt[(((i64)b * H + h) * 128 + c0 + c) * Lk8 + g * 32 + threadIdx.x] = tile[fp8_vt_key(threadIdx.x)][c];
    }
    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0 && threadIdx.y == 0)
        slots[20] = amax > 0.f ? __fdiv_rn(amax, 448.f) : 1.f;
}
