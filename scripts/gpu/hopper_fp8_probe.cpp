// Probe for Reel's FP8 Hopper attention (attn_sm90_d128_e4m3 and fp8_attn_quantize_vt in
// Sources/ReelCUDA/Kernels/attention_sm90.cu) on the GPU machine, outside the Swift build, from the same CUBIN as
// hopper_attention_probe.cpp: Q and K quantized here (E4M3 at 448 / amax, round to nearest even), V by the kernel
// under test into its transposed, key-permuted layout; the attention against a float64 reference computed from the
// very codes (so what is left is P's rounding to E4M3 and float32 sums), at shapes cut at both ends and the DiT's,
// and the DiT's timed. A variant with V's permutation undone (-DF8_VT_IDENTITY=1) must fail both checks: vt's codes
// and the attention.
//
//   ./fp8probe k.cubin         # scripts/gpu/hopper_probe.sh builds and runs it
#include "hopper_probe_common.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>


static uint16_t to_bf16(float f) { uint32_t u; std::memcpy(&u, &f, 4); u += 0x7FFF + ((u >> 16) & 1); return (uint16_t)(u >> 16); }
static float from_bf16(uint16_t v) { uint32_t u = (uint32_t)v << 16; float f; std::memcpy(&f, &u, 4); return f; }

// E4M3 (bias 7, no infinities, 448 the largest finite): decode, and encode to nearest, ties to even, saturating.
static float e4m3(uint8_t c) {
    const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    const float mag = e == 0 ? std::ldexp((float)m, -9) : std::ldexp(1.f + m / 8.f, e - 7);
    return s ? -mag : mag;
}
static std::vector<float> positive;   // codes 0..126 in increasing order
static uint8_t to_e4m3(float x) {
    const float a = std::min(std::fabs(x), 448.f);
    int i = (int)(std::lower_bound(positive.begin(), positive.end(), a) - positive.begin());
    if (i > 126) i = 126;
    if (i > 0) {
        const float lo = positive[i - 1], hi = positive[i];
        if (a - lo < hi - a || (a - lo == hi - a && ((i - 1) & 1) == 0)) i--;
    }
    return (uint8_t)(i | (x < 0 ? 0x80 : 0));
}

// The key (within a group of 32) whose score a thread's k32 A fragment carries at position p: thread q = lane % 4
// holds the scores of columns 8 j + 2 q + {0, 1} (the m64n128 accumulator layout) and its fragment takes positions
// 4 q + {0..3} and 16 + 4 q + {0..3} (the k32 8-bit A layout), in the order of the registers the kernel packs.
static int key_at(int p) {
    const int q = (p % 16) / 4, i = p % 4 + (p >= 16 ? 4 : 0);
    const int held[8] = {2 * q, 2 * q + 1, 8 + 2 * q, 9 + 2 * q, 16 + 2 * q, 17 + 2 * q, 24 + 2 * q, 25 + 2 * q};
    return held[i];
}

static CUtensorMap map8(CUdeviceptr p, cuuint64_t inner, cuuint64_t rows, cuuint64_t batch) {
    CUtensorMap m;
    cuuint64_t dims[3] = {inner, rows, batch}, strides[2] = {inner, inner * rows};
    cuuint32_t box[3] = {128, 128, 1}, steps[3] = {1, 1, 1};
    CHECK(cuTensorMapEncodeTiled(&m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, (void*)p, dims, strides, box, steps,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                                 CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    return m;
}

int main(int argc, char** argv) {
    if (argc < 2) { std::printf("usage: fp8probe KERNEL.cubin\n"); return 2; }
    for (int c = 0; c < 127; c++) positive.push_back(e4m3((uint8_t)c));
    CHECK(cuInit(0));
    CUdevice dev; CHECK(cuDeviceGet(&dev, 0));
    CUcontext ctx; CHECK(cuDevicePrimaryCtxRetain(&ctx, dev)); CHECK(cuCtxSetCurrent(ctx));
    CUmodule mod; CHECK(cuModuleLoad(&mod, argv[1]));
    CUfunction fn, fvt;
    CHECK(cuModuleGetFunction(&fn, mod, "attn_sm90_d128_e4m3"));
    CHECK(cuModuleGetFunction(&fvt, mod, "fp8_attn_quantize_vt"));
    const int shared = 1024 + 16384 + 2 * 4 * 16384 + 128;
    CHECK(cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared));
    struct Case { int b, lq, lk, h; bool time; };
    const Case cases[] = {{1, 128, 128, 1, false}, {1, 200, 333, 2, false}, {1, 130, 40, 1, false}, {1, 77, 1, 3, false},
                          {2, 300, 520, 2, false}, {1, 4680, 18720, 12, true}, {1, 4680, 512, 12, true}};
    int failures = 0;
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (const Case& c : cases) {
        const size_t nq = (size_t)c.b * c.lq * c.h * 128, nk = (size_t)c.b * c.lk * c.h * 128;
        const int lk8 = (c.lk + 31) / 32 * 32;
        // Sharper than unit scores: q at twice unit scale (the DiT's q/k norms make its attention peaked too).
        std::vector<float> q(nq), k(nk), v(nk);
        for (auto& x : q) x = 2.f * from_bf16(to_bf16(normal(rng)));
        for (auto& x : k) x = from_bf16(to_bf16(normal(rng)));
        for (auto& x : v) x = from_bf16(to_bf16(normal(rng)));
        auto amax = [](const std::vector<float>& x) { float m = 0; for (float y : x) m = std::max(m, std::fabs(y)); return m; };
        const float aq = amax(q), ak = amax(k), av = amax(v);
        std::vector<uint8_t> q8(nq), k8(nk);
        for (size_t i = 0; i < nq; i++) q8[i] = to_e4m3(q[i] * (448.f / aq));
        for (size_t i = 0; i < nk; i++) k8[i] = to_e4m3(k[i] * (448.f / ak));
        std::vector<uint16_t> vb(nk), o(nq);
        for (size_t i = 0; i < nk; i++) vb[i] = to_bf16(v[i]);
        float slots[48] = {0};
        slots[0] = aq; slots[4] = ak; slots[8] = av; slots[12] = aq / 448.f; slots[16] = ak / 448.f;
        CUdeviceptr dq, dk, dv, dvt, dslots, dout;
        CHECK(cuMemAlloc(&dq, nq)); CHECK(cuMemAlloc(&dk, nk)); CHECK(cuMemAlloc(&dv, nk * 2));
        CHECK(cuMemAlloc(&dvt, (size_t)c.b * c.h * 128 * lk8)); CHECK(cuMemAlloc(&dslots, sizeof slots)); CHECK(cuMemAlloc(&dout, nq * 2));
        CHECK(cuMemcpyHtoD(dq, q8.data(), nq)); CHECK(cuMemcpyHtoD(dk, k8.data(), nk)); CHECK(cuMemcpyHtoD(dv, vb.data(), nk * 2));
        CHECK(cuMemcpyHtoD(dslots, slots, sizeof slots));
        CHECK(cuMemsetD8(dout, 0xFF, nq * 2));
        int lk = c.lk, lk8arg = lk8, h = c.h, dtBf16 = 2;   // common.cuh's DT_BF16
        {
            void* vargs[] = {&dv, &dvt, &dslots, &lk, &lk8arg, &h, &dtBf16};
            CHECK(cuLaunchKernel(fvt, lk8 / 32, 4 * c.h, c.b, 32, 8, 1, 0, 0, vargs, nullptr));
            CHECK(cuCtxSynchronize());
        }
        std::vector<uint8_t> vt((size_t)c.b * c.h * 128 * lk8);
        CHECK(cuMemcpyDtoH(vt.data(), dvt, vt.size()));
        CHECK(cuMemcpyDtoH(slots, dslots, sizeof slots));
        // V's codes as the reference reads them (rounded here, natural order), and the layout vt must have: position
        // p of a 32-key group holds the key whose score the A fragment's position p carries (see key_at).
        std::vector<float> vref(nk);
        for (size_t i = 0; i < nk; i++) vref[i] = e4m3(to_e4m3(v[i] * (448.f / av))) * (av / 448.f);
        size_t codeMismatch = 0;
        for (int b = 0; b < c.b; b++)
            for (int hh = 0; hh < c.h; hh++)
                for (int d = 0; d < 128; d++)
                    for (int p = 0; p < lk8; p++) {
                        const int key = p / 32 * 32 + key_at(p % 32);
                        const uint8_t want = key < c.lk ? to_e4m3(v[(((size_t)b * c.lk + key) * c.h + hh) * 128 + d] * (448.f / av)) : 0;
                        codeMismatch += vt[(((size_t)b * c.h + hh) * 128 + d) * lk8 + p] != want;
                    }
        codeMismatch += std::fabs(slots[20] - av / 448.f) > 1e-6f * av;
        CUtensorMap tq = map8(dq, (cuuint64_t)c.h * 128, c.lq, c.b), tk = map8(dk, (cuuint64_t)c.h * 128, c.lk, c.b),
                    tv = map8(dvt, lk8, (cuuint64_t)c.h * 128, c.b);
        CUdeviceptr stats = 0;
        int lq = c.lq, splits = 1;
        const float scale = 1.f / std::sqrt(128.f);
        float scale_log2 = scale * 1.4426950408889634f;
        void* args[] = {&tq, &tk, &tv, &dslots, &dout, &stats, &lq, &lk, &h, &splits, &scale_log2};
        auto launch = [&] { CHECK(cuLaunchKernel(fn, (c.lq + 127) / 128, c.h, c.b, 384, 1, 1, shared, 0, args, nullptr)); };
        launch();
        CHECK(cuCtxSynchronize());
        CHECK(cuMemcpyDtoH(o.data(), dout, nq * 2));
        double err2 = 0, ref2 = 0;
        std::vector<double> s(c.lk);
        const double descQ = aq / 448.0, descK = ak / 448.0;
        for (int b = 0; b < c.b; b++)
            for (int r = 0; r < c.lq; r++) {
                if (c.lq > 1024 && r >= 8 && r < c.lq - 8) continue;
                for (int hh = 0; hh < c.h; hh++) {
                    const uint8_t* qr = &q8[(((size_t)b * c.lq + r) * c.h + hh) * 128];
                    double m = -1e300, sum = 0;
                    for (int j = 0; j < c.lk; j++) {
                        const uint8_t* kr = &k8[(((size_t)b * c.lk + j) * c.h + hh) * 128];
                        double dot = 0;
                        for (int d = 0; d < 128; d++) dot += (double)e4m3(qr[d]) * e4m3(kr[d]);
                        s[j] = dot * descQ * descK * scale;
                        m = std::max(m, s[j]);
                    }
                    for (int j = 0; j < c.lk; j++) { s[j] = std::exp(s[j] - m); sum += s[j]; }
                    for (int d = 0; d < 128; d++) {
                        double ref = 0;
                        for (int j = 0; j < c.lk; j++) ref += s[j] * vref[(((size_t)b * c.lk + j) * c.h + hh) * 128 + d];
                        ref /= sum;
                        const double got = from_bf16(o[(((size_t)b * c.lq + r) * c.h + hh) * 128 + d]);
                        const double e = std::isfinite(got) ? got - ref : 1e30;
                        err2 += e * e; ref2 += ref * ref;
                    }
                }
            }
        const double nmse = err2 / std::max(ref2, 1e-30);
        const bool ok = nmse < 1e-2 && codeMismatch == 0;
        failures += !ok;
        std::printf("fp8 B%d Lq%d Lk%d H%d: nmse %.3e (P in E4M3 against exact), V codes differing %zu%s", c.b, c.lq, c.lk, c.h,
                    nmse, codeMismatch, ok ? " ok" : " FAIL");
        if (c.time) print_attention_time(launch, c.b, c.lq, c.lk, c.h);
        std::printf("\n");
        for (CUdeviceptr d : {dq, dk, dv, dvt, dslots, dout}) cuMemFree(d);
    }
    std::printf("%s\n", failures ? "fp8 probe: FAILED" : "fp8 probe: all cases within 1e-2");
    return failures ? 1 : 0;
}
