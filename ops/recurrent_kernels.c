/* Multi-threaded cpu kernels of the recurrent DARTS cells (float32, row-major): the matrix products on
 * OpenBLAS's sgemm split over OpenMP threads by column blocks, and the cells' gated highway steps fused into
 * one pass each way. ops/cpu_recurrent.py wraps them as nnabla functions; tests/test_recurrent.py checks every
 * one against nnabla's own functions, forward and backward.
 *
 * Built by `make kernels` with the other C files of ops/ into one library (cc -O3 -march=native -fopenmp).
 * The reductions gather their partial sums in double, in thread order, so results do not depend on timing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "sgemm.h"

/* [*lo, *hi) of n columns for the calling thread: equal contiguous blocks, rounded to 16 floats (one
 * cache line) so that no two threads write the same line of a row. */
static void thread_block(int n, int *lo, int *hi) {
    const int threads = omp_get_num_threads(), t = omp_get_thread_num();
    int size = (n + threads - 1) / threads;
    size = (size + 15) / 16 * 16;
    *lo = t * size < n ? t * size : n;
    *hi = *lo + size < n ? *lo + size : n;
}

/* x * mask (M x K) in a new buffer, the mask (R x K) repeated over the rows (row m takes mask row m % R): the
 * dropout mask of the hidden state, shared by every time step or edge whose rows are stacked in x. */
static float *masked_copy(const float *x, const float *mask, int R, int M, int K) {
    float *out = malloc(sizeof(float) * (long)M * K);
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; ++m) {
        const float *xm = x + (long)m * K, *r = mask + (long)(m % R) * K;
        float *o = out + (long)m * K;
        #pragma omp simd
        for (int k = 0; k < K; ++k) o[k] = xm[k] * r[k];
    }
    return out;
}

/* y (M x N) = (x * mask) (M x K) . W (+ b), W (K x N), or (N x K) used transposed when wt (a tied decoder);
 * mask may be null (no mask). Each thread computes a block of y's columns. */
void rnn_affine_forward(const float *x, const float *mask, int R, const float *w, const float *b, float *y, int M,
                        int K, int N, int wt) {
    float *xm = mask ? masked_copy(x, mask, R, M, K) : 0;
    const float *a = xm ? xm : x;
    #pragma omp parallel
    {
        int lo, hi;
        thread_block(N, &lo, &hi);
        if (hi > lo) {
            if (b)
                for (long m = 0; m < M; ++m) memcpy(y + m * N + lo, b + lo, sizeof(float) * (hi - lo));
            sgemm(ROW_MAJOR, NO_TRANS, wt ? TRANS : NO_TRANS, M, hi - lo, K, 1.0f, a, K,
                  wt ? w + (long)lo * K : w + lo, wt ? K : N, b ? 1.0f : 0.0f, y + lo, N);
        }
    }
    free(xm);
}

/* dx (M x K) (+)= (dy (M x N) . W^T (or . W when wt)) * mask, by blocks of dx's columns; with a mask the
 * product goes through a buffer. */
void rnn_affine_backward_data(const float *dy, const float *mask, int R, const float *w, float *dx, int M, int K,
                              int N, int wt, int accum) {
    float *product = mask ? malloc(sizeof(float) * (long)M * K) : 0;
    float *target = product ? product : dx;
    #pragma omp parallel
    {
        int lo, hi;
        thread_block(K, &lo, &hi);
        if (hi > lo)
            sgemm(ROW_MAJOR, NO_TRANS, wt ? NO_TRANS : TRANS, M, hi - lo, N, 1.0f, dy, N,
                  wt ? w + lo : w + (long)lo * N, wt ? K : N, accum && !product ? 1.0f : 0.0f, target + lo, K);
    }
    if (product) {
        #pragma omp parallel for schedule(static)
        for (int m = 0; m < M; ++m) {
            const float *p = product + (long)m * K, *r = mask + (long)(m % R) * K;
            float *d = dx + (long)m * K;
            if (accum) {
                #pragma omp simd
                for (int k = 0; k < K; ++k) d[k] += p[k] * r[k];
            } else {
                #pragma omp simd
                for (int k = 0; k < K; ++k) d[k] = p[k] * r[k];
            }
        }
        free(product);
    }
}

/* dW (+)= (x * mask)^T . dy (K x N), or dy^T . (x * mask) (N x K) when wt, by blocks of N; db (+)= the column
 * sums of dy. */
void rnn_affine_backward_weight(const float *dy, const float *x, const float *mask, int R, float *dw, float *db,
                                int M, int K, int N, int wt, int accum_w, int accum_b) {
    float *xm = mask && dw ? masked_copy(x, mask, R, M, K) : 0;
    const float *a = xm ? xm : x;
    #pragma omp parallel
    {
        int lo, hi;
        thread_block(N, &lo, &hi);
        if (hi > lo && dw) {
            if (wt)
                sgemm(ROW_MAJOR, TRANS, NO_TRANS, hi - lo, K, M, 1.0f, dy + lo, N, a, K, accum_w ? 1.0f : 0.0f,
                      dw + (long)lo * K, K);
            else
                sgemm(ROW_MAJOR, TRANS, NO_TRANS, K, hi - lo, M, 1.0f, a, K, dy + lo, N, accum_w ? 1.0f : 0.0f,
                      dw + lo, N);
        }
        if (hi > lo && db) {
            double *sums = calloc(hi - lo, sizeof(double));
            for (long m = 0; m < M; ++m) {
                const float *row = dy + m * N + lo;
                #pragma omp simd
                for (int n = 0; n < hi - lo; ++n) sums[n] += row[n];
            }
            for (int n = 0; n < hi - lo; ++n) db[lo + n] = (accum_b ? db[lo + n] : 0.0f) + (float)sums[n];
            free(sums);
        }
    }
    free(xm);
}

/* The cells' activations, as quark0/darts' op ids 1..4: tanh, relu, sigmoid, identity. */
enum { OP_TANH = 1, OP_RELU = 2, OP_SIGMOID = 3, OP_IDENTITY = 4 };

/* e^v, branch-free so that the loops over it vectorise: libm's expf and tanhf are scalar calls, and with them
 * a search step's mixing took 3.9 of its 11.2 s at PTB size (glibc's vector libmvec would need the library
 * linked with -lm). Cephes' expf: v = n ln 2 + r, |r| <= ln 2 / 2, e^r by its degree-6 polynomial (about
 * 1 ulp), 2^n by the exponent bits. v is clamped to [-87, 88], where 2^n stays a normal float. */
static inline __attribute__((always_inline)) float exp_approx(float v) {
    v = v < -87.0f ? -87.0f : v > 88.0f ? 88.0f : v;  /* not fminf/fmaxf, which do not vectorise */
    /* n = round(v / ln 2) by adding and taking away 1.5 * 2^23 (floorf does not vectorise either) */
    const float n = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = v - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float er = p * r * r + r + 1.0f;
    const int bits = ((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);  /* a bit cast, which vectorises where a union's load does not */
    return er * scale;
}

static inline __attribute__((always_inline)) float sigmoid(float v) { return 1.0f / (1.0f + exp_approx(-v)); }

/* tanh v = sign(v) (1 - e) / (1 + e), e = e^(-2|v|): within 1.2e-7 of tanhf absolutely (the rounding of
 * 1 - e near 0; relative to |tanh v| it is worse below 1e-3, where the states it updates are larger). */
static inline __attribute__((always_inline)) float tanh_approx(float v) {
    const float e = exp_approx(-2.0f * fabsf(v)), t = (1.0f - e) / (1.0f + e);
    return copysignf(t, v);
}

static inline __attribute__((always_inline)) float activate(int op, float v) {
    switch (op) {
        case OP_TANH: return tanh_approx(v);
        case OP_RELU: return v > 0.0f ? v : 0.0f;
        case OP_SIGMOID: return sigmoid(v);
        default: return v;
    }
}

/* The derivative of an activation from its input v and its output a. */
static inline __attribute__((always_inline)) float derivative(int op, float v, float a) {
    switch (op) {
        case OP_TANH: return 1.0f - a * a;
        case OP_RELU: return v > 0.0f ? 1.0f : 0.0f;
        case OP_SIGMOID: return a * (1.0f - a);
        default: return 1.0f;
    }
}

/* One row of an evaluation cell's node; op is a constant where it is inlined, so each op's loop vectorises
 * (as does each branch on add, a pointer that may be null). */
static inline void gate_row(const float *c, const float *h, const float *ac, const float *ah, const float *s,
                            float *o, int n, const int op) {
    if (ac) {
        #pragma omp simd
        for (int e = 0; e < n; ++e) o[e] = s[e] + sigmoid(c[e] + ac[e]) * (activate(op, h[e] + ah[e]) - s[e]);
    } else {
        #pragma omp simd
        for (int e = 0; e < n; ++e) o[e] = s[e] + sigmoid(c[e]) * (activate(op, h[e]) - s[e]);
    }
}

/* Below this many elements a gate runs on the calling thread: an evaluation cell's node at PTB size (64 x 850)
 * takes 0.04 ms on 2 threads, less than waking a thread can cost when the other core is busy. */
#define GATE_PARALLEL_MIN_ELEMENTS (1 << 17)

/* An evaluation cell's node, for B rows of n units: [c, h] = ch (+ add), both B x 2n;
 * out = s + sigmoid(c) * (f(h) - s). */
void rnn_gate_forward(const float *ch, const float *add, const float *s, float *out, int B, int n, int op) {
    #pragma omp parallel for schedule(static) if ((long)B * n >= GATE_PARALLEL_MIN_ELEMENTS)
    for (int b = 0; b < B; ++b) {
        const float *c = ch + (long)b * 2 * n, *h = c + n, *sb = s + (long)b * n;
        const float *ac = add ? add + (long)b * 2 * n : 0, *ah = ac ? ac + n : 0;
        float *o = out + (long)b * n;
        switch (op) {
            case OP_TANH: gate_row(c, h, ac, ah, sb, o, n, OP_TANH); break;
            case OP_RELU: gate_row(c, h, ac, ah, sb, o, n, OP_RELU); break;
            case OP_SIGMOID: gate_row(c, h, ac, ah, sb, o, n, OP_SIGMOID); break;
            default: gate_row(c, h, ac, ah, sb, o, n, OP_IDENTITY);
        }
    }
}

/* One row of its gradients into g (3n: those of c, h and s), from [c, h] (+ [ac, ah]), s and dout d. */
static inline void gate_grad_row(const float *d, const float *c, const float *h, const float *ac, const float *ah,
                                 const float *s, float *g, int n, const int op) {
    float *gc = g, *gh = g + n, *gs = g + 2 * n;
    if (ac) {
        #pragma omp simd
        for (int e = 0; e < n; ++e) {
            const float z = sigmoid(c[e] + ac[e]), v = h[e] + ah[e], a = activate(op, v);
            gc[e] = d[e] * (a - s[e]) * z * (1.0f - z);
            gh[e] = d[e] * z * derivative(op, v, a);
            gs[e] = d[e] * (1.0f - z);
        }
    } else {
        #pragma omp simd
        for (int e = 0; e < n; ++e) {
            const float z = sigmoid(c[e]), v = h[e], a = activate(op, v);
            gc[e] = d[e] * (a - s[e]) * z * (1.0f - z);
            gh[e] = d[e] * z * derivative(op, v, a);
            gs[e] = d[e] * (1.0f - z);
        }
    }
}

/* target[0:n] = (or +=) values[0:n]; nothing when target is null. */
static inline void store(float *target, const float *values, int n, int accum) {
    if (!target) return;
    if (accum) {
        #pragma omp simd
        for (int e = 0; e < n; ++e) target[e] += values[e];
    } else {
        memcpy(target, values, sizeof(float) * n);
    }
}

/* Its gradients: dch (B x 2n), dadd (the same values) and ds, each written or accumulated, or skipped when
 * null. */
void rnn_gate_backward(const float *dout, const float *ch, const float *add, const float *s, float *dch,
                       float *dadd, float *ds, int B, int n, int op, int accum_ch, int accum_add, int accum_s) {
    #pragma omp parallel if ((long)B * n >= GATE_PARALLEL_MIN_ELEMENTS)
    {
        float *g = malloc(sizeof(float) * 3 * n);  /* this thread's row: [dc, dh] then ds */
        #pragma omp for schedule(static)
        for (int b = 0; b < B; ++b) {
            const long row = (long)b * 2 * n;
            const float *c = ch + row, *h = c + n, *sb = s + (long)b * n, *d = dout + (long)b * n;
            const float *ac = add ? add + row : 0, *ah = ac ? ac + n : 0;
            switch (op) {
                case OP_TANH: gate_grad_row(d, c, h, ac, ah, sb, g, n, OP_TANH); break;
                case OP_RELU: gate_grad_row(d, c, h, ac, ah, sb, g, n, OP_RELU); break;
                case OP_SIGMOID: gate_grad_row(d, c, h, ac, ah, sb, g, n, OP_SIGMOID); break;
                default: gate_grad_row(d, c, h, ac, ah, sb, g, n, OP_IDENTITY);
            }
            store(dch ? dch + row : 0, g, 2 * n, accum_ch);
            store(dadd ? dadd + row : 0, g, 2 * n, accum_add);
            store(ds ? ds + (long)b * n : 0, g + 2 * n, n, accum_s);
        }
        free(g);
    }
}

#define MIX_OPS 4  /* tanh, relu, sigmoid, identity: every op but 'none' */

/* A search cell's node, for J edges (the earlier nodes j) of B x n: [c_j, h_j] = ch[j] (B x 2n), s_j = s[j],
 * p (J x 4) the edges' op weights and P_j their sum; out = sum_j P_j s_j + sigmoid(c_j) (sum_op p_jop op(h_j)
 * - P_j s_j). Each thread sums every edge for its rows, in edge order. */
void rnn_mix_forward(const float *ch, const float *s, const float *p, float *out, int J, int B, int n) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; ++b) {
        float *o = out + (long)b * n;
        memset(o, 0, sizeof(float) * n);
        for (int j = 0; j < J; ++j) {
            const float p0 = p[j * MIX_OPS], p1 = p[j * MIX_OPS + 1], p2 = p[j * MIX_OPS + 2];
            const float p3 = p[j * MIX_OPS + 3], P = p0 + p1 + p2 + p3;
            const float *c = ch + ((long)j * B + b) * 2 * n, *h = c + n, *sb = s + ((long)j * B + b) * n;
            #pragma omp simd
            for (int e = 0; e < n; ++e) {
                const float g = sigmoid(c[e]), v = h[e];
                const float mixed = p0 * tanh_approx(v) + p1 * (v > 0.0f ? v : 0.0f) + p2 * sigmoid(v) + p3 * v;
                o[e] += P * sb[e] + g * (mixed - P * sb[e]);
            }
        }
    }
}

/* Its gradients: dch (J x B x 2n), ds (J x B x n) and dp (J x 4), each written or accumulated, or skipped when
 * null. dp_jop = sum over rows and units of dout * (s_j + sigmoid(c_j) (op(h_j) - s_j)), gathered per
 * (edge, row) in double and added in row order. Each row's gradients go through a buffer first, so that the
 * loop computing them has no branch and vectorises. */
void rnn_mix_backward(const float *dout, const float *ch, const float *s, const float *p, float *dch, float *ds,
                      float *dp, int J, int B, int n, int accum_ch, int accum_s, int accum_p) {
    double *rows = calloc((long)J * B * MIX_OPS, sizeof(double));
    #pragma omp parallel
    {
        float *grads = malloc(sizeof(float) * 3 * n);  /* this thread's row: [dc, dh] then ds */
        float *gc = grads, *gh = grads + n, *gs = grads + 2 * n;
        #pragma omp for schedule(static) collapse(2)
        for (int j = 0; j < J; ++j)
            for (int b = 0; b < B; ++b) {
                const float p0 = p[j * MIX_OPS], p1 = p[j * MIX_OPS + 1], p2 = p[j * MIX_OPS + 2];
                const float p3 = p[j * MIX_OPS + 3], P = p0 + p1 + p2 + p3;
                const long row = (long)j * B + b;
                const float *c = ch + row * 2 * n, *h = c + n, *sb = s + row * n, *d = dout + (long)b * n;
                double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
                #pragma omp simd reduction(+:s0, s1, s2, s3)
                for (int e = 0; e < n; ++e) {
                    const float g = sigmoid(c[e]), v = h[e], t = tanh_approx(v), r = v > 0.0f ? v : 0.0f;
                    const float q = sigmoid(v), mixed = p0 * t + p1 * r + p2 * q + p3 * v;
                    gc[e] = d[e] * (mixed - P * sb[e]) * g * (1.0f - g);
                    gh[e] = d[e] * g * (p0 * (1.0f - t * t) + (v > 0.0f ? p1 : 0.0f) + p2 * q * (1.0f - q) + p3);
                    gs[e] = d[e] * P * (1.0f - g);
                    const float base = sb[e] - g * sb[e];
                    s0 += d[e] * (base + g * t);
                    s1 += d[e] * (base + g * r);
                    s2 += d[e] * (base + g * q);
                    s3 += d[e] * (base + g * v);
                }
                store(dch ? dch + row * 2 * n : 0, grads, 2 * n, accum_ch);
                store(ds ? ds + row * n : 0, gs, n, accum_s);
                double *sums = rows + row * MIX_OPS;
                sums[0] = s0, sums[1] = s1, sums[2] = s2, sums[3] = s3;
            }
        free(grads);
    }
    if (dp)
        for (int j = 0; j < J; ++j)
            for (int k = 0; k < MIX_OPS; ++k) {
                double total = 0.0;
                for (int b = 0; b < B; ++b) total += rows[((long)j * B + b) * MIX_OPS + k];
                dp[j * MIX_OPS + k] = (accum_p ? dp[j * MIX_OPS + k] : 0.0f) + (float)total;
            }
    free(rows);
}

/* The language model's loss over M rows of N words: loss[m] = log sum_n e^x[m, n] - x[m, t[m]], with t the
 * target word ids (as floats, nnabla's label variables), and lse[m] the log-sum-exp kept for the backward
 * pass. The sums are gathered in double. */
void rnn_softmax_ce_forward(const float *x, const float *t, float *loss, float *lse, int M, int N) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; ++m) {
        const float *row = x + (long)m * N;
        float top = row[0];
        #pragma omp simd reduction(max:top)
        for (int n = 0; n < N; ++n) top = row[n] > top ? row[n] : top;
        double sum = 0.0;
        #pragma omp simd reduction(+:sum)
        for (int n = 0; n < N; ++n) sum += exp_approx(row[n] - top);
        lse[m] = top + (float)log(sum);
        loss[m] = lse[m] - row[(int)t[m]];
    }
}

/* dx[m, n] (+)= dloss[m] * (softmax(x)[m, n] - [n == t[m]]). */
void rnn_softmax_ce_backward(const float *x, const float *t, const float *lse, const float *dloss, float *dx,
                             int M, int N, int accum) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; ++m) {
        const float *row = x + (long)m * N;
        float *d = dx + (long)m * N;
        const float scale = dloss[m], shift = lse[m];
        if (accum) {
            #pragma omp simd
            for (int n = 0; n < N; ++n) d[n] += scale * exp_approx(row[n] - shift);
        } else {
            #pragma omp simd
            for (int n = 0; n < N; ++n) d[n] = scale * exp_approx(row[n] - shift);
        }
        d[(int)t[m]] -= scale;
    }
}
