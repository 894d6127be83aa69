// Probe for Reel's Hopper attention kernel (Sources/ReelCUDA/Kernels/attention_sm90.cu) on the GPU machine,
// outside the Swift build: loads a CUBIN that nvcc compiled from scripts/gpu/hopper_probe_kernels.cu (the kernel and
// its stage probes; optionally with the kernel's switches changed), runs the stage probes (a TMA box through the
// swizzle, one S = Q K^T tile, one O = P V tile) against exact products, then the kernel on random bf16 inputs against
// a float64 CPU reference, and times it.
//
//   nvcc -arch=sm_90a -cubin -I Sources/ReelCUDA/Kernels -o k.cubin scripts/gpu/hopper_probe_kernels.cu
//   g++ -O2 -std=c++17 -I /usr/local/cuda/include -o probe scripts/gpu/hopper_attention_probe.cpp -lcuda
//   ./probe k.cubin            # scripts/gpu/hopper_probe.sh does all of it, with the variants
#include "hopper_probe_common.h"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>


static uint16_t to_bf16(float f) { uint32_t u; std::memcpy(&u, &f, 4); u += 0x7FFF + ((u >> 16) & 1); return (uint16_t)(u >> 16); }
static float from_bf16(uint16_t v) { uint32_t u = (uint32_t)v << 16; float f; std::memcpy(&f, &u, 4); return f; }

static CUtensorMap tensor_map(CUdeviceptr p, int rows, int batch, int heads) {
    CUtensorMap m;
    cuuint64_t dims[3] = {(cuuint64_t)heads * 128, (cuuint64_t)rows, (cuuint64_t)batch};
    cuuint64_t strides[2] = {(cuuint64_t)heads * 128 * 2, (cuuint64_t)rows * heads * 128 * 2};
    cuuint32_t box[3] = {64, 128, 1}, steps[3] = {1, 1, 1};
    CHECK(cuTensorMapEncodeTiled(&m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void*)p, dims, strides, box, steps,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                                 CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    return m;
}

int main(int argc, char** argv) {
    if (argc < 2) { std::printf("usage: probe KERNEL.cubin\n"); return 2; }
    CHECK(cuInit(0));
    CUdevice dev; CHECK(cuDeviceGet(&dev, 0));
    CUcontext ctx; CHECK(cuDevicePrimaryCtxRetain(&ctx, dev)); CHECK(cuCtxSetCurrent(ctx));
    CUmodule mod; CHECK(cuModuleLoad(&mod, argv[1]));
    CUfunction fn; CHECK(cuModuleGetFunction(&fn, mod, "attn_sm90_d128_bf16"));
    const int shared = 1024 + 128 * 128 * 2 + 6 * 128 * 128 * 2 + 128;   // room for 3 stages, as Reel asks
    CHECK(cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared));
    int failures = 0;
    // The stages, each against its exact result: the first wrong one says where to look.
    {
        std::mt19937 rng(3);
        std::normal_distribution<float> normal(0.f, 1.f);
        std::uniform_real_distribution<float> unit(0.f, 1.f);
        CUfunction ftma, fqk, fpv;
        CHECK(cuModuleGetFunction(&ftma, mod, "probe_tma")); CHECK(cuModuleGetFunction(&fqk, mod, "probe_qk"));
        CHECK(cuModuleGetFunction(&fpv, mod, "probe_pv"));
        const int probeShared = 1024 + 3 * 32768 + 64;
        for (CUfunction f : {ftma, fqk, fpv}) CHECK(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, probeShared));
        auto upload = [](const std::vector<uint16_t>& h) {
            CUdeviceptr d; CHECK(cuMemAlloc(&d, h.size() * 2)); CHECK(cuMemcpyHtoD(d, h.data(), h.size() * 2)); return d;
        };
        auto report = [&](const char* what, double worst, double scale) {
            const bool ok = worst <= 1e-3 * std::max(scale, 1e-30);
            failures += !ok;
            std::printf("stage %-4s max error %.3e of max %.3e%s\n", what, worst, scale, ok ? " ok" : " FAIL");
        };
        // A TMA box of a [1, 200, 2, 128] tensor: head 1's upper half of the dim (columns 192..<256), rows 0..<128.
        std::vector<uint16_t> src(200 * 256);
        for (auto& x : src) x = to_bf16(normal(rng));
        CUdeviceptr dsrc = upload(src), dbox;
        CHECK(cuMemAlloc(&dbox, 128 * 64 * 2));
        CUtensorMap tsrc = tensor_map(dsrc, 200, 1, 2);
        int col0 = 192;
        void* targs[] = {&tsrc, &dbox, &col0};
        CHECK(cuLaunchKernel(ftma, 1, 1, 1, 128, 1, 1, probeShared, 0, targs, nullptr));
        CHECK(cuCtxSynchronize());
        std::vector<uint16_t> box(128 * 64);
        CHECK(cuMemcpyDtoH(box.data(), dbox, box.size() * 2));
        double worst = 0;
        for (int r = 0; r < 128; r++)
            for (int c = 0; c < 64; c++) worst = std::max(worst, (double)std::fabs(from_bf16(box[r * 64 + c]) - from_bf16(src[r * 256 + col0 + c])));
        report("tma", worst, 1);
        // S = Q K^T: Q and K of [1, 128, 1, 128].
        std::vector<uint16_t> q(128 * 128), k(128 * 128), v(128 * 128), pm(64 * 128);
        for (auto& x : q) x = to_bf16(normal(rng));
        for (auto& x : k) x = to_bf16(normal(rng));
        for (auto& x : v) x = to_bf16(normal(rng));
        for (auto& x : pm) x = to_bf16(unit(rng));
        CUdeviceptr dq = upload(q), dk = upload(k), dv = upload(v), dp = upload(pm), dout;
        CHECK(cuMemAlloc(&dout, 64 * 128 * 4));
        CUtensorMap tq = tensor_map(dq, 128, 1, 1), tk = tensor_map(dk, 128, 1, 1), tv = tensor_map(dv, 128, 1, 1);
        void* qkargs[] = {&tq, &tk, &dout};
        CHECK(cuLaunchKernel(fqk, 1, 1, 1, 128, 1, 1, probeShared, 0, qkargs, nullptr));
        CHECK(cuCtxSynchronize());
        std::vector<float> got(64 * 128);
        CHECK(cuMemcpyDtoH(got.data(), dout, got.size() * 4));
        double scale = 0;
        worst = 0;
        for (int r = 0; r < 64; r++)
            for (int c = 0; c < 128; c++) {
                double ref = 0;
                for (int d = 0; d < 128; d++) ref += (double)from_bf16(q[r * 128 + d]) * from_bf16(k[c * 128 + d]);
                scale = std::max(scale, std::fabs(ref));
                worst = std::max(worst, std::isfinite(got[r * 128 + c]) ? std::fabs(got[r * 128 + c] - ref) : 1e30);
            }
        report("qk", worst, scale);
        // O = P V: P [64][128] in [0, 1), V of [1, 128, 1, 128].
        void* pvargs[] = {&dp, &tv, &dout};
        CHECK(cuLaunchKernel(fpv, 1, 1, 1, 128, 1, 1, probeShared, 0, pvargs, nullptr));
        CHECK(cuCtxSynchronize());
        CHECK(cuMemcpyDtoH(got.data(), dout, got.size() * 4));
        scale = 0;
        worst = 0;
        for (int r = 0; r < 64; r++)
            for (int d = 0; d < 128; d++) {
                double ref = 0;
                for (int j = 0; j < 128; j++) ref += (double)from_bf16(pm[r * 128 + j]) * from_bf16(v[j * 128 + d]);
                scale = std::max(scale, std::fabs(ref));
                worst = std::max(worst, std::isfinite(got[r * 128 + d]) ? std::fabs(got[r * 128 + d] - ref) : 1e30);
            }
        report("pv", worst, scale);
        for (CUdeviceptr d : {dsrc, dbox, dq, dk, dv, dp, dout}) cuMemFree(d);
    }
    struct Case { int b, lq, lk, h; bool time; };
    const Case cases[] = {{1, 128, 128, 1, false}, {1, 200, 333, 2, false}, {1, 130, 64, 1, false}, {1, 77, 1, 3, false},
                          {2, 300, 520, 2, false}, {1, 4680, 18720, 12, true}, {1, 4680, 512, 12, true}};
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.f, 1.f);
    for (const Case& c : cases) {
        const size_t nq = (size_t)c.b * c.lq * c.h * 128, nk = (size_t)c.b * c.lk * c.h * 128;
        std::vector<uint16_t> q(nq), k(nk), v(nk), o(nq);
        for (auto& x : q) x = to_bf16(normal(rng));
        for (auto& x : k) x = to_bf16(normal(rng));
        for (auto& x : v) x = to_bf16(normal(rng));
        CUdeviceptr dq, dk, dv, dout;
        CHECK(cuMemAlloc(&dq, nq * 2)); CHECK(cuMemAlloc(&dk, nk * 2)); CHECK(cuMemAlloc(&dv, nk * 2)); CHECK(cuMemAlloc(&dout, nq * 2));
        CHECK(cuMemcpyHtoD(dq, q.data(), nq * 2)); CHECK(cuMemcpyHtoD(dk, k.data(), nk * 2)); CHECK(cuMemcpyHtoD(dv, v.data(), nk * 2));
        CHECK(cuMemsetD8(dout, 0xFF, nq * 2));   // NaN: rows never written show up
        CUtensorMap tq = tensor_map(dq, c.lq, c.b, c.h), tk = tensor_map(dk, c.lk, c.b, c.h), tv = tensor_map(dv, c.lk, c.b, c.h);
        CUdeviceptr parts = 0, stats = 0;
        int lq = c.lq, lk = c.lk, h = c.h, whole = (c.lq + 127) / 128, splits = 1;   // every tile whole
        float scale = 1.f / std::sqrt(128.f), scale_log2 = scale * 1.4426950408889634f;
        void* args[] = {&tq, &tk, &tv, &dout, &parts, &stats, &lq, &lk, &h, &whole, &splits, &scale_log2};
        auto launch = [&] {
            CHECK(cuLaunchKernel(fn, whole * c.h * c.b, 1, 1, 384, 1, 1, shared, 0, args, nullptr));
        };
        launch();
        CHECK(cuCtxSynchronize());
        CHECK(cuMemcpyDtoH(o.data(), dout, nq * 2));
        // Reference rows: all of them for small cases, the first and last 8 of each batch for the large ones.
        double err2 = 0, ref2 = 0, worst = 0;
        int firstBad = -1;
        std::vector<double> s(c.lk);
        for (int b = 0; b < c.b; b++) {
            for (int r = 0; r < c.lq; r++) {
                if (c.lq > 1024 && r >= 8 && r < c.lq - 8) continue;
                for (int hh = 0; hh < c.h; hh++) {
                    const uint16_t* qr = &q[(((size_t)b * c.lq + r) * c.h + hh) * 128];
                    double m = -1e300;
                    for (int j = 0; j < c.lk; j++) {
                        const uint16_t* kr = &k[(((size_t)b * c.lk + j) * c.h + hh) * 128];
                        double dot = 0;
                        for (int d = 0; d < 128; d++) dot += (double)from_bf16(qr[d]) * from_bf16(kr[d]);
                        s[j] = dot * scale;
                        m = std::max(m, s[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < c.lk; j++) { s[j] = std::exp(s[j] - m); sum += s[j]; }
                    for (int d = 0; d < 128; d++) {
                        double ref = 0;
                        for (int j = 0; j < c.lk; j++) ref += s[j] * from_bf16(v[(((size_t)b * c.lk + j) * c.h + hh) * 128 + d]);
                        ref /= sum;
                        double got = from_bf16(o[(((size_t)b * c.lq + r) * c.h + hh) * 128 + d]);
                        double e = std::isfinite(got) ? got - ref : 1e30;
                        err2 += e * e; ref2 += ref * ref; worst = std::max(worst, std::fabs(e));
                        if (std::fabs(e) > 0.05 + 0.05 * std::fabs(ref) && firstBad < 0) firstBad = r * 1000 + hh;
                    }
                }
            }
        }
        const double nmse = err2 / std::max(ref2, 1e-30);
        const bool ok = nmse < 1e-4;
        failures += !ok;
        std::printf("B%d Lq%d Lk%d H%d: nmse %.3e, max error %.3e%s", c.b, c.lq, c.lk, c.h, nmse, worst, ok ? " ok" : " FAIL");
        if (firstBad >= 0) std::printf(" (first bad row %d head %d)", firstBad / 1000, firstBad % 1000);
        if (c.time) print_attention_time(launch, c.b, c.lq, c.lk, c.h);
        std::printf("\n");
        cuMemFree(dq); cuMemFree(dk); cuMemFree(dv); cuMemFree(dout);
    }
    std::printf("%s\n", failures ? "probe: FAILED" : "probe: all cases within 1e-4");
    return failures ? 1 : 0;
}
