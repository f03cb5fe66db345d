/* DARTS's FactorizedReduce without its batch norm, as one multi-threaded kernel (NCHW, float32):
 * y = concat(w1 . r(x)[:, ::2, ::2], w2 . r(x)[:, 1::2, 1::2]) over the channel axis, r = ReLU, the shifted
 * sub-image zero where it runs off an odd-sized image (the original pads the far edge by one pixel).
 * On nnabla this is ReLU, Slice, Pad, two stride-2 1x1 Convolutions and Concatenate, all single-threaded: forward
 * and backward at (32, 144, 32, 32) -> 144 channels took 197 ms there against 23 ms here, and the Pad and Slice of
 * the DARTS_V2 training step's two FactorizedReduces alone 118 ms of its 2.2 s (B 32).
 * Here each image's two strided sub-images are gathered (ReLU fused) into a buffer and multiplied by OpenBLAS's
 * sgemm (ops/sgemm.h), one image per OpenMP task, each product written into its half of the output.
 * ops/cpu_reduce.py wraps it as an nnabla function; tests/test_cpu_reduce.py checks it against nnabla's layers.
 */
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "sgemm.h"
#include "thread_parts.h"

/* g (Ci x Ho*Wo) <- r(x)[:, offset::2, offset::2] of one image, zero past the image's edge. */
static void gather(const float *xn, float *g, int Ci, int H, int W, int Ho, int Wo, int offset) {
    for (int c = 0; c < Ci; ++c) {
        const float *xc = xn + (long)c * H * W;
        float *gc = g + (long)c * Ho * Wo;
        for (int oy = 0; oy < Ho; ++oy) {
            const int iy = 2 * oy + offset;
            float *gr = gc + oy * Wo;
            if (iy >= H) {
                memset(gr, 0, sizeof(float) * Wo);
                continue;
            }
            const float *xr = xc + iy * W + offset;
            const int inside = (W - offset + 1) / 2;  /* columns offset, offset + 2, ... below W */
            for (int ox = 0; ox < inside; ++ox) gr[ox] = xr[2 * ox] > 0.0f ? xr[2 * ox] : 0.0f;
            for (int ox = inside; ox < Wo; ++ox) gr[ox] = 0.0f;
        }
    }
}

/* y[n] = (w1 . g_even ; w2 . g_odd), w1 (C1 x Ci), w2 (C2 x Ci), y (N, C1 + C2, Ho, Wo). */
void fr_forward(const float *x, const float *w1, const float *w2, float *y, int N, int Ci, int H, int W, int C1,
                int C2) {
    const int Ho = (H + 1) / 2, Wo = (W + 1) / 2, P = Ho * Wo;
    const long in = (long)Ci * H * W, out = (long)(C1 + C2) * P;
    #pragma omp parallel
    {
        float *g = malloc(sizeof(float) * Ci * P);
        #pragma omp for schedule(static)
        for (int n = 0; n < N; ++n) {
            for (int half = 0; half < 2; ++half) {
                gather(x + n * in, g, Ci, H, W, Ho, Wo, half);
                sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, half ? C2 : C1, P, Ci, 1.0f, half ? w2 : w1, Ci, g, P, 0.0f,
                      y + n * out + (half ? (long)C1 * P : 0), P);
            }
        }
        free(g);
    }
}

/* dx (+)= r'(x) * (w^T . dy_half) placed back on each half's pixels; the pixels neither half reads get 0. */
void fr_backward_data(const float *dy, const float *w1, const float *w2, const float *x, float *dx, int N, int Ci,
                      int H, int W, int C1, int C2, int accum) {
    const int Ho = (H + 1) / 2, Wo = (W + 1) / 2, P = Ho * Wo;
    const long in = (long)Ci * H * W, out = (long)(C1 + C2) * P;
    #pragma omp parallel
    {
        float *g = malloc(sizeof(float) * Ci * P);
        #pragma omp for schedule(static)
        for (int n = 0; n < N; ++n) {
            const float *xn = x + n * in;
            float *dxn = dx + n * in;
            if (!accum) memset(dxn, 0, sizeof(float) * in);
            for (int half = 0; half < 2; ++half) {
                sgemm(ROW_MAJOR, TRANS, NO_TRANS, Ci, P, half ? C2 : C1, 1.0f, half ? w2 : w1, Ci,
                      dy + n * out + (half ? (long)C1 * P : 0), P, 0.0f, g, P);
                const int rows = (H - half + 1) / 2, cols = (W - half + 1) / 2;  /* the pixels inside */
                for (int c = 0; c < Ci; ++c)
                    for (int oy = 0; oy < rows; ++oy) {
                        const long at = (long)c * H * W + (2 * oy + half) * W + half;
                        const float *gr = g + (long)c * P + oy * Wo;
                        for (int ox = 0; ox < cols; ++ox)
                            if (xn[at + 2 * ox] > 0.0f) dxn[at + 2 * ox] += gr[ox];
                }
            }
        }
        free(g);
    }
}

/* dw1 (+)= sum_n dy_even[n] . g_even[n]^T, dw2 likewise, summed in per-thread parts (thread_parts.h). dw1 or dw2
 * may be NULL. */
void fr_backward_weight(const float *dy, const float *x, float *dw1, float *dw2, int N, int Ci, int H, int W, int C1,
                        int C2, int accum1, int accum2) {
    const int Ho = (H + 1) / 2, Wo = (W + 1) / 2, P = Ho * Wo;
    const long in = (long)Ci * H * W, out = (long)(C1 + C2) * P, size = (long)(C1 + C2) * Ci;
    const int threads = omp_get_max_threads();
    float *parts = calloc((size_t)threads * size, sizeof(float));  /* per thread: dw1 (C1 x Ci), then dw2 */
    #pragma omp parallel num_threads(threads)
    {
        float *g = malloc(sizeof(float) * Ci * P);
        float *part = parts + omp_get_thread_num() * size;
        #pragma omp for schedule(static)
        for (int n = 0; n < N; ++n)
            for (int half = 0; half < 2; ++half) {
                if (!(half ? dw2 : dw1)) continue;
                gather(x + n * in, g, Ci, H, W, Ho, Wo, half);
                sgemm(ROW_MAJOR, NO_TRANS, TRANS, half ? C2 : C1, Ci, P, 1.0f, dy + n * out + (half ? (long)C1 * P : 0),
                      P, g, P, 1.0f, part + (half ? (long)C1 * Ci : 0), Ci);
            }
        free(g);
    }
    for (int half = 0; half < 2; ++half) {
        float *dw = half ? dw2 : dw1;
        if (!dw) continue;
        add_thread_parts(dw, parts + (half ? (long)C1 * Ci : 0), (long)(half ? C2 : C1) * Ci, size, threads,
                         half ? accum2 : accum1);
    }
    free(parts);
}
