// Shared by every Reel kernel: dtype codes and float32 conversions of the storage formats.
// Written without the CUDA headers (cuda_bf16.h etc.) so NVRTC needs nothing beyond its builtins.
#pragma once

#define INFINITY __int_as_float(0x7f800000)

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;

// Dtype codes, mirrored by DTypeCode in the Swift launcher.
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_I32 3
#define DT_I64 4
#define DT_I8 5
#define DT_U8 6
#define DT_FP8 7

__device__ __forceinline__ float bf16_to_f32(u16 v) { return __uint_as_float(((u32)v) << 16); }
__device__ __forceinline__ u16 f32_to_bf16(float f) {
    u16 r; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f)); return r;
}
__device__ __forceinline__ float f16_to_f32(u16 v) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v)); return f;
}
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(f)); return r;
}

// FP8 E4M3 through the sm_89+ conversion instructions; saturating like the host encoder.
__device__ __forceinline__ float fp8_to_f32(unsigned char v) {
#if __CUDA_ARCH__ >= 890
    u16 in = v, h2lo; u32 h2;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(h2) : "h"(in));
    h2lo = (u16)(h2 & 0xFFFF);
    return f16_to_f32(h2lo);
#else
    int e = (v >> 3) & 15, m = v & 7; float s = (v & 0x80) ? -1.f : 1.f;
    if (e == 15 && m == 7) return __int_as_float(0x7fc00000);
    if (e == 0) return s * m * 0.001953125f;
    return s * (1.f + m / 8.f) * exp2f((float)(e - 7));
#endif
}
__device__ __forceinline__ unsigned char f32_to_fp8(float f) {
#if __CUDA_ARCH__ >= 890
    u16 r; asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(0.f), "f"(f));
    return (unsigned char)(r & 0xFF);
#else
    return 0;  // FP8 storage needs sm_89 or newer; the launcher refuses it before.
#endif
}

// Loads element i of a buffer of dtype `dt` as float32. `dt` is uniform across a launch, so the
// switch costs a predictable branch, and one kernel serves every mix of input/output dtypes.
__device__ __forceinline__ float load_f(const void* p, i64 i, int dt) {
    switch (dt) {
    case DT_F32: return ((const float*)p)[i];
    case DT_F16: return f16_to_f32(((const u16*)p)[i]);
    case DT_BF16: return bf16_to_f32(((const u16*)p)[i]);
    case DT_I32: return (float)((const int*)p)[i];
    case DT_I64: return (float)((const i64*)p)[i];
    case DT_I8: return (float)((const signed char*)p)[i];
    case DT_U8: return (float)((const unsigned char*)p)[i];
    default: return fp8_to_f32(((const unsigned char*)p)[i]);
    }
}

__device__ __forceinline__ void store_f(void* p, i64 i, int dt, float v) {
    switch (dt) {
    case DT_F32: ((float*)p)[i] = v; break;
    case DT_F16: ((u16*)p)[i] = f32_to_f16(v); break;
    case DT_BF16: ((u16*)p)[i] = f32_to_bf16(v); break;
    case DT_I32: ((int*)p)[i] = (int)v; break;
    case DT_I64: ((i64*)p)[i] = (i64)v; break;
    case DT_I8: ((signed char*)p)[i] = (signed char)fmaxf(-128.f, fminf(127.f, rintf(v))); break;
    case DT_U8: ((unsigned char*)p)[i] = (unsigned char)fmaxf(0.f, fminf(255.f, rintf(v))); break;
    default: ((unsigned char*)p)[i] = f32_to_fp8(v); break;
    }
}

// Broadcast indexing for up to 8 axes: the output's extents and, per operand, the element stride
// of each output axis (0 where the operand is broadcast). rank 0 means "all operands contiguous
// and of the output's shape".
struct Bcast {
    i64 dims[8];
    i64 stride[3][8];
    int rank;
};

__device__ __forceinline__ void bcast_offsets(const Bcast& b, i64 i, i64* off, int operands) {
    if (b.rank == 0) { for (int k = 0; k < operands; k++) off[k] = i; return; }
    for (int k = 0; k < operands; k++) off[k] = 0;
    for (int a = b.rank - 1; a >= 0; a--) {
        i64 c = i % b.dims[a];
        i /= b.dims[a];
        for (int k = 0; k < operands; k++) off[k] += c * b.stride[k][a];
    }
}

// Eight consecutive elements (index 8j .. 8j+7) as floats: one 16-byte load for bf16/f16, two for
// f32. Callers guarantee 16-byte alignment; the 8x fewer index computations and wide accesses
// are what the memory-bound ops need to approach the copy rate.
__device__ __forceinline__ void load8(const void* p, i64 j, int dt, float* v) {
    if (dt == DT_F32) {
        float4 a = ((const float4*)p)[2 * j], b = ((const float4*)p)[2 * j + 1];
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
        uint4 u = ((const uint4*)p)[j];
        u32 w[4] = {u.x, u.y, u.z, u.w};
        #pragma unroll
        for (int k = 0; k < 4; k++) {
            u16 lo = (u16)(w[k] & 0xFFFF), hi = (u16)(w[k] >> 16);
            v[2 * k] = dt == DT_BF16 ? bf16_to_f32(lo) : f16_to_f32(lo);
            v[2 * k + 1] = dt == DT_BF16 ? bf16_to_f32(hi) : f16_to_f32(hi);
        }
    }
}

// Sum over the 32 lanes of a warp (every lane gets it).
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ void store8(void* p, i64 j, int dt, const float* v) {
    if (dt == DT_F32) {
        ((float4*)p)[2 * j] = make_float4(v[0], v[1], v[2], v[3]);
        ((float4*)p)[2 * j + 1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        u32 w[4];
        #pragma unroll
        for (int k = 0; k < 4; k++) {
            u16 lo = dt == DT_BF16 ? f32_to_bf16(v[2 * k]) : f32_to_f16(v[2 * k]);
            u16 hi = dt == DT_BF16 ? f32_to_bf16(v[2 * k + 1]) : f32_to_f16(v[2 * k + 1]);
            w[k] = (u32)lo | ((u32)hi << 16);
        }
        ((uint4*)p)[j] = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

// Operand `k` of a broadcast for output elements 8j .. 8j+7 when the innermost output axis is a
// multiple of 8 and the operand's innermost stride is 1 (eight consecutive values) or 0 (one value
// repeated).
__device__ __forceinline__ void bcast_load8(const void* p, int dt, const Bcast& b, int k, i64 off, float* v) {
    if (b.rank != 0 && b.stride[k][b.rank - 1] == 0) {
        float x = load_f(p, off, dt);
        #pragma unroll
        for (int e = 0; e < 8; e++) v[e] = x;
    } else {
        load8(p, off / 8, dt, v);
    }
}

#define GRID_STRIDE(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// Eight 16-bit values (bf16 or f16 by `dt`) of one 16-byte vector, as floats.
__device__ __forceinline__ void unpack8(uint4 u, int dt, float* v) {
    u32 w[4] = {u.x, u.y, u.z, u.w};
    #pragma unroll
    for (int k = 0; k < 4; k++) {
        u16 lo = (u16)(w[k] & 0xFFFF), hi = (u16)(w[k] >> 16);
        v[2 * k] = dt == DT_BF16 ? bf16_to_f32(lo) : f16_to_f32(lo);
        v[2 * k + 1] = dt == DT_BF16 ? bf16_to_f32(hi) : f16_to_f32(hi);
    }
}

// Eight values times `inv` as FP8 E4M3 (round to nearest even, saturated), packed in element
// order: four paired conversions (cvt ... e4m3x2 puts its first source in the upper byte).
__device__ __forceinline__ uint2 fp8x8(const float* v, float inv) {
#if __CUDA_ARCH__ >= 890
    u32 w[2];
    #pragma unroll
    for (int k = 0; k < 2; k++) {
        u16 lo, hi;
        asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lo) : "f"(v[4 * k + 1] * inv), "f"(v[4 * k] * inv));
        asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hi) : "f"(v[4 * k + 3] * inv), "f"(v[4 * k + 2] * inv));
        w[k] = (u32)lo | ((u32)hi << 16);
    }
    return make_uint2(w[0], w[1]);
#else
    return make_uint2(0, 0);
#endif
}

// Row quantization formats (Backend.quantizeRows): FP8 E4M3 (largest code 448) or symmetric INT8
// (codes in [-127, 127]).
#define Q_FP8 0
#define Q_INT8 1
__device__ __forceinline__ float q_max(int fmt) { return fmt == Q_INT8 ? 127.f : 448.f; }

// f as an INT8 code: rounded to nearest even (cvt.rni), clamped to [-127, 127] (the host's arithmetic).
__device__ __forceinline__ signed char f32_to_i8(float f) {
    return (signed char)max(-127, min(127, __float2int_rn(f)));
}
__device__ __forceinline__ unsigned char f32_to_q8(float f, int fmt) {
    return fmt == Q_INT8 ? (unsigned char)f32_to_i8(f) : f32_to_fp8(f);
}

// Eight values times `inv` as INT8 codes, packed in element order (little-endian bytes).
__device__ __forceinline__ uint2 int8x8(const float* v, float inv) {
    u32 w[2] = {0u, 0u};
    #pragma unroll
    for (int e = 0; e < 8; e++) w[e / 4] |= (u32)(unsigned char)f32_to_i8(v[e] * inv) << (8 * (e % 4));
    return make_uint2(w[0], w[1]);
}
__device__ __forceinline__ uint2 q8x8(const float* v, float inv, int fmt) {
    return fmt == Q_INT8 ? int8x8(v, inv) : fp8x8(v, inv);
}

// A row of C <= 2048 (nv = C / 8 vectors of 8) held by one warp: lane `lane` holds vectors
// lane + 32 i. 16-bit rows stay in registers as their packed 16-byte vectors (4 registers per 8
// values; all loads issued before the first use); f32 rows are read again from memory (L1) at each
// `get`. Keeping the row unpacked (64 floats per lane) took ~110 registers, 2 blocks of 256 per SM,
// and the row norms ran at 0.4 of the copy rate against 0.93 for the elementwise kernels.
// A row of C = 8 nv values (16-byte aligned) held by a group of S threads - a warp (S = 32, rows of C <= 2048) or a
// block of S = 128 threads (rows of C <= 8192, one row a block) -, thread t of the group holding vectors t, t + S, ...
// (at most 8), read once. `group_sum` / `group_max` reduce over the group (for S > 32 through shared memory: every
// thread of the block must call them).
template <int S>
struct RowVec8 {
    uint4 raw[8];
    const void* x;
    i64 base8;
    int nv, lane, dt;

    __device__ __forceinline__ RowVec8(const void* x_, i64 base8_, int nv_, int lane_, int dt_)
        : x(x_), base8(base8_), nv(nv_), lane(lane_), dt(dt_) {
        if (dt != DT_F32) {
            #pragma unroll
            for (int i = 0; i < 8; i++) {
                int vi = lane + S * i;
                raw[i] = vi < nv ? __ldg((const uint4*)x + base8 + vi) : make_uint4(0, 0, 0, 0);
            }
        }
    }
    __device__ __forceinline__ int vec(int i) const { return lane + S * i; }
    __device__ __forceinline__ bool has(int i) const { return lane + S * i < nv; }
    // Vector i (has(i)) as 8 floats.
    __device__ __forceinline__ void get(int i, float* v) const {
        if (dt == DT_F32) load8(x, base8 + lane + S * i, DT_F32, v);
        else unpack8(raw[i], dt, v);
    }
    // The thread's sum of its values (of their squares when `squares`; of (v - centre)^2 when
    // `centre` is given with squares).
    __device__ __forceinline__ float sum(bool squares, float centre = 0.f) const {
        float s = 0.f;
        #pragma unroll
        for (int i = 0; i < 8; i++) {
            if (has(i)) {
                float v[8];
                get(i, v);
                #pragma unroll
                for (int e = 0; e < 8; e++) { float d = v[e] - centre; s += squares ? d * d : v[e]; }
            }
        }
        return s;
    }
};
typedef RowVec8<32> RowV8;

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The sum (max) over a row group of S threads (see RowVec8).
template <int S, bool MAX>
__device__ __forceinline__ float group_reduce(float v) {
    v = MAX ? warp_max(v) : warp_sum(v);
    if (S == 32) return v;
    __shared__ float partial[S / 32];
    __syncthreads();   // an earlier reduction's reads are done
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    float t = partial[0];
    #pragma unroll
    for (int i = 1; i < S / 32; i++) t = MAX ? fmaxf(t, partial[i]) : t + partial[i];
    return t;
}
template <int S> __device__ __forceinline__ float group_sum(float v) { return group_reduce<S, false>(v); }
template <int S> __device__ __forceinline__ float group_max(float v) { return group_reduce<S, true>(v); }
