// Wan's 3D RoPE on x [B, L, H, D]: pair i = (x[2i], x[2i+1]) of each head is rotated by
// pos * theta^(-j/pairs), with the D/2 pairs split into time / height / width parts.
// Angles and the rotation are float64 from absolute positions, as the reference's complex128
// table is: no table, so no limit on the frame index.
#include "common.cuh"

// One thread per (token, pair): the angle depends on neither batch nor head, so its float64
// pow/sincos is computed once and applied to all H heads.
extern "C" __global__ void rope3d(const void* x, void* y, i64 tokensTotal, int L, int H, int D,
                                  int gridH, int gridW, i64 frameOffset, double theta,
                                  int pt, int ph, int pw, int dtx, int dty) {
    int pairs = D / 2;
    i64 n = tokensTotal * pairs;
    GRID_STRIDE(i, n) {
        int j = (int)(i % pairs);
        i64 tok = i / pairs;           // batch * L + position
        i64 token = tok % L;
        i64 f = token / ((i64)gridH * gridW);
        i64 hw = token % ((i64)gridH * gridW);
        i64 pos; int jj, part;
        if (j < pt) { pos = frameOffset + f; jj = j; part = pt; }
        else if (j < pt + ph) { pos = hw / gridW; jj = j - pt; part = ph; }
        else { pos = hw % gridW; jj = j - pt - ph; part = pw; }
        double freq = 1.0 / pow(theta, (double)(2 * jj) / (double)(2 * part));
        double s, c;
        sincos((double)pos * freq, &s, &c);
        for (int h = 0; h < H; h++) {
            i64 e = (tok * H + h) * D + 2 * j;
            double a = load_f(x, e, dtx), b = load_f(x, e + 1, dtx);
            store_f(y, e, dty, (float)(a * c - b * s));
            store_f(y, e + 1, dty, (float)(a * s + b * c));
        }
    }
}
