// Wan's 3D RoPE on x [B, L, H, D]: pair i = (x[2i], x[2i+1]) of each head is rotated by
// pos * theta^(-j/pairs), with the D/2 pairs split into time / height / width parts.
// Angles and the rotation are float64 from absolute positions, as the reference's complex128
// table is: no table, so no limit on the frame index.
#include "common.cuh"

extern "C" __global__ void rope3d(const void* x, void* y, i64 tokensTotal, int L, int H, int D,
                                  int gridH, int gridW, i64 frameOffset, double theta,
                                  int pt, int ph, int pw, int dtx, int dty) {
    int pairs = D / 2;
    i64 n = tokensTotal * H * pairs;
    GRID_STRIDE(i, n) {
        int j = (int)(i % pairs);
        i64 th = i / pairs;            // token * H + head
        i64 token = (th / H) % L;      // position within the sequence (batch folded out)
        i64 f = token / ((i64)gridH * gridW);
        i64 hw = token % ((i64)gridH * gridW);
        i64 pos; int jj, part;
        if (j < pt) { pos = frameOffset + f; jj = j; part = pt; }
        else if (j < pt + ph) { pos = hw / gridW; jj = j - pt; part = ph; }
        else { pos = hw % gridW; jj = j - pt - ph; part = pw; }
        double freq = 1.0 / pow(theta, (double)(2 * jj) / (double)(2 * part));
        double s, c;
        sincos((double)pos * freq, &s, &c);
        i64 e = th * D + 2 * j;
        double a = load_f(x, e, dtx), b = load_f(x, e + 1, dtx);
        store_f(y, e, dty, (float)(a * c - b * s));
        store_f(y, e + 1, dty, (float)(a * s + b * c));
    }
}
