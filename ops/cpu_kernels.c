/* Multi-threaded cpu kernels for the layers that dominate a DARTS step on nnabla's single-threaded cpu
 * backend: depthwise and 1x1 convolution and batch normalisation with batch statistics (NCHW, float32);
 * the other C files of ops/ hold the other layers.
 * ops/cpu_kernels.py wraps them as nnabla functions; tests/test_cpu_kernels.py checks every one against
 * nnabla's own function, forward and backward.
 *
 * Built by `make kernels` on the machine that runs them, with the other C files of ops/ into one library:
 * cc -O3 -march=native -fopenmp -shared -fPIC.
 * The `omp simd reduction` loops let the compiler vectorise float sums (it may reorder them; the
 * partial sums are gathered in double).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "depthwise.h"
#include "sgemm.h"
#include "thread_parts.h"

/* Stride 1 runs on padded planes laid out flat: with the input zero-padded to Hp x Wp and the output
 * kept at row stride Wp, every tap (ky, kx) is one long loop over the flat arrays at the offset
 * ky * d * Wp + kx * d, with no bounds to test, which the compiler vectorises well (rows of 8 to 32
 * pixels are too short for that). The columns from Wo to Wp of each output row are scratch. */
static inline int padded_size(int H, int W, int K, int p, int d) {
    return (H + 2 * p) * (W + 2 * p) + (K - 1) * d;  /* the last taps read (K - 1) * d past the plane */
}

/* pad <- the plane zero-padded by p, of its ReLU when relu is set. */
static void pad_plane(const float *xp, float *pad, int H, int W, int K, int p, int d, int relu) {
    const int Wp = W + 2 * p;
    memset(pad, 0, sizeof(float) * padded_size(H, W, K, p, d));
    for (int iy = 0; iy < H; ++iy) {
        const float *src = xp + iy * W;
        float *dst = pad + (iy + p) * Wp + p;
        if (relu) {
            for (int ix = 0; ix < W; ++ix) dst[ix] = src[ix] > 0.0f ? src[ix] : 0.0f;
        } else {
            memcpy(dst, src, sizeof(float) * W);
        }
    }
}

/* wide <- the Ho x Wo plane at row stride Wp, zeros in the scratch columns. */
static void widen_plane(const float *plane, float *wide, int Ho, int Wo, int Wp) {
    for (int oy = 0; oy < Ho; ++oy) {
        memcpy(wide + oy * Wp, plane + oy * Wo, sizeof(float) * Wo);
        memset(wide + oy * Wp + Wo, 0, sizeof(float) * (Wp - Wo));
    }
}

/* out[i] (+)= the sum over the taps t, in their order, of weights[t] * src[i + offsets[t]], for i < len (added to
 * out[i] when `accumulate`): each output's taps are summed in a register and the output written once per call. */
static inline __attribute__((always_inline)) void sum_taps(const float *src, const float *weights,
                                                           const int *offsets, int taps, float *out, int len,
                                                           int accumulate) {
    #pragma omp simd
    for (int i = 0; i < len; ++i) {
        float acc = accumulate ? out[i] : 0.0f;
        for (int t = 0; t < taps; ++t) acc += weights[t] * src[i + offsets[t]];
        out[i] = acc;
    }
}

/* out[i] = the sum over the K x K taps of a kernel, in row-major order. A pass per tap read and wrote the whole
 * plane K * K times (2.1x slower on the 32 x 32 planes of a DARTS network); here the 9 taps of a 3 x 3 kernel
 * take one pass, a larger kernel one pass per row of taps (25 taps in one loop left the compiler's registers
 * and its vectoriser behind, 9x slower). The sums run in the order of the passes per tap, so the results are
 * the same to the bit. The tap counts are constants where sum_taps is inlined, so that it unrolls them. */
static void sum_kernel_taps(const float *src, const float *weights, const int *offsets, int K, float *out,
                            int len) {
    if (K == 3) {
        sum_taps(src, weights, offsets, 9, out, len, 0);
    } else if (K == 5) {
        for (int ky = 0; ky < 5; ++ky) sum_taps(src, weights + 5 * ky, offsets + 5 * ky, 5, out, len, ky > 0);
    } else {
        for (int ky = 0; ky < K; ++ky) sum_taps(src, weights + K * ky, offsets + K * ky, K, out, len, ky > 0);
    }
}

/* y[n,c,oy,ox] = sum_{ky,kx} w[c,ky,kx] r(x)[n,c,oy*s-p+ky*d, ox*s-p+kx*d], r the identity or ReLU;
 * one (n, c) plane per task. Stride 1 here, stride 2 in strided_depthwise_kernels.c (the only strides of the
 * DARTS ops; cpu_kernels.py's DepthwiseConvolution takes no other). */
void dw_forward(const float *x, const float *w, float *y, int N, int C, int H, int W, int Ho, int Wo,
                int K, int s, int p, int d, int relu) {
    if (s == 1) {
        const int Wp = W + 2 * p, len = Ho * Wp;
        int offsets[K * K];
        for (int ky = 0; ky < K; ++ky)
            for (int kx = 0; kx < K; ++kx) offsets[ky * K + kx] = ky * d * Wp + kx * d;
        #pragma omp parallel for schedule(static)
        for (long nc = 0; nc < (long)N * C; ++nc) {
            float pad[padded_size(H, W, K, p, d)], wide[len];
            pad_plane(x + nc * H * W, pad, H, W, K, p, d, relu);
            sum_kernel_taps(pad, w + (nc % C) * K * K, offsets, K, wide, len);
            float *yp = y + nc * Ho * Wo;
            for (int oy = 0; oy < Ho; ++oy) memcpy(yp + oy * Wo, wide + oy * Wp, sizeof(float) * Wo);
        }
        return;
    }
    dw2_forward(x, w, y, N, C, H, W, Ho, Wo, K, p, d, relu);  /* s == 2 */
}

/* dx (+)= the transpose of dw_forward applied to dy, times r'(x) (x is read only when relu is set).
 * At stride 1 the transpose is the same kind of sum: dx[iy, ix] = sum_{ky,kx} w[ky,kx] dy[iy+p-ky*d, ix+p-kx*d],
 * read from dy zero-padded by q = d (K - 1) - p (the DARTS ops pad by half of d (K - 1), so q = p; the wrappers
 * in cpu_kernels.py take no p beyond d (K - 1)), each tap at the offset of its mirror image. */
void dw_backward_data(const float *dy, const float *w, const float *x, float *dx, int N, int C, int H, int W,
                      int Ho, int Wo, int K, int s, int p, int d, int relu, int accum) {
    if (s == 1) {
        const int q = d * (K - 1) - p, Wq = Wo + 2 * q, len = H * Wq;
        int offsets[K * K];
        for (int ky = 0; ky < K; ++ky)
            for (int kx = 0; kx < K; ++kx) offsets[ky * K + kx] = (K - 1 - ky) * d * Wq + (K - 1 - kx) * d;
        #pragma omp parallel for schedule(static)
        for (long nc = 0; nc < (long)N * C; ++nc) {
            float pad[padded_size(Ho, Wo, K, q, d)], wide[len];
            pad_plane(dy + nc * Ho * Wo, pad, Ho, Wo, K, q, d, 0);
            sum_kernel_taps(pad, w + (nc % C) * K * K, offsets, K, wide, len);
            const float *xp = x + nc * H * W;
            float *dxp = dx + nc * H * W;
            for (int iy = 0; iy < H; ++iy) {
                const float *src = wide + iy * Wq;
                for (int ix = 0; ix < W; ++ix) {
                    float v = relu && xp[iy * W + ix] <= 0.0f ? 0.0f : src[ix];
                    dxp[iy * W + ix] = accum ? dxp[iy * W + ix] + v : v;
                }
            }
        }
        return;
    }
    dw2_backward_data(dy, w, x, dx, N, C, H, W, Ho, Wo, K, p, d, relu, accum);
}

/* sums[t] += the dot product of a (len floats) with b shifted by offsets[t], for the `taps` taps, in one pass over
 * a: each tap's products gathered in LANES partial sums (a pass per tap read `a` K * K times). */
enum { LANES = 16 };

static inline __attribute__((always_inline)) void dot_taps(const float *a, const float *b, const int *offsets,
                                                           int taps, int len, double *sums) {
    float part[taps][LANES];
    for (int t = 0; t < taps; ++t)
        for (int l = 0; l < LANES; ++l) part[t][l] = 0.0f;
    int i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int t = 0; t < taps; ++t) {
            const float *bt = b + offsets[t] + i;
            #pragma omp simd
            for (int l = 0; l < LANES; ++l) part[t][l] += a[i + l] * bt[l];
        }
    for (int t = 0; t < taps; ++t) {
        float sum = 0.0f;
        for (int l = 0; l < LANES; ++l) sum += part[t][l];
        for (int j = i; j < len; ++j) sum += a[j] * b[offsets[t] + j];
        sums[t] += sum;
    }
}

/* dot_taps over the K x K taps of a kernel: the 9 of a 3 x 3 in one pass, a larger kernel's a row of taps a pass
 * (as sum_kernel_taps, for the compiler's registers). */
static void dot_kernel_taps(const float *a, const float *b, const int *offsets, int K, int len, double *sums) {
    if (K == 3) {
        dot_taps(a, b, offsets, 9, len, sums);
    } else if (K == 5) {
        for (int ky = 0; ky < 5; ++ky) dot_taps(a, b, offsets + 5 * ky, 5, len, sums + 5 * ky);
    } else {
        for (int ky = 0; ky < K; ++ky) dot_taps(a, b, offsets + K * ky, K, len, sums + K * ky);
    }
}

/* dw[c,ky,kx] (+)= sum_{n,oy,ox} dy[n,c,oy,ox] r(x)[n,c,oy*s-p+ky*d, ox*s-p+kx*d]; one channel per task.
 * The products of each tap are summed per image and added up in double across images. */
void dw_backward_weight(const float *dy, const float *x, float *dw, int N, int C, int H, int W, int Ho, int Wo,
                        int K, int s, int p, int d, int relu, int accum) {
    if (s == 1) {
        const int Wp = W + 2 * p, len = Ho * Wp;
        int offsets[K * K];
        for (int ky = 0; ky < K; ++ky)
            for (int kx = 0; kx < K; ++kx) offsets[ky * K + kx] = ky * d * Wp + kx * d;
        #pragma omp parallel for schedule(static)
        for (int c = 0; c < C; ++c) {
            float pad[padded_size(H, W, K, p, d)], wide[len];
            double totals[K * K];
            for (int k = 0; k < K * K; ++k) totals[k] = 0.0;
            for (int n = 0; n < N; ++n) {
                pad_plane(x + ((long)n * C + c) * H * W, pad, H, W, K, p, d, relu);
                widen_plane(dy + ((long)n * C + c) * Ho * Wo, wide, Ho, Wo, Wp);
                dot_kernel_taps(wide, pad, offsets, K, len, totals);
            }
            for (int k = 0; k < K * K; ++k) {
                float *target = dw + c * K * K + k;
                *target = accum ? *target + (float)totals[k] : (float)totals[k];
            }
        }
        return;
    }
    dw2_backward_weight(dy, x, dw, N, C, H, W, Ho, Wo, K, p, d, relu, accum);
}

/* Below this many elements a batch norm runs on one thread: waking the other threads costs more than they
 * save there (cpu_kernels.MIN_ELEMENTS is the same size for the layers that keep nnabla's kernels). */
#define BN_PARALLEL_MIN_ELEMENTS (1L << 17)

/* Batch normalisation over (N, H, W) for each channel, with nnabla's semantics: biased batch variance
 * in the output, running statistics r = decay * r + (1 - decay) * stat with the unbiased variance.
 * One pass of sums of squares loses float precision when a channel's mean is large against its spread
 * (nnabla's does, down to a negative variance), so: a first pass for the mean, then the corrected two-pass
 * algorithm (Chan, Golub and LeVeque 1983): the deviations d = x - mean give the variance and, through
 * their sum, the rounding left in the mean. The mean is kept as a pair of floats hi + lo: x - hi is exact
 * for x near the mean, and (x - hi) - lo keeps the digits a float mean alone would drop when the mean is
 * large (a float ulp of 1000 is 6e-5). gamma and beta may be NULL (scale 1, shift 0).
 * batch_mean (length 2C: hi, then lo) and batch_var (length C) keep the statistics for the backward pass. */
void bn_forward(const float *x, const float *beta, const float *gamma, float *y, float *running_mean,
                float *running_var, float *batch_mean, float *batch_var, int N, int C, int HW,
                float decay, float eps) {
    const double M = (double)N * HW;
    #pragma omp parallel for schedule(static) if ((long)N * C * HW >= BN_PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < C; ++c) {
        double sum = 0.0;
        for (int n = 0; n < N; ++n) {
            const float *xp = x + ((long)n * C + c) * HW;
            float part = 0.0f;
            #pragma omp simd reduction(+:part)
            for (int i = 0; i < HW; ++i) part += xp[i];
            sum += part;
        }
        double mean = sum / M;
        float hi = (float)mean, lo = (float)(mean - hi);
        double deviations = 0.0, squares = 0.0;
        for (int n = 0; n < N; ++n) {
            const float *xp = x + ((long)n * C + c) * HW;
            float part = 0.0f, part_squares = 0.0f;
            #pragma omp simd reduction(+:part, part_squares)
            for (int i = 0; i < HW; ++i) {
                float t = (xp[i] - hi) - lo;
                part += t;
                part_squares += t * t;
            }
            deviations += part;
            squares += part_squares;
        }
        const double var = (squares - deviations * deviations / M) / M;
        mean += deviations / M;
        hi = (float)mean;
        lo = (float)(mean - hi);
        batch_mean[c] = hi;
        batch_mean[C + c] = lo;
        batch_var[c] = (float)var;
        running_mean[c] = (float)(decay * (double)running_mean[c] + (1.0 - decay) * mean);
        running_var[c] = (float)(decay * (double)running_var[c] + (1.0 - decay) * (M > 1 ? var * M / (M - 1) : var));
        const float scale = (gamma ? gamma[c] : 1.0f) / sqrtf((float)var + eps);
        const float shift = beta ? beta[c] : 0.0f;
        for (int n = 0; n < N; ++n) {
            const float *xp = x + ((long)n * C + c) * HW;
            float *yp = y + ((long)n * C + c) * HW;
            for (int i = 0; i < HW; ++i) yp[i] = ((xp[i] - hi) - lo) * scale + shift;
        }
    }
}

/* Gradients of bn_forward's output through the batch statistics:
 * dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat)), dgamma = sum(dy * xhat),
 * dbeta = sum(dy), with xhat = ((x - hi) - lo) / sqrt(var + eps) from bn_forward's batch_mean pair, or,
 * when xhat_given (a batch norm without scale and shift, whose output is xhat), xhat = x: the caller then
 * passes the output, and the input need not be kept for the backward pass.
 * dx, dgamma and dbeta may be NULL (not wanted); accum_* add instead of overwriting. */
void bn_backward(const float *x, const float *dy, const float *gamma, const float *batch_mean,
                 const float *batch_var, float *dx, float *dgamma, float *dbeta, int N, int C, int HW, float eps,
                 int xhat_given, int accum_x, int accum_gamma, int accum_beta) {
    const double M = (double)N * HW;
    #pragma omp parallel for schedule(static) if ((long)N * C * HW >= BN_PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < C; ++c) {
        const float inv = 1.0f / sqrtf(batch_var[c] + eps);
        /* xhat = ((x - hi) - lo) * scale */
        const float hi = xhat_given ? 0.0f : batch_mean[c], lo = xhat_given ? 0.0f : batch_mean[C + c];
        const float scale = xhat_given ? 1.0f : inv;
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int n = 0; n < N; ++n) {
            const float *xp = x + ((long)n * C + c) * HW;
            const float *dyp = dy + ((long)n * C + c) * HW;
            float part = 0.0f, part_xhat = 0.0f;
            #pragma omp simd reduction(+:part, part_xhat)
            for (int i = 0; i < HW; ++i) {
                part += dyp[i];
                part_xhat += dyp[i] * ((xp[i] - hi) - lo);
            }
            sum_dy += part;
            sum_dy_xhat += part_xhat;
        }
        sum_dy_xhat *= scale;
        if (dbeta) dbeta[c] = accum_beta ? dbeta[c] + (float)sum_dy : (float)sum_dy;
        if (dgamma) dgamma[c] = accum_gamma ? dgamma[c] + (float)sum_dy_xhat : (float)sum_dy_xhat;
        if (!dx) continue;
        const float g = (gamma ? gamma[c] : 1.0f) * inv;
        const float mean_dy = (float)(sum_dy / M);
        const float mean_dy_xhat = (float)(sum_dy_xhat / M);
        for (int n = 0; n < N; ++n) {
            const float *xp = x + ((long)n * C + c) * HW;
            const float *dyp = dy + ((long)n * C + c) * HW;
            float *dxp = dx + ((long)n * C + c) * HW;
            for (int i = 0; i < HW; ++i) {
                float v = g * (dyp[i] - mean_dy - ((xp[i] - hi) - lo) * scale * mean_dy_xhat);
                dxp[i] = accum_x ? dxp[i] + v : v;
            }
        }
    }
}

/* Pointwise (1x1, stride 1) convolution: per image a matrix product, y[n] (Co x HW) = w (Co x Ci) . x[n]
 * (Ci x HW), by OpenBLAS's sgemm (ops/blas.py hands over its address once, set_sgemm). The images are
 * spread over the OpenMP threads, one single-threaded sgemm each. relu: the input is ReLU(x), made in a
 * buffer of one image per thread. */
sgemm_fn sgemm = 0;

void set_sgemm(void *address) { sgemm = (sgemm_fn)address; }

/* The image x[n] (size floats), or its ReLU written into `buffer`. */
static inline const float *relu_image(const float *xn, float *buffer, long size, int relu) {
    if (!relu) return xn;
    for (long e = 0; e < size; ++e) buffer[e] = xn[e] > 0.0f ? xn[e] : 0.0f;
    return buffer;
}

void pw_forward(const float *x, const float *w, float *y, int N, int Ci, int Co, int HW, int relu) {
    const long in = (long)Ci * HW, out = (long)Co * HW;
    #pragma omp parallel
    {
        float *buffer = relu ? malloc(in * sizeof(float)) : 0;
        #pragma omp for schedule(static)
        for (int n = 0; n < N; ++n)
            sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, Co, HW, Ci, 1.0f, w, Ci, relu_image(x + n * in, buffer, in, relu),
                  HW, 0.0f, y + n * out, HW);
        free(buffer);
    }
}

/* dx[n] (+)= r'(x[n]) * (w^T . dy[n]); without ReLU the product accumulates in place (beta 1), with it the
 * product goes through a buffer and only where x > 0. */
void pw_backward_data(const float *dy, const float *w, const float *x, float *dx, int N, int Ci, int Co, int HW,
                      int relu, int accum) {
    const long in = (long)Ci * HW, out = (long)Co * HW;
    #pragma omp parallel
    {
        float *buffer = relu && accum ? malloc(in * sizeof(float)) : 0;
        #pragma omp for schedule(static)
        for (int n = 0; n < N; ++n) {
            float *dxn = dx + n * in;
            const float *xn = x ? x + n * in : 0;
            float *target = buffer ? buffer : dxn;
            sgemm(ROW_MAJOR, TRANS, NO_TRANS, Ci, HW, Co, 1.0f, w, Ci, dy + n * out, HW,
                  accum && !relu ? 1.0f : 0.0f, target, HW);
            if (relu)
                for (long e = 0; e < in; ++e) {
                    const float v = xn[e] > 0.0f ? target[e] : 0.0f;
                    dxn[e] = buffer ? dxn[e] + v : v;
                }
        }
        free(buffer);
    }
}

/* dw (+)= sum_n dy[n] . r(x[n])^T, summed in per-thread parts (thread_parts.h). */
void pw_backward_weight(const float *dy, const float *x, float *dw, int N, int Ci, int Co, int HW, int relu,
                        int accum) {
    const long in = (long)Ci * HW, out = (long)Co * HW, size = (long)Co * Ci;
    const int threads = omp_get_max_threads();
    float *parts = calloc((size_t)threads * size, sizeof(float));
    #pragma omp parallel num_threads(threads)
    {
        float *buffer = relu ? malloc(in * sizeof(float)) : 0;
        float *part = parts + omp_get_thread_num() * size;
        #pragma omp for schedule(static)
        for (int n = 0; n < N; ++n)
            sgemm(ROW_MAJOR, NO_TRANS, TRANS, Co, Ci, HW, 1.0f, dy + n * out, HW,
                  relu_image(x + n * in, buffer, in, relu), HW, 1.0f, part, Ci);
        free(buffer);
    }
    add_thread_parts(dw, parts, size, size, threads, accum);
    free(parts);
}
