/* Weighted sums of K equally shaped float32 arrays of N samples, y[n, i] = sum_k c_k[n] x_k[n, i], multi-threaded:
 * the mixed op of the search network (c_k one weight per op, or one per sample and op) and the node sums of the
 * evaluation network with drop path (c_k a per-sample keep scale, or 1 for an edge that is not dropped).
 * ops/cpu_sums.py wraps them as an nnabla function; tests/test_cpu_sums.py checks them against nnabla's own
 * composition of the same sum, forward and backward.
 *
 * Coefficient k of sample n is c[k][n * c_stride[k]]: stride 0 shares one value over the batch.
 *
 * Each task is one block of one sample: the block of y (BLOCK floats, 16 KB) stays in the L1 cache while the K
 * inputs stream through it, so memory sees each input read once and y written once, where nnabla's Stack +
 * BatchMatmul wrote and read a stacked copy of all K inputs (and its BatchMatmul ran on one thread).
 */
#include <stdlib.h>

#include <omp.h>

enum { BLOCK = 4096 };

static inline long blocks_of(int S) { return (S + BLOCK - 1) / BLOCK; }

void wsum_forward(const float *const *x, const float *const *c, const int *c_stride, float *y, int K, int N,
                  int S) {
    const long blocks = blocks_of(S);
    #pragma omp parallel for schedule(static)
    for (long task = 0; task < N * blocks; ++task) {
        const int n = (int)(task / blocks);
        const long lo = (task % blocks) * BLOCK, hi = lo + BLOCK < S ? lo + BLOCK : S;
        float *yp = y + (long)n * S;
        for (int k = 0; k < K; ++k) {
            const float ck = c[k][(long)n * c_stride[k]];
            const float *xp = x[k] + (long)n * S;
            if (k == 0) {
                #pragma omp simd
                for (long i = lo; i < hi; ++i) yp[i] = ck * xp[i];
            } else {
                #pragma omp simd
                for (long i = lo; i < hi; ++i) yp[i] += ck * xp[i];
            }
        }
    }
}

/* dx_k = c_k dy (added to dx_k where dx_accum[k]) for every dx[k] that is not NULL; dc_k[n] = sum_i dy[n, i]
 * x_k[n, i] (summed over n as well for a shared coefficient, added where dc_accum[k]) for every dc[k] that is not
 * NULL. The blocks' partial dot products are gathered in double, in a fixed order: the result does not depend on
 * the thread count. Inputs given twice (the same array at k and k') are fine: one task handles its block of every
 * k in order, and nnabla sets accum for the second occurrence. */
void wsum_backward(const float *dy, const float *const *x, const float *const *c, const int *c_stride,
                   float *const *dx, const int *dx_accum, float *const *dc, const int *dc_accum, int K, int N, int S) {
    const long blocks = blocks_of(S), tasks = N * blocks;
    int any_dc = 0;
    for (int k = 0; k < K; ++k) any_dc |= dc[k] != NULL;
    double *partial = any_dc ? malloc(sizeof(double) * tasks * K) : NULL;
    #pragma omp parallel for schedule(static)
    for (long task = 0; task < tasks; ++task) {
        const int n = (int)(task / blocks);
        const long lo = (task % blocks) * BLOCK, hi = lo + BLOCK < S ? lo + BLOCK : S;
        const float *dyp = dy + (long)n * S;
        for (int k = 0; k < K; ++k) {
            if (dx[k] != NULL) {
                const float ck = c[k][(long)n * c_stride[k]];
                float *dxp = dx[k] + (long)n * S;
                if (dx_accum[k]) {
                    #pragma omp simd
                    for (long i = lo; i < hi; ++i) dxp[i] += ck * dyp[i];
                } else {
                    #pragma omp simd
                    for (long i = lo; i < hi; ++i) dxp[i] = ck * dyp[i];
                }
            }
            if (dc[k] != NULL) {
                const float *xp = x[k] + (long)n * S;
                float dot = 0.0f;
                #pragma omp simd reduction(+:dot)
                for (long i = lo; i < hi; ++i) dot += dyp[i] * xp[i];
                partial[task * K + k] = dot;
            }
        }
    }
    for (int k = 0; k < K; ++k) {
        if (dc[k] == NULL) continue;
        if (c_stride[k] == 0) {
            double total = 0.0;
            for (long task = 0; task < tasks; ++task) total += partial[task * K + k];
            dc[k][0] = (float)(dc_accum[k] ? dc[k][0] + total : total);
            continue;
        }
        for (int n = 0; n < N; ++n) {
            double total = 0.0;
            for (long b = 0; b < blocks; ++b) total += partial[(n * blocks + b) * K + k];
            float *g = dc[k] + (long)n * c_stride[k];
            *g = (float)(dc_accum[k] ? *g + total : total);
        }
    }
    free(partial);
}

/* The sum of the squares of all the elements of `count` float32 arrays (array a has sizes[a] elements), in double:
 * the squared global norm of a network's gradients that clipping reads each step. One array per task, each its own
 * double total, added in array order afterwards, so the result does not depend on the threads' timing. */
double sum_of_squares(const float *const *arrays, const long *sizes, int count) {
    double *totals = malloc(sizeof(double) * (count > 0 ? count : 1)), total = 0.0;
    #pragma omp parallel for schedule(dynamic, 8)
    for (int a = 0; a < count; ++a) {
        const float *x = arrays[a];
        double sum = 0.0;
        for (long lo = 0; lo < sizes[a]; lo += BLOCK) {
            const long hi = lo + BLOCK < sizes[a] ? lo + BLOCK : sizes[a];
            float part = 0.0f;
            #pragma omp simd reduction(+:part)
            for (long i = lo; i < hi; ++i) part += x[i] * x[i];
            sum += part;
        }
        totals[a] = sum;
    }
    for (int a = 0; a < count; ++a) total += totals[a];
    free(totals);
    return total;
}
