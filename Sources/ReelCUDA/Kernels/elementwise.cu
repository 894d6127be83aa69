// Elementwise ops: unary functions, scalar affine/clamp, broadcasting binary ops, adaLN modulate,
// axpby, fill and dtype casts. All memory-bound: one pass, float32 math, grid-stride loops.
#include "common.cuh"

// Op codes, mirrored by the Swift launcher (CUDABackend+Elementwise.swift).
#define U_SILU 0
#define U_GELU_TANH 1
#define U_GELU 2
#define U_RELU 3
#define U_TANH 4
#define U_SIGMOID 5
#define U_EXP 6
#define U_NEG 7
#define U_SQUARE 8
#define U_RSQRT 9
#define U_AFFINE 20
#define U_CLAMP 21

__device__ __forceinline__ float unary_f(int op, float x, float p0, float p1) {
    switch (op) {
    case U_SILU: return x / (1.f + expf(-x));
    // PyTorch's approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    case U_GELU_TANH: return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case U_GELU: return 0.5f * x * (1.f + erff(x * 0.7071067811865476f));
    case U_RELU: return fmaxf(x, 0.f);
    case U_TANH: return tanhf(x);
    case U_SIGMOID: return 1.f / (1.f + expf(-x));
    case U_EXP: return expf(x);
    case U_NEG: return -x;
    case U_SQUARE: return x * x;
    case U_RSQRT: return rsqrtf(x);
    case U_AFFINE: return x * p0 + p1;
    default: return fminf(fmaxf(x, p0), p1);  // U_CLAMP
    }
}

extern "C" __global__ void unary(const void* x, void* y, i64 n, int dtx, int dty, int op, float p0, float p1) {
    GRID_STRIDE(i, n) store_f(y, i, dty, unary_f(op, load_f(x, i, dtx), p0, p1));
}

#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3
#define B_MAX 4
#define B_MIN 5

extern "C" __global__ void binary(const void* a, const void* b, void* y, i64 n, int dta, int dtb, int dty, int op, Bcast bc) {
    GRID_STRIDE(i, n) {
        i64 off[3];
        bcast_offsets(bc, i, off, 2);
        float x = load_f(a, off[0], dta), z = load_f(b, off[1], dtb), r;
        switch (op) {
        case B_ADD: r = x + z; break;
        case B_SUB: r = x - z; break;
        case B_MUL: r = x * z; break;
        case B_DIV: r = x / z; break;
        case B_MAX: r = fmaxf(x, z); break;
        default: r = fminf(x, z); break;
        }
        store_f(y, i, dty, r);
    }
}

// DiT adaLN: y = x * (1 + scale) + shift, scale and shift broadcast (e.g. [B, F, 1, C] over tokens).
extern "C" __global__ void modulate(const void* x, const void* scale, const void* shift, void* y, i64 n,
                                    int dtx, int dtsc, int dtsh, int dty, Bcast bc) {
    GRID_STRIDE(i, n) {
        i64 off[3];
        bcast_offsets(bc, i, off, 3);
        float v = load_f(x, off[0], dtx);
        store_f(y, i, dty, v * (1.f + load_f(scale, off[1], dtsc)) + load_f(shift, off[2], dtsh));
    }
}

extern "C" __global__ void axpby(float alpha, const void* x, float beta, const void* y, void* out, i64 n, int dtx, int dty, int dto) {
    GRID_STRIDE(i, n) store_f(out, i, dto, alpha * load_f(x, i, dtx) + beta * load_f(y, i, dty));
}

// The Presenter: frames in [-1, 1] to bytes, the bits of ReelCore's RGB8.byte (clamp, x 0.5 + 0.5, x 255,
// round half away from zero; NaN -> 0). Multiply and add unfused (__fmul_rn/__fadd_rn): an FMA would round
// once where the host rounds twice and move a value across a .5 boundary.
extern "C" __global__ void rgb8(const void* x, unsigned char* y, i64 n, int dtx) {
    GRID_STRIDE(i, n) {
        float v = load_f(x, i, dtx);
        v = isnan(v) ? 0.f : __fadd_rn(__fmul_rn(fminf(fmaxf(v, -1.f), 1.f), 0.5f), 0.5f);
        y[i] = (unsigned char)roundf(__fmul_rn(v, 255.f));
    }
}

extern "C" __global__ void fill(void* y, i64 n, int dt, float value) {
    GRID_STRIDE(i, n) store_f(y, i, dt, value);
}

// Casts. Integer to integer goes through 64-bit integers (exact); anything with a float through float32.
extern "C" __global__ void cast(const void* x, void* y, i64 n, int dtx, int dty) {
    bool xint = dtx == DT_I32 || dtx == DT_I64, yint = dty == DT_I32 || dty == DT_I64;
    GRID_STRIDE(i, n) {
        if (xint && yint) {
            i64 v = dtx == DT_I32 ? (i64)((const int*)x)[i] : ((const i64*)x)[i];
            if (dty == DT_I32) ((int*)y)[i] = (int)v; else ((i64*)y)[i] = v;
        } else {
            store_f(y, i, dty, load_f(x, i, dtx));
        }
    }
}

// ---- 8-wide variants: same math, 16-byte accesses (see load8). The launcher picks them when the
// element count (or the innermost broadcast axis) is a multiple of 8 and the buffers are aligned.

extern "C" __global__ void unary_v8(const void* x, void* y, i64 n8, int dtx, int dty, int op, float p0, float p1) {
    GRID_STRIDE(j, n8) {
        float v[8];
        load8(x, j, dtx, v);
        #pragma unroll
        for (int e = 0; e < 8; e++) v[e] = unary_f(op, v[e], p0, p1);
        store8(y, j, dty, v);
    }
}

extern "C" __global__ void binary_v8(const void* a, const void* b, void* y, i64 n8, int dta, int dtb, int dty, int op, Bcast bc) {
    GRID_STRIDE(j, n8) {
        i64 off[3];
        bcast_offsets(bc, j * 8, off, 2);
        float x[8], z[8], r[8];
        bcast_load8(a, dta, bc, 0, off[0], x);
        bcast_load8(b, dtb, bc, 1, off[1], z);
        #pragma unroll
        for (int e = 0; e < 8; e++) {
            switch (op) {
            case B_ADD: r[e] = x[e] + z[e]; break;
            case B_SUB: r[e] = x[e] - z[e]; break;
            case B_MUL: r[e] = x[e] * z[e]; break;
            case B_DIV: r[e] = x[e] / z[e]; break;
            case B_MAX: r[e] = fmaxf(x[e], z[e]); break;
            default: r[e] = fminf(x[e], z[e]); break;
            }
        }
        store8(y, j, dty, r);
    }
}

extern "C" __global__ void modulate_v8(const void* x, const void* scale, const void* shift, void* y, i64 n8,
                                       int dtx, int dtsc, int dtsh, int dty, Bcast bc) {
    GRID_STRIDE(j, n8) {
        i64 off[3];
        bcast_offsets(bc, j * 8, off, 3);
        float v[8], sc[8], sh[8];
        bcast_load8(x, dtx, bc, 0, off[0], v);
        bcast_load8(scale, dtsc, bc, 1, off[1], sc);
        bcast_load8(shift, dtsh, bc, 2, off[2], sh);
        #pragma unroll
        for (int e = 0; e < 8; e++) v[e] = v[e] * (1.f + sc[e]) + sh[e];
        store8(y, j, dty, v);
    }
}
