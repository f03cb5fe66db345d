/* Depthwise convolution at stride 2 (NCHW, float32; the first layer of sep_conv and dil_conv on a reduction
 * cell's edges), with the ReLU before it fused in when relu is set.
 * ops/cpu_kernels.c's dw_* take stride 2 here. Reading every other input pixel of a row per tap does not
 * vectorise: a plain strided loop took 5 to 10 times as long per output as stride 1. Here the zero-padded plane is
 * split into its four phases (even and odd rows, times even and odd columns), each R = (Wp + 1) / 2 wide: tap
 * (ky, kx) reads phase (ky d % 2, kx d % 2) from (ky d / 2, kx d / 2) on, so every tap is one contiguous loop
 * over the whole output kept at row stride R (columns Wo to R of each row are scratch), as dw_forward's
 * stride-1 path does on the padded plane. One (n, c) plane per OpenMP task (one channel for the weights).
 * tests/test_cpu_kernels.py and tests/test_cpu_pooling.py check it against nnabla's.
 */
#include <string.h>

#include "depthwise.h"

/* The sizes of the phase layout: R the row stride, rows the rows of a phase, plane the floats of a phase (with
 * slack for the scratch columns' reads past the last row), len the wide output's floats. */
typedef struct { int R, rows, plane, len; } Phases;

static Phases phases_of(int H, int W, int Ho, int K, int p, int d) {
    Phases f;
    f.R = (W + 2 * p + 1) / 2;
    f.rows = (H + 2 * p + 1) / 2;
    f.plane = (f.rows + 1) * f.R + (K - 1) * d;
    f.len = Ho * f.R;
    return f;
}

/* phases <- the four phases of r(plane) zero-padded by p (r the identity, or ReLU when relu is set). */
static void split_plane(const float *xp, float *phases, Phases f, int H, int W, int p, int relu) {
    memset(phases, 0, sizeof(float) * 4 * f.plane);
    for (int iy = 0; iy < H; ++iy) {
        const int y = iy + p;
        const float *src = xp + iy * W;
        for (int ix = 0; ix < W; ++ix) {
            const int x = ix + p;
            const float v = relu && src[ix] < 0.0f ? 0.0f : src[ix];
            phases[((y % 2) * 2 + x % 2) * f.plane + (y / 2) * f.R + x / 2] = v;
        }
    }
}

/* Where tap (ky, kx) starts in the phases. */
static inline int tap_start(Phases f, int ky, int kx, int d) {
    return (((ky * d) % 2) * 2 + (kx * d) % 2) * f.plane + ((ky * d) / 2) * f.R + (kx * d) / 2;
}

void dw2_forward(const float *x, const float *w, float *y, int N, int C, int H, int W, int Ho, int Wo, int K, int p,
                 int d, int relu) {
    const Phases f = phases_of(H, W, Ho, K, p, d);
    #pragma omp parallel for schedule(static)
    for (long nc = 0; nc < (long)N * C; ++nc) {
        float phases[4 * f.plane], wide[f.len];
        const float *wp = w + (nc % C) * K * K;
        split_plane(x + nc * H * W, phases, f, H, W, p, relu);
        memset(wide, 0, sizeof(float) * f.len);
        for (int ky = 0; ky < K; ++ky)
            for (int kx = 0; kx < K; ++kx) {
                const float wv = wp[ky * K + kx], *src = phases + tap_start(f, ky, kx, d);
                for (int i = 0; i < f.len; ++i) wide[i] += wv * src[i];
            }
        float *yp = y + nc * Ho * Wo;
        for (int oy = 0; oy < Ho; ++oy) memcpy(yp + oy * Wo, wide + oy * f.R, sizeof(float) * Wo);
    }
}

/* wide <- the Ho x Wo plane at row stride R, zeros in the scratch columns. */
static void widen(const float *plane, float *wide, Phases f, int Ho, int Wo) {
    memset(wide, 0, sizeof(float) * f.len);
    for (int oy = 0; oy < Ho; ++oy) memcpy(wide + oy * f.R, plane + oy * Wo, sizeof(float) * Wo);
}

/* dx (+)= the transpose of dw2_forward applied to dy, times r'(x): gathered into the phases, then put back. */
void dw2_backward_data(const float *dy, const float *w, const float *x, float *dx, int N, int C, int H, int W,
                       int Ho, int Wo, int K, int p, int d, int relu, int accum) {
    const Phases f = phases_of(H, W, Ho, K, p, d);
    #pragma omp parallel for schedule(static)
    for (long nc = 0; nc < (long)N * C; ++nc) {
        float phases[4 * f.plane], wide[f.len];
        const float *wp = w + (nc % C) * K * K;
        widen(dy + nc * Ho * Wo, wide, f, Ho, Wo);
        memset(phases, 0, sizeof(float) * 4 * f.plane);
        for (int ky = 0; ky < K; ++ky)
            for (int kx = 0; kx < K; ++kx) {
                const float wv = wp[ky * K + kx];
                float *dst = phases + tap_start(f, ky, kx, d);
                for (int i = 0; i < f.len; ++i) dst[i] += wv * wide[i];
            }
        const float *xp = x + nc * H * W;
        float *dxp = dx + nc * H * W;
        for (int iy = 0; iy < H; ++iy) {
            const int y = iy + p;
            for (int ix = 0; ix < W; ++ix) {
                const int xx = ix + p;
                float v = phases[((y % 2) * 2 + xx % 2) * f.plane + (y / 2) * f.R + xx / 2];
                if (relu && xp[iy * W + ix] <= 0.0f) v = 0.0f;
                dxp[iy * W + ix] = accum ? dxp[iy * W + ix] + v : v;
            }
        }
    }
}

/* dw[c, ky, kx] (+)= sum over n and the outputs of dy times the tap's input, in double across images. */
void dw2_backward_weight(const float *dy, const float *x, float *dw, int N, int C, int H, int W, int Ho, int Wo,
                         int K, int p, int d, int relu, int accum) {
    const Phases f = phases_of(H, W, Ho, K, p, d);
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; ++c) {
        float phases[4 * f.plane], wide[f.len];
        double totals[K * K];
        for (int k = 0; k < K * K; ++k) totals[k] = 0.0;
        for (int n = 0; n < N; ++n) {
            split_plane(x + ((long)n * C + c) * H * W, phases, f, H, W, p, relu);
            widen(dy + ((long)n * C + c) * Ho * Wo, wide, f, Ho, Wo);
            for (int ky = 0; ky < K; ++ky)
                for (int kx = 0; kx < K; ++kx) {
                    const float *src = phases + tap_start(f, ky, kx, d);
                    float sum = 0.0f;
                    #pragma omp simd reduction(+:sum)
                    for (int i = 0; i < f.len; ++i) sum += wide[i] * src[i];
                    totals[ky * K + kx] += sum;
                }
        }
        for (int k = 0; k < K * K; ++k) {
            float *target = dw + c * K * K + k;
            *target = accum ? *target + (float)totals[k] : (float)totals[k];
        }
    }
}
