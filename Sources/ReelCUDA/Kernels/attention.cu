// Fused attention, softmax(q k^T * scale + bias) v, with an online softmax over key tiles: the
// score matrix never leaves registers / shared memory. Layouts: q [B, Lq, H, D], k [B, Lk, H, D],
// v [B, Lk, H, Dv], bias [H, Lq, Lk], o [B, Lq, H, Dv].
//
// attn_mma_*: the tensor-core path (bf16 or f16, D = Dv = 64, 128 or 384, no bias), FlashAttention-2
//   style: 4 warps x 16 query rows, 64-key tiles of K and V double-buffered in shared memory by
//   cp.async, S = Q K^T and O += P V with mma.sync m16n8k16 and float32 accumulators; P is
//   re-packed from the S accumulators straight into A fragments (their layouts coincide).
// attn_generic: any dtype, any D, Dv <= 384, optional bias; one warp per query row, 16-key tiles
//   staged in shared memory as float32 and shared by the block's 8 query rows.
#include "common.cuh"

#define GT 16
#define MAXE 12

extern "C" __global__ void __launch_bounds__(256) attn_generic(
        const void* q, const void* k, const void* v, const void* bias, void* o,
        int Lq, int Lk, int H, int D, int Dv, float scale, int dtq, int dtk, int dtv, int dtb, int dto) {
    extern __shared__ float sm[];
    float* ks = sm;            // [GT][D]
    float* vs = sm + GT * D;   // [GT][Dv]
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    int qi = blockIdx.x * 8 + warp, h = blockIdx.y, bb = blockIdx.z;
    bool active = qi < Lq;
    float qr[MAXE], acc[MAXE];
    i64 qbase = (((i64)bb * Lq + qi) * H + h) * D;
    #pragma unroll
    for (int e = 0; e < MAXE; e++) {
        int d = lane + 32 * e;
        qr[e] = (active && d < D) ? load_f(q, qbase + d, dtq) * scale : 0.f;
        acc[e] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int k0 = 0; k0 < Lk; k0 += GT) {
        int nk = min(GT, Lk - k0);
        __syncthreads();
        for (int idx = threadIdx.x; idx < nk * D; idx += blockDim.x) {
            int j = idx / D, d = idx % D;
            ks[j * D + d] = load_f(k, (((i64)bb * Lk + k0 + j) * H + h) * D + d, dtk);
        }
        for (int idx = threadIdx.x; idx < nk * Dv; idx += blockDim.x) {
            int j = idx / Dv, d = idx % Dv;
            vs[j * Dv + d] = load_f(v, (((i64)bb * Lk + k0 + j) * H + h) * Dv + d, dtv);
        }
        __syncthreads();
        if (!active) continue;
        for (int j = 0; j < nk; j++) {
            float s = 0.f;
            #pragma unroll
            for (int e = 0; e < MAXE; e++) { int d = lane + 32 * e; if (d < D) s += qr[e] * ks[j * D + d]; }
            s = warp_sum(s);
            if (bias) s += load_f(bias, ((i64)h * Lq + qi) * Lk + k0 + j, dtb);
            float mn = fmaxf(m, s);
            if (mn == -INFINITY) continue;  // every score so far masked by the bias
            float corr = expf(m - mn), p = expf(s - mn);
            l = l * corr + p;
            #pragma unroll
            for (int e = 0; e < MAXE; e++) { int d = lane + 32 * e; if (d < Dv) acc[e] = acc[e] * corr + p * vs[j * Dv + d]; }
            m = mn;
        }
    }
    if (!active) return;
    float inv = l > 0.f ? 1.f / l : 0.f;
    i64 obase = (((i64)bb * Lq + qi) * H + h) * Dv;
    #pragma unroll
    for (int e = 0; e < MAXE; e++) { int d = lane + 32 * e; if (d < Dv) store_f(o, obase + d, dto, acc[e] * inv); }
}

// ---- tensor-core path ----

template <bool BF16>
__device__ __forceinline__ void mma16816(float* c, const u32* a, const u32* b) {
    if (BF16)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Two floats into one register of 16-bit pairs; the lower k / column index goes in the low half.
template <bool BF16>
__device__ __forceinline__ u32 pack2(float lo, float hi) {
    u32 r;
    if (BF16) asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    else asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

template <bool BF16>
__device__ __forceinline__ float half_to_f(u16 v) { return BF16 ? bf16_to_f32(v) : f16_to_f32(v); }

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
    u32 s = (u32)__cvta_generic_to_shared(smem);
    int bytes = valid ? 16 : 0;  // 0 source bytes: the 16 destination bytes are zero-filled
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(s), "l"(gmem), "r"(bytes));
}

#define BR 64
#define BC 64

// DK: head dim of q/k. DV: the slice of v's head dim this block produces (blockIdx.y = head * chunks
// + chunk), so a head of 384 runs as 3 blocks of 128 output columns that each recompute S: the
// accumulators of 16 x 384 per warp would not fit in registers. QS: Q read from shared memory
// per k-step instead of held in registers (needed when DK is large).
template <int DK, int DV, bool BF16, bool QS>
__device__ __forceinline__ void attn_mma(const u16* __restrict__ q, const u16* __restrict__ k, const u16* __restrict__ v,
                                         u16* __restrict__ o, int Lq, int Lk, int H, int dvTotal, float scale) {
    constexpr int SDK = DK + 8, SDV = DV + 8;  // padded rows: consecutive rows start 4 banks apart
    constexpr int CPRK = DK / 8, CPRV = DV / 8;  // 16-byte chunks per row
    extern __shared__ __align__(16) u16 smem[];
    u16* Ks = smem;                      // [2][BC][SDK]
    u16* Vs = smem + 2 * BC * SDK;       // [2][BC][SDV]
    u16* Qs = Vs + 2 * BC * SDV;         // [BR][SDK] when QS
    const int tid = threadIdx.x, warp = tid / 32, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int chunks = dvTotal / DV;
    const int h = blockIdx.y / chunks, chunk = blockIdx.y % chunks, b = blockIdx.z;
    const int q0 = blockIdx.x * BR + warp * 16;
    const i64 kStride = (i64)H * DK, vStride = (i64)H * dvTotal;
    const int vCol = h * dvTotal + chunk * DV;

    u32 qf[QS ? 1 : DK / 16][4];
    if (QS) {
        for (int idx = tid; idx < BR * CPRK; idx += 128) {
            int r = idx / CPRK, cc = idx % CPRK, row = blockIdx.x * BR + r;
            bool ok = row < Lq;
            cp_async16(Qs + r * SDK + cc * 8, q + (ok ? ((i64)b * Lq + row) * kStride + (i64)h * DK + cc * 8 : 0), ok);
        }
    } else {
        int r0 = q0 + g, r1 = q0 + g + 8;
        const u16* p0 = q + ((i64)b * Lq + r0) * kStride + (i64)h * DK;
        const u16* p1 = q + ((i64)b * Lq + r1) * kStride + (i64)h * DK;
        #pragma unroll
        for (int kk = 0; kk < (QS ? 1 : DK / 16); kk++) {
            int c = kk * 16 + t * 2;
            qf[kk][0] = r0 < Lq ? *(const u32*)(p0 + c) : 0u;
            qf[kk][1] = r1 < Lq ? *(const u32*)(p1 + c) : 0u;
            qf[kk][2] = r0 < Lq ? *(const u32*)(p0 + c + 8) : 0u;
            qf[kk][3] = r1 < Lq ? *(const u32*)(p1 + c + 8) : 0u;
        }
    }
    float acc[DV / 8][4];
    #pragma unroll
    for (int n = 0; n < DV / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;
    const float sl2 = scale * 1.4426950408889634f;  // exp(x) = exp2(x * log2 e)

    auto load_tile = [&](int tile, int buf) {
        int kbase = tile * BC;
        for (int idx = tid; idx < BC * CPRK; idx += 128) {
            int r = idx / CPRK, cc = idx % CPRK, key = kbase + r;
            bool ok = key < Lk;
            cp_async16(Ks + (buf * BC + r) * SDK + cc * 8, k + (ok ? ((i64)b * Lk + key) * kStride + (i64)h * DK + cc * 8 : 0), ok);
        }
        for (int idx = tid; idx < BC * CPRV; idx += 128) {
            int r = idx / CPRV, cc = idx % CPRV, key = kbase + r;
            bool ok = key < Lk;
            cp_async16(Vs + (buf * BC + r) * SDV + cc * 8, v + (ok ? ((i64)b * Lk + key) * vStride + vCol + cc * 8 : 0), ok);
        }
        asm volatile("cp.async.commit_group;");
    };

    const int tiles = (Lk + BC - 1) / BC;
    load_tile(0, 0);  // (with the Q tile, when QS, in the same group)
    for (int tile = 0; tile < tiles; tile++) {
        int buf = tile & 1;
        if (tile + 1 < tiles) { load_tile(tile + 1, buf ^ 1); asm volatile("cp.async.wait_group 1;"); }
        else asm volatile("cp.async.wait_group 0;");
        __syncthreads();
        const u16* Kt = Ks + buf * BC * SDK;
        const u16* Vt = Vs + buf * BC * SDV;

        float s[BC / 8][4];
        #pragma unroll
        for (int j = 0; j < BC / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
        #pragma unroll
        for (int kk = 0; kk < DK / 16; kk++) {
            u32 af[4];
            const u32* a = qf[QS ? 0 : kk];
            if (QS) {
                const u16* qr = Qs + (warp * 16 + g) * SDK + kk * 16 + t * 2;
                af[0] = *(const u32*)qr; af[1] = *(const u32*)(qr + 8 * SDK);
                af[2] = *(const u32*)(qr + 8); af[3] = *(const u32*)(qr + 8 * SDK + 8);
                a = af;
            }
            #pragma unroll
            for (int j = 0; j < BC / 8; j++) {
                const u16* kr = Kt + (j * 8 + g) * SDK + kk * 16 + t * 2;
                u32 bf[2] = {*(const u32*)kr, *(const u32*)(kr + 8)};
                mma16816<BF16>(s[j], a, bf);
            }
        }
        int kbase = tile * BC;
        if (kbase + BC > Lk) {
            #pragma unroll
            for (int j = 0; j < BC / 8; j++)
                #pragma unroll
                for (int e = 0; e < 4; e++)
                    if (kbase + j * 8 + t * 2 + (e & 1) >= Lk) s[j][e] = -INFINITY;
        }
        // Online softmax; rows g and g+8 of the warp's 16, each spread over the 4 threads of a quad.
        float mx0 = -INFINITY, mx1 = -INFINITY;
        #pragma unroll
        for (int j = 0; j < BC / 8; j++) {
            mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
        }
        #pragma unroll
        for (int x = 1; x <= 2; x <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, x));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, x));
        }
        float mn0 = fmaxf(m0, mx0 * sl2), mn1 = fmaxf(m1, mx1 * sl2);
        float c0 = exp2f(m0 - mn0), c1 = exp2f(m1 - mn1);
        m0 = mn0; m1 = mn1;
        float sum0 = 0.f, sum1 = 0.f;
        #pragma unroll
        for (int j = 0; j < BC / 8; j++) {
            s[j][0] = exp2f(s[j][0] * sl2 - mn0); s[j][1] = exp2f(s[j][1] * sl2 - mn0);
            s[j][2] = exp2f(s[j][2] * sl2 - mn1); s[j][3] = exp2f(s[j][3] * sl2 - mn1);
            sum0 += s[j][0] + s[j][1];
            sum1 += s[j][2] + s[j][3];
        }
        l0 = l0 * c0 + sum0;
        l1 = l1 * c1 + sum1;
        #pragma unroll
        for (int n = 0; n < DV / 8; n++) { acc[n][0] *= c0; acc[n][1] *= c0; acc[n][2] *= c1; acc[n][3] *= c1; }

        #pragma unroll
        for (int kk = 0; kk < BC / 16; kk++) {
            u32 a[4] = {pack2<BF16>(s[2 * kk][0], s[2 * kk][1]), pack2<BF16>(s[2 * kk][2], s[2 * kk][3]),
                        pack2<BF16>(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack2<BF16>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
            const u16* v0 = Vt + (kk * 16 + t * 2) * SDV;
            #pragma unroll
            for (int n = 0; n < DV / 8; n++) {
                int c = n * 8 + g;
                u32 bf[2] = {(u32)v0[c] | ((u32)v0[SDV + c] << 16),
                             (u32)v0[8 * SDV + c] | ((u32)v0[9 * SDV + c] << 16)};
                mma16816<BF16>(acc[n], a, bf);
            }
        }
        __syncthreads();  // the next iteration's prefetch overwrites this buffer
    }
    #pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, x);
        l1 += __shfl_xor_sync(0xffffffffu, l1, x);
    }
    float i0 = 1.f / l0, i1 = 1.f / l1;
    int r0 = q0 + g, r1 = q0 + g + 8;
    u16* o0 = o + ((i64)b * Lq + r0) * vStride + vCol;
    u16* o1 = o + ((i64)b * Lq + r1) * vStride + vCol;
    #pragma unroll
    for (int n = 0; n < DV / 8; n++) {
        int c = n * 8 + t * 2;
        if (r0 < Lq) *(u32*)(o0 + c) = pack2<BF16>(acc[n][0] * i0, acc[n][1] * i0);
        if (r1 < Lq) *(u32*)(o1 + c) = pack2<BF16>(acc[n][2] * i1, acc[n][3] * i1);
    }
}

#define ATTN_MMA(NAME, DK, DV, QS, T, BF)                                                                    \
    extern "C" __global__ void __launch_bounds__(128) attn_mma_##NAME##_##T(                                \
        const u16* q, const u16* k, const u16* v, u16* o, int Lq, int Lk, int H, int dvTotal, float scale) { \
        attn_mma<DK, DV, BF, QS>(q, k, v, o, Lq, Lk, H, dvTotal, scale);                                     \
    }
ATTN_MMA(d64, 64, 64, false, bf16, true)
ATTN_MMA(d128, 128, 128, false, bf16, true)
ATTN_MMA(d384, 384, 128, true, bf16, true)
ATTN_MMA(d64, 64, 64, false, f16, false)
ATTN_MMA(d128, 128, 128, false, f16, false)
ATTN_MMA(d384, 384, 128, true, f16, false)

// ---- Split-key merge. Attention over keys cut into S parts, each part's output O_s normalized by
// its own softmax denominator and its statistic L_s = log(sum of exp(scaled scores)) (natural log):
//   out = sum_s exp(L_s - M) O_s / sum_s exp(L_s - M),  M = max_s L_s.
// parts [S, Lq, H, D] (16-bit), stats [S, H, Lq] f32, out [Lq, H, D]; rows = Lq * H, one thread per 8
// values of a row, D a multiple of 8.
extern "C" __global__ void __launch_bounds__(256) attn_merge_v8(
    const void* __restrict__ parts, const float* __restrict__ stats, void* __restrict__ out,
    i64 rows, int Lq, int H, int D, int S, int dt) {
    const int nv = D / 8;
    i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * nv) return;
    i64 row = i / nv;
    int vi = (int)(i - row * nv);
    int q = (int)(row / H), head = (int)(row - (i64)q * H);
    // Up to 4 parts (the split attention's most): every load issued before the first is used.
    float st[4];
    uint4 raw[4];
    #pragma unroll
    for (int s = 0; s < 4; s++) {
        if (s < S) {
            st[s] = stats[((i64)s * H + head) * Lq + q];
            if (dt != DT_F32) raw[s] = __ldg((const uint4*)parts + ((i64)s * rows + row) * nv + vi);
        }
    }
    float m = -INFINITY;
    #pragma unroll
    for (int s = 0; s < 4; s++) if (s < S) m = fmaxf(m, st[s]);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, total = 0.f;
    #pragma unroll
    for (int s = 0; s < 4; s++) {
        if (s < S) {
            float w = __expf(st[s] - m), x[8];
            if (dt == DT_F32) load8(parts, ((i64)s * rows + row) * nv + vi, dt, x);
            else unpack8(raw[s], dt, x);
            total += w;
            #pragma unroll
            for (int e = 0; e < 8; e++) acc[e] += w * x[e];
        }
    }
    float inv = 1.f / total;
    #pragma unroll
    for (int e = 0; e < 8; e++) acc[e] *= inv;
    store8(out, row * nv + vi, dt, acc);
}

// ---- FP8 attention around cuDNN's FP8 SDPA graph (Backend.fp8Attention; the scales are ReelCore's
// FP8Attention, computed here with the same float32 divisions). `slots` is a float buffer of 16-byte
// slots (cuDNN's scale tensors are bound by pointer, 16-byte aligned), slot s at slots[4 * s]:
//   0-2 amax of q, k, v (start at 0)      3-5 their descales amax / 448     6 scale of P (448)
//   7 descale of P (1 / 448)              8 scale of O (224 / amax(v))      9 descale of O (amax(v) / 224)
//   10-11 amax of P and of O (written by cuDNN, unused).
// q [B, Lq, H, D] (nq values), k and v [B, Lk, H, D] (nk each), of one 16-bit or f32 dtype.

// The largest magnitude of q, k or v (blockIdx.y) into its slot: float bits compare as unsigned
// integers for values >= 0, so one atomicMax a block.
extern "C" __global__ void __launch_bounds__(256) fp8_attn_amax(const void* q, const void* k, const void* v,
                                                               i64 nq, i64 nk, int dt, float* slots) {
    const int y = blockIdx.y;
    const void* x = y == 0 ? q : (y == 1 ? k : v);
    const i64 n = y == 0 ? nq : nk;
    float m = 0.f;
    GRID_STRIDE(i, n) m = fmaxf(m, fabsf(load_f(x, i, dt)));
    m = warp_max(m);
    __shared__ float warpMax[8];
    if ((threadIdx.x & 31) == 0) warpMax[threadIdx.x / 32] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x / 32); w++) m = fmaxf(m, warpMax[w]);
        atomicMax((u32*)(slots + 4 * y), __float_as_uint(m));
    }
}

// q, k or v (blockIdx.y) as E4M3 codes at scale 448 / amax (1 for zeros), round to nearest even,
// saturating; the first block also writes the descales and P's and O's scales.
extern "C" __global__ void __launch_bounds__(256) fp8_attn_quantize(const void* q, const void* k, const void* v,
                                                                   unsigned char* q8, unsigned char* k8, unsigned char* v8,
                                                                   i64 nq, i64 nk, int dt, float* slots) {
    const int y = blockIdx.y;
    const void* x = y == 0 ? q : (y == 1 ? k : v);
    unsigned char* x8 = y == 0 ? q8 : (y == 1 ? k8 : v8);
    const i64 n = y == 0 ? nq : nk;
    const float amax = slots[4 * y];
    const float s = amax > 0.f ? __fdiv_rn(448.f, amax) : 1.f;
    GRID_STRIDE(i, n) x8[i] = f32_to_fp8(load_f(x, i, dt) * s);
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        slots[4 * (3 + y)] = amax > 0.f ? __fdiv_rn(amax, 448.f) : 1.f;
        if (y == 2) {
            slots[4 * 6] = 448.f;
            slots[4 * 7] = __fdiv_rn(1.f, 448.f);
            slots[4 * 8] = amax > 0.f ? __fdiv_rn(224.f, amax) : 1.f;
            slots[4 * 9] = amax > 0.f ? __fdiv_rn(amax, 224.f) : 1.f;
        }
    }
}

// O's codes (cuDNN's FP8 output, [B, Lq, H, D]) back to floats: code * descale of O, rounded once to y's dtype.
extern "C" __global__ void __launch_bounds__(256) fp8_attn_output(const unsigned char* o8, const float* slots,
                                                                 void* y, i64 n, int dty) {
    const float s = slots[4 * 9];
    GRID_STRIDE(i, n) store_f(y, i, dty, fp8_to_f32(o8[i]) * s);
}
