/* Multi-threaded cpu kernels for the layers that dominate a DARTS step on nnabla's single-threaded cpu
 * backend: depthwise and 1x1 convolution and batch normalisation with batch statistics (NCHW, float32).
 * ops/cpu_kernels.py wraps them as nnabla functions; tests/test_cpu_kernels.py checks every one against
 * nnabla's own function, forward and backward.
 *
 * Built by `make kernels` on the machine that runs them: cc -O3 -march=native -fopenmp -shared -fPIC.
 * The `omp simd reduction` loops let the compiler vectorise float sums (it may reorder them; the
 * partial sums are gathered in double).
 */
#include <math.h>
#include <string.h>

/* Output columns ox whose input column ox * s - p + kd lies inside [0, W): [first_col, end_col). */
static inline int first_col(int p, int kd, int s) {
    int t = p - kd;
    return t <= 0 ? 0 : (t + s - 1) / s;
}

static inline int end_col(int p, int kd, int s, int W, int Wo) {
    int t = W - 1 + p - kd;
    if (t < 0) return 0;
    int e = t / s + 1;
    return e < Wo ? e : Wo;
}

/* The input plane, or its ReLU in `scratch` (H * W floats) when relu is set: the ReLU that precedes every
 * depthwise convolution of the DARTS ops is fused into it, which saves a pass over memory each way. */
static inline const float *input_plane(const float *xp, int relu, float *scratch, int HW) {
    if (!relu) return xp;
    for (int i = 0; i < HW; ++i) scratch[i] = xp[i] > 0.0f ? xp[i] : 0.0f;
    return scratch;
}

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

/* y[n,c,oy,ox] = sum_{ky,kx} w[c,ky,kx] r(x)[n,c,oy*s-p+ky*d, ox*s-p+kx*d], r the identity or ReLU;
 * one (n, c) plane per task. */
void dw_forward(const float *x, const float *w, float *y, int N, int C, int H, int W, int Ho, int Wo,
                int K, int s, int p, int d, int relu) {
    if (s == 1) {
        const int Wp = W + 2 * p, len = Ho * Wp;
        #pragma omp parallel for schedule(static)
        for (long nc = 0; nc < (long)N * C; ++nc) {
            float pad[padded_size(H, W, K, p, d)], wide[len];
            const float *wp = w + (nc % C) * K * K;
            pad_plane(x + nc * H * W, pad, H, W, K, p, d, relu);
            memset(wide, 0, sizeof(float) * len);
            for (int ky = 0; ky < K; ++ky) {
                for (int kx = 0; kx < K; ++kx) {
                    const float wv = wp[ky * K + kx], *src = pad + ky * d * Wp + kx * d;
                    for (int i = 0; i < len; ++i) wide[i] += wv * src[i];
                }
            }
            float *yp = y + nc * Ho * Wo;
            for (int oy = 0; oy < Ho; ++oy) memcpy(yp + oy * Wo, wide + oy * Wp, sizeof(float) * Wo);
        }
        return;
    }
    #pragma omp parallel for schedule(static)
    for (long nc = 0; nc < (long)N * C; ++nc) {
        float scratch[relu ? H * W : 1];
        const float *xp = input_plane(x + nc * H * W, relu, scratch, H * W);
        const float *wp = w + (nc % C) * K * K;
        float *yp = y + nc * Ho * Wo;
        memset(yp, 0, sizeof(float) * Ho * Wo);
        for (int oy = 0; oy < Ho; ++oy) {
            float *yr = yp + oy * Wo;
            for (int ky = 0; ky < K; ++ky) {
                int iy = oy * s - p + ky * d;
                if (iy < 0 || iy >= H) continue;
                const float *xr = xp + iy * W;
                for (int kx = 0; kx < K; ++kx) {
                    float wv = wp[ky * K + kx];
                    int off = kx * d - p;
                    int a = first_col(p, kx * d, s), b = end_col(p, kx * d, s, W, Wo);
                    for (int ox = a; ox < b; ++ox) yr[ox] += wv * xr[ox * s + off];
                }
            }
        }
    }
}

/* dx (+)= the transpose of dw_forward applied to dy, times r'(x) (x is read only when relu is set). */
void dw_backward_data(const float *dy, const float *w, const float *x, float *dx, int N, int C, int H, int W,
                      int Ho, int Wo, int K, int s, int p, int d, int relu, int accum) {
    if (s == 1) {
        const int Wp = W + 2 * p, len = Ho * Wp;
        #pragma omp parallel for schedule(static)
        for (long nc = 0; nc < (long)N * C; ++nc) {
            float pad[padded_size(H, W, K, p, d)], wide[len];
            const float *wp = w + (nc % C) * K * K;
            widen_plane(dy + nc * Ho * Wo, wide, Ho, Wo, Wp);
            memset(pad, 0, sizeof(float) * padded_size(H, W, K, p, d));
            for (int ky = 0; ky < K; ++ky) {
                for (int kx = 0; kx < K; ++kx) {
                    const float wv = wp[ky * K + kx];
                    float *dst = pad + ky * d * Wp + kx * d;
                    for (int i = 0; i < len; ++i) dst[i] += wv * wide[i];
                }
            }
            const float *xp = x + nc * H * W;
            float *dxp = dx + nc * H * W;
            for (int iy = 0; iy < H; ++iy) {
                const float *src = pad + (iy + p) * Wp + p;
                for (int ix = 0; ix < W; ++ix) {
                    float v = relu && xp[iy * W + ix] <= 0.0f ? 0.0f : src[ix];
                    dxp[iy * W + ix] = accum ? dxp[iy * W + ix] + v : v;
                }
            }
        }
        return;
    }
    #pragma omp parallel for schedule(static)
    for (long nc = 0; nc < (long)N * C; ++nc) {
        const float *dyp = dy + nc * Ho * Wo;
        const float *wp = w + (nc % C) * K * K;
        float scratch[relu || accum ? H * W : 1];
        float *dxp = relu || accum ? scratch : dx + nc * H * W;
        memset(dxp, 0, sizeof(float) * H * W);
        for (int oy = 0; oy < Ho; ++oy) {
            const float *dyr = dyp + oy * Wo;
            for (int ky = 0; ky < K; ++ky) {
                int iy = oy * s - p + ky * d;
                if (iy < 0 || iy >= H) continue;
                float *dxr = dxp + iy * W;
                for (int kx = 0; kx < K; ++kx) {
                    float wv = wp[ky * K + kx];
                    int off = kx * d - p;
                    int a = first_col(p, kx * d, s), b = end_col(p, kx * d, s, W, Wo);
                    for (int ox = a; ox < b; ++ox) dxr[ox * s + off] += wv * dyr[ox];
                }
            }
        }
        if (relu || accum) {
            const float *xp = x + nc * H * W;
            float *target = dx + nc * H * W;
            for (int i = 0; i < H * W; ++i) {
                float v = relu && xp[i] <= 0.0f ? 0.0f : scratch[i];
                target[i] = accum ? target[i] + v : v;
            }
        }
    }
}

/* dw[c,ky,kx] (+)= sum_{n,oy,ox} dy[n,c,oy,ox] r(x)[n,c,oy*s-p+ky*d, ox*s-p+kx*d]; one channel per task.
 * Each tap's products are summed column-wise into `lanes` (vectorised, no reduction in the inner loop),
 * which are added up once per image and tap, in double across images. */
void dw_backward_weight(const float *dy, const float *x, float *dw, int N, int C, int H, int W, int Ho, int Wo,
                        int K, int s, int p, int d, int relu, int accum) {
    if (s == 1) {
        const int Wp = W + 2 * p, len = Ho * Wp;
        #pragma omp parallel for schedule(static)
        for (int c = 0; c < C; ++c) {
            float pad[padded_size(H, W, K, p, d)], wide[len];
            double totals[K * K];
            for (int k = 0; k < K * K; ++k) totals[k] = 0.0;
            for (int n = 0; n < N; ++n) {
                pad_plane(x + ((long)n * C + c) * H * W, pad, H, W, K, p, d, relu);
                widen_plane(dy + ((long)n * C + c) * Ho * Wo, wide, Ho, Wo, Wp);
                for (int ky = 0; ky < K; ++ky) {
                    for (int kx = 0; kx < K; ++kx) {
                        const float *src = pad + ky * d * Wp + kx * d;
                        float sum = 0.0f;
                        #pragma omp simd reduction(+:sum)
                        for (int i = 0; i < len; ++i) sum += wide[i] * src[i];
                        totals[ky * K + kx] += sum;
                    }
                }
            }
            for (int k = 0; k < K * K; ++k) {
                float *target = dw + c * K * K + k;
                *target = accum ? *target + (float)totals[k] : (float)totals[k];
            }
        }
        return;
    }
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < C; ++c) {
        float scratch[relu ? H * W : 1];
        float lanes[Wo];
        double totals[K * K];
        for (int k = 0; k < K * K; ++k) totals[k] = 0.0;
        for (int n = 0; n < N; ++n) {
            const float *xp = input_plane(x + ((long)n * C + c) * H * W, relu, scratch, H * W);
            const float *dyp = dy + ((long)n * C + c) * Ho * Wo;
            for (int ky = 0; ky < K; ++ky) {
                for (int kx = 0; kx < K; ++kx) {
                    int off = kx * d - p;
                    int a = first_col(p, kx * d, s), b = end_col(p, kx * d, s, W, Wo);
                    for (int ox = a; ox < b; ++ox) lanes[ox] = 0.0f;
                    for (int oy = 0; oy < Ho; ++oy) {
                        int iy = oy * s - p + ky * d;
                        if (iy < 0 || iy >= H) continue;
                        const float *xr = xp + iy * W;
                        const float *dyr = dyp + oy * Wo;
                        for (int ox = a; ox < b; ++ox) lanes[ox] += dyr[ox] * xr[ox * s + off];
                    }
                    float sum = 0.0f;
                    #pragma omp simd reduction(+:sum)
                    for (int ox = a; ox < b; ++ox) sum += lanes[ox];
                    totals[ky * K + kx] += sum;
                }
            }
        }
        for (int k = 0; k < K * K; ++k) {
            float *target = dw + c * K * K + k;
            *target = accum ? *target + (float)totals[k] : (float)totals[k];
        }
    }
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
 * dbeta = sum(dy), with xhat = ((x - hi) - lo) / sqrt(var + eps) from bn_forward's batch_mean pair.
 * dx, dgamma and dbeta may be NULL (not wanted); accum_* add instead of overwriting. */
void bn_backward(const float *x, const float *dy, const float *gamma, const float *batch_mean,
                 const float *batch_var, float *dx, float *dgamma, float *dbeta, int N, int C, int HW, float eps,
                 int accum_x, int accum_gamma, int accum_beta) {
    const double M = (double)N * HW;
    #pragma omp parallel for schedule(static) if ((long)N * C * HW >= BN_PARALLEL_MIN_ELEMENTS)
    for (int c = 0; c < C; ++c) {
        const float hi = batch_mean[c], lo = batch_mean[C + c];
        const float inv = 1.0f / sqrtf(batch_var[c] + eps);
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
        sum_dy_xhat *= inv;
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
                float v = g * (dyp[i] - mean_dy - ((xp[i] - hi) - lo) * inv * mean_dy_xhat);
                dxp[i] = accum_x ? dxp[i] + v : v;
            }
        }
    }
}

/* Pointwise (1x1, stride 1) convolution as per-image matrix products: out[n] = A (M x K) . in[n] (K x HW),
 * with A[m][k] = coef[m * stride_m + k * stride_k], so that the backward pass reuses it with the weight
 * transposed. Blocks of 8 output channels by 8 pixels stay in registers across the whole sum over k
 * (each input vector is loaded once for 8 outputs). relu: the input is ReLU(in). */
#define BLOCK 8
typedef float vec8 __attribute__((vector_size(32)));  /* GCC/Clang vectors: AVX on x86-64, pairs of NEON on arm */
typedef int ivec8 __attribute__((vector_size(32)));

/* One block of mb <= 8 output channels by hb <= 8 pixels. A[m][k] is packed[k * M + m], M a multiple of
 * 8 (zero rows past the real ones). A block of 8 pixels keeps its eight rows in vector registers over
 * the whole sum (and stores the mb real ones); a narrower one, at the end of a row of pixels, takes
 * the plain loop. */
static inline void pointwise_block(const float *inp, const float *packed, float *outp, int K, int M, int HW, int m0,
                                   int mb, int h, int hb, int relu) {
    if (hb == BLOCK) {
        vec8 acc[BLOCK];
        const vec8 zero = {0};
        for (int m = 0; m < BLOCK; ++m) acc[m] = zero;
        for (int k = 0; k < K; ++k) {
            vec8 v;
            memcpy(&v, inp + (long)k * HW + h, sizeof v);
            if (relu) v = (vec8)((ivec8)v & (v > zero));
            const float *a = packed + (long)k * M + m0;
            #pragma GCC unroll 8
            for (int m = 0; m < BLOCK; ++m) acc[m] += a[m] * v;
        }
        for (int m = 0; m < mb; ++m) memcpy(outp + (long)m * HW + h, &acc[m], sizeof acc[m]);
        return;
    }
    float acc[BLOCK][BLOCK] = {{0.0f}};
    for (int k = 0; k < K; ++k) {
        const float *src = inp + (long)k * HW + h;
        for (int m = 0; m < mb; ++m) {
            const float am = packed[(long)k * M + m0 + m];
            for (int j = 0; j < hb; ++j) acc[m][j] += am * (relu && src[j] < 0.0f ? 0.0f : src[j]);
        }
    }
    for (int m = 0; m < mb; ++m)
        for (int j = 0; j < hb; ++j) outp[(long)m * HW + h + j] = acc[m][j];
}

/* out[n] = A . r(in[n]) for every image, A[m][k] = coef[m * stride_m + k * stride_k] (M x K). */
static void pointwise_products(const float *in, const float *coef, long stride_m, long stride_k, float *out,
                               int N, int K, int M, int HW, int relu) {
    const int M8 = (M + BLOCK - 1) / BLOCK * BLOCK;
    float packed[K * M8];
    for (int k = 0; k < K; ++k)
        for (int m = 0; m < M8; ++m) packed[k * M8 + m] = m < M ? coef[m * stride_m + k * stride_k] : 0.0f;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < N; ++n) {
        for (int m0 = 0; m0 < M; m0 += BLOCK) {
            const int mb = M - m0 < BLOCK ? M - m0 : BLOCK;
            const float *inp = in + (long)n * K * HW;
            float *outp = out + ((long)n * M + m0) * HW;
            for (int h = 0; h < HW; h += BLOCK)
                pointwise_block(inp, packed, outp, K, M8, HW, m0, mb, h, HW - h < BLOCK ? HW - h : BLOCK, relu);
        }
    }
}

/* y[n,o] = sum_i w[o,i] r(x)[n,i]; w is (Co, Ci). */
void pw_forward(const float *x, const float *w, float *y, int N, int Ci, int Co, int HW, int relu) {
    pointwise_products(x, w, Ci, 1, y, N, Ci, Co, HW, relu);
}

/* dx[n,i] (+)= r'(x[n,i]) sum_o w[o,i] dy[n,o]; `scratch` holds N * Ci * HW floats when accum (else unused). */
void pw_backward_data(const float *dy, const float *w, const float *x, float *dx, float *scratch, int N, int Ci,
                      int Co, int HW, int relu, int accum) {
    float *target = accum ? scratch : dx;
    pointwise_products(dy, w, 1, Ci, target, N, Co, Ci, HW, 0);
    if (!(relu || accum)) return;
    const long size = (long)N * Ci * HW;
    #pragma omp parallel for schedule(static)
    for (long e = 0; e < size; ++e) {
        float v = relu && x[e] <= 0.0f ? 0.0f : target[e];
        dx[e] = accum ? dx[e] + v : v;
    }
}

/* dw[o,i] (+)= sum_{n,hw} dy[n,o,hw] r(x)[n,i,hw]: one BO x BI block of (o, i) per task, its sums kept
 * as vectors of 8 pixels over each image (4 x 4 measured best on AVX2 among 2 x 4, 3 x 4, 4 x 3, 2 x 6;
 * edge rows are clamped and their sums dropped), gathered in double across images. */
void pw_backward_weight(const float *dy, const float *x, float *dw, int N, int Ci, int Co, int HW, int relu,
                        int accum) {
    enum { BO = 4, BI = 4 };
    const int blocks_i = (Ci + BI - 1) / BI, blocks = ((Co + BO - 1) / BO) * blocks_i, wide = HW - HW % BLOCK;
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < blocks; ++t) {
        const int o0 = (t / blocks_i) * BO, i0 = (t % blocks_i) * BI;
        const int ob = Co - o0 < BO ? Co - o0 : BO, ib = Ci - i0 < BI ? Ci - i0 : BI;
        double totals[BO][BI] = {{0.0}};
        for (int n = 0; n < N; ++n) {
            const float *d[BO], *v[BI];
            for (int a = 0; a < BO; ++a) d[a] = dy + ((long)n * Co + o0 + (a < ob ? a : ob - 1)) * HW;
            for (int b = 0; b < BI; ++b) v[b] = x + ((long)n * Ci + i0 + (b < ib ? b : ib - 1)) * HW;
            const vec8 zero = {0};
            vec8 acc[BO][BI];
            for (int a = 0; a < BO; ++a)
                for (int b = 0; b < BI; ++b) acc[a][b] = zero;
            for (int e = 0; e < wide; e += BLOCK) {
                vec8 xv[BI];
                #pragma GCC unroll 8
                for (int b = 0; b < BI; ++b) {
                    memcpy(&xv[b], v[b] + e, sizeof xv[b]);
                    if (relu) xv[b] = (vec8)((ivec8)xv[b] & (xv[b] > zero));
                }
                #pragma GCC unroll 8
                for (int a = 0; a < BO; ++a) {
                    vec8 dv;
                    memcpy(&dv, d[a] + e, sizeof dv);
                    #pragma GCC unroll 8
                    for (int b = 0; b < BI; ++b) acc[a][b] += dv * xv[b];
                }
            }
            for (int a = 0; a < ob; ++a) {
                for (int b = 0; b < ib; ++b) {
                    float sum = 0.0f;
                    for (int j = 0; j < BLOCK; ++j) sum += acc[a][b][j];
                    for (int e = wide; e < HW; ++e) sum += d[a][e] * (relu && v[b][e] < 0.0f ? 0.0f : v[b][e]);
                    totals[a][b] += sum;
                }
            }
        }
        for (int a = 0; a < ob; ++a) {
            for (int b = 0; b < ib; ++b) {
                float *target = dw + (long)(o0 + a) * Ci + i0 + b;
                *target = accum ? *target + (float)totals[a][b] : (float)totals[a][b];
            }
        }
    }
}
