/* ReLU, depthwise convolution, then 1x1 convolution as one function: the first half of every sep_conv and
 * the convolutions of every dil_conv. Image by image on each OpenMP thread, the depthwise output lives only in
 * a buffer of one image (it stays in the cache on its way to the matrix product) and is computed again in the
 * backward pass instead of being kept: a depthwise convolution is cheap beside the product, and that output
 * was a whole tensor per op kept for the backward pass. ops/cpu_kernels.py wraps it (DepthwisePointwise). */
#include <stdlib.h>

#include <omp.h>

#include "depthwise.h"
#include "sgemm.h"
#include "thread_parts.h"

/* y[n] (Co x HoWo) = pw (Co x C) . dw(r(x[n])) (C x HoWo). */
void dwpw_forward(const float *x, const float *wd, const float *wp, float *y, int N, int C, int H, int W, int Ho,
                  int Wo, int K, int s, int p, int d, int Co, int relu) {
    const long in = (long)C * H * W, mid = (long)C * Ho * Wo, out = (long)Co * Ho * Wo;
    #pragma omp parallel
    {
        float *depthwise = malloc(mid * sizeof(float));
        #pragma omp for schedule(static)
        for (int n = 0; n < N; ++n) {
            dw_forward(x + n * in, wd, depthwise, 1, C, H, W, Ho, Wo, K, s, p, d, relu);
            sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, Co, Ho * Wo, C, 1.0f, wp, C, depthwise, Ho * Wo, 0.0f, y + n * out,
                  Ho * Wo);
        }
        free(depthwise);
    }
}

/* dx (+)= r'(x) dw^T(pw^T dy), dwd (+)= the depthwise weight gradient of pw^T dy, dwp (+)= dy . dw(r(x))^T;
 * any of dx, dwd, dwp may be NULL (not wanted). The weight gradients are summed in per-thread parts
 * (thread_parts.h). */
void dwpw_backward(const float *dy, const float *x, const float *wd, const float *wp, float *dx, float *dwd,
                   float *dwp, int N, int C, int H, int W, int Ho, int Wo, int K, int s, int p, int d, int Co,
                   int relu, int accum_x, int accum_wd, int accum_wp) {
    const long in = (long)C * H * W, mid = (long)C * Ho * Wo, out = (long)Co * Ho * Wo;
    const long size_wd = (long)C * K * K, size_wp = (long)Co * C;
    const int threads = omp_get_max_threads();
    float *parts_wd = dwd ? calloc((size_t)threads * size_wd, sizeof(float)) : 0;
    float *parts_wp = dwp ? calloc((size_t)threads * size_wp, sizeof(float)) : 0;
    #pragma omp parallel num_threads(threads)
    {
        float *depthwise = dwp ? malloc(mid * sizeof(float)) : 0, *d_depthwise = malloc(mid * sizeof(float));
        const int t = omp_get_thread_num();
        #pragma omp for schedule(static)
        for (int n = 0; n < N; ++n) {
            const float *xn = x + n * in, *dyn = dy + n * out;
            if (dwp) {
                dw_forward(xn, wd, depthwise, 1, C, H, W, Ho, Wo, K, s, p, d, relu);
                sgemm(ROW_MAJOR, NO_TRANS, TRANS, Co, C, Ho * Wo, 1.0f, dyn, Ho * Wo, depthwise, Ho * Wo, 1.0f,
                      parts_wp + t * size_wp, C);
            }
            if (!(dx || dwd)) continue;
            sgemm(ROW_MAJOR, TRANS, NO_TRANS, C, Ho * Wo, Co, 1.0f, wp, C, dyn, Ho * Wo, 0.0f, d_depthwise, Ho * Wo);
            if (dx) dw_backward_data(d_depthwise, wd, xn, dx + n * in, 1, C, H, W, Ho, Wo, K, s, p, d, relu, accum_x);
            if (dwd)
                dw_backward_weight(d_depthwise, xn, parts_wd + t * size_wd, 1, C, H, W, Ho, Wo, K, s, p, d, relu, 1);
        }
        free(depthwise);
        free(d_depthwise);
    }
    if (dwd) add_thread_parts(dwd, parts_wd, size_wd, size_wd, threads, accum_wd);
    if (dwp) add_thread_parts(dwp, parts_wp, size_wp, size_wp, threads, accum_wp);
    free(parts_wd);
    free(parts_wp);
}
