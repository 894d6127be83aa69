// Layout ops move elements without arithmetic, so they work on raw elements of 1, 2, 4 or 8 bytes
// and serve every dtype: strided copies (concat, slice, copy-into), permute, nearest upsampling,
// embedding gathers.
#include "common.cuh"

__device__ __forceinline__ void move_elem(const void* src, i64 s, void* dst, i64 d, int esize) {
    switch (esize) {
    case 1: ((unsigned char*)dst)[d] = ((const unsigned char*)src)[s]; break;
    case 2: ((u16*)dst)[d] = ((const u16*)src)[s]; break;
    case 4: ((u32*)dst)[d] = ((const u32*)src)[s]; break;
    default: ((u64*)dst)[d] = ((const u64*)src)[s]; break;
    }
}

// `outer` rows of `len` elements: dst[o * dstStride + dstOffset + k] = src[o * srcStride + srcOffset + k].
extern "C" __global__ void strided_copy(const void* src, void* dst, i64 outer, i64 len, i64 srcStride, i64 srcOffset,
                                        i64 dstStride, i64 dstOffset, int esize) {
    i64 n = outer * len;
    GRID_STRIDE(i, n) {
        i64 o = i / len, k = i % len;
        move_elem(src, o * srcStride + srcOffset + k, dst, o * dstStride + dstOffset + k, esize);
    }
}

// Output axis a has extent bc.dims[a]; the source element stride along it is bc.stride[0][a].
extern "C" __global__ void permute(const void* src, void* dst, i64 n, Bcast bc, int esize) {
    GRID_STRIDE(i, n) {
        i64 off[1];
        bcast_offsets(bc, i, off, 1);
        move_elem(src, off[0], dst, i, esize);
    }
}

// [outer, H, W, C] -> [outer, H*sh, W*sw, C]
extern "C" __global__ void upsample_nearest(const void* src, void* dst, i64 outer, int H, int W, int C, int sh, int sw, int esize) {
    i64 Ho = (i64)H * sh, Wo = (i64)W * sw;
    i64 n = outer * Ho * Wo * C;
    GRID_STRIDE(i, n) {
        i64 c = i % C, r = i / C;
        i64 xo = r % Wo; r /= Wo;
        i64 yo = r % Ho; i64 o = r / Ho;
        move_elem(src, ((o * H + yo / sh) * W + xo / sw) * C + c, dst, i, esize);
    }
}

// Rows of table [V, C] picked by ids (validated on the host before the launch).
extern "C" __global__ void embedding(const void* ids, int ids64, const void* table, void* out, i64 count, i64 C, int esize) {
    i64 n = count * C;
    GRID_STRIDE(i, n) {
        i64 r = i / C, c = i % C;
        i64 id = ids64 ? ((const i64*)ids)[r] : (i64)((const int*)ids)[r];
        move_elem(table, id * C + c, out, i, esize);
    }
}

// 16-byte variants: when the innermost output axis is contiguous in the source too and a multiple
// of 16 bytes, each thread moves one 16-byte vector (`per` elements) instead of one element.
extern "C" __global__ void permute_v16(const void* src, void* dst, i64 nv, Bcast bc, int per) {
    GRID_STRIDE(u, nv) {
        i64 off[1];
        bcast_offsets(bc, u * per, off, 1);
        ((uint4*)dst)[u] = ((const uint4*)src)[off[0] / per];
    }
}

// [outer, H, W, C] -> [outer, H*sh, W*sw, C] with C * esize a multiple of 16; `cv` = vectors per pixel.
extern "C" __global__ void upsample_nearest_v16(const void* src, void* dst, i64 outer, int H, int W, int cv, int sh, int sw) {
    i64 Ho = (i64)H * sh, Wo = (i64)W * sw;
    i64 n = outer * Ho * Wo * cv;
    GRID_STRIDE(i, n) {
        i64 c = i % cv, r = i / cv;
        i64 xo = r % Wo; r /= Wo;
        i64 yo = r % Ho; i64 o = r / Ho;
        ((uint4*)dst)[i] = ((const uint4*)src)[((o * H + yo / sh) * W + xo / sw) * cv + c];
    }
}
