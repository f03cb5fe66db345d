/* The depthwise convolution kernels: dw_* of cpu_kernels.c (stride s of 1 or 2), which take stride 2 to dw2_* of
 * strided_depthwise_kernels.c, and which separable_kernels.c builds on. Each runs its (n, c) planes or channels
 * over the OpenMP threads; called from inside a parallel region, on one image, it runs on the calling thread
 * (nested regions are inactive unless OMP_MAX_ACTIVE_LEVELS says so). */
#ifndef NNABLA_DARTS_DEPTHWISE_H
#define NNABLA_DARTS_DEPTHWISE_H

void dw_forward(const float *x, const float *w, float *y, int N, int C, int H, int W, int Ho, int Wo, int K, int s,
                int p, int d, int relu);
void dw_backward_data(const float *dy, const float *w, const float *x, float *dx, int N, int C, int H, int W,
                      int Ho, int Wo, int K, int s, int p, int d, int relu, int accum);
void dw_backward_weight(const float *dy, const float *x, float *dw, int N, int C, int H, int W, int Ho, int Wo,
                        int K, int s, int p, int d, int relu, int accum);

void dw2_forward(const float *x, const float *w, float *y, int N, int C, int H, int W, int Ho, int Wo, int K, int p,
                 int d, int relu);
void dw2_backward_data(const float *dy, const float *w, const float *x, float *dx, int N, int C, int H, int W,
                       int Ho, int Wo, int K, int p, int d, int relu, int accum);
void dw2_backward_weight(const float *dy, const float *x, float *dw, int N, int C, int H, int W, int Ho, int Wo,
                         int K, int p, int d, int relu, int accum);

#endif
