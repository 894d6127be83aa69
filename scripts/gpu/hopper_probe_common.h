// What the Hopper attention probes (hopper_attention_probe.cpp, hopper_fp8_probe.cpp) share: the driver-call check
// and the timing of an attention launch at a shape.
#pragma once
#include <cuda.h>
#include <cstdio>
#include <cstdlib>

#define CHECK(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { const char* s_ = nullptr; cuGetErrorString(r_, &s_); \
    std::printf("FAIL %s: %s\n", #x, s_ ? s_ : "?"); std::exit(1); } } while (0)

// Prints ", <ms> ms, <TFLOP/s> TFLOP/s" for `launch` (3 warm-up launches, then 20 timed back to back by events),
// counting 4 Lq Lk H 128 FLOPs a launch (Q K^T and P V).
template <class Launch> void print_attention_time(Launch launch, int b, int lq, int lk, int h) {
    CUevent e0, e1; CHECK(cuEventCreate(&e0, 0)); CHECK(cuEventCreate(&e1, 0));
    for (int i = 0; i < 3; i++) launch();
    const int n = 20;
    CHECK(cuEventRecord(e0, 0));
    for (int i = 0; i < n; i++) launch();
    CHECK(cuEventRecord(e1, 0)); CHECK(cuEventSynchronize(e1));
    float ms = 0; CHECK(cuEventElapsedTime(&ms, e0, e1));
    const double per = ms / n, flops = 4.0 * b * lq * (double)lk * h * 128;
    std::printf(", %.3f ms, %.0f TFLOP/s", per, flops / (per * 1e-3) / 1e12);
    cuEventDestroy(e0); cuEventDestroy(e1);
}
