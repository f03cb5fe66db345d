/* Multi-threaded 3x3 max and average pooling with pad 1, at stride 1 or 2 (NCHW, float32): the pooling ops of
 * DARTS, which nnabla 1.39 runs on one thread (19 % of a first-order search step at B 64; forward and backward
 * at (64, 16, 32, 32), stride 1: 1.0 ms average and 4.3 ms max here against nnabla's 11.6 and 7.0 ms).
 * ops/cpu_pooling.py wraps them as nnabla functions; tests/test_cpu_pooling.py checks them against nnabla's
 * MaxPooling and AveragePooling (including_pad=False), forward and backward.
 *
 * Output size (H - 1) / s + 1 for 3x3, pad 1. One (n, c) plane per OpenMP task. Average pooling takes the 3x3
 * window as two passes of 3 (along the rows, then down the columns), each a loop over whole rows the compiler
 * vectorises; max pooling, which also keeps where each maximum was, one pass per tap (max_pool_forward).
 * Max pooling at stride 2 runs here from 2^18 input elements up (ops/cpu_pooling.py says why).
 * Padding takes no part: max pooling ignores it (nnabla's, like PyTorch's) and average pooling divides by the
 * count of pixels inside the image (including_pad=False, PyTorch's count_include_pad=False).
 */
#include <math.h>
#include <string.h>

/* Below this many input elements a layer runs on one thread: waking the other one costs more than it saves. */
#define POOL_PARALLEL_MIN_ELEMENTS (1L << 14)

static inline int pooled_size(int size, int s) { return (size - 1) / s + 1; }

/* How many of the taps ox * s - 1 + k (k = 0, 1, 2) lie inside [0, size). */
static inline int taps_inside(int o, int s, int size) { return 3 - (o * s - 1 < 0) - (o * s + 1 > size - 1); }

/* h[ox] = max or sum of the row's pixels ox * s - 1 .. ox * s + 1, `fill` standing for those off the row. */
static void pool_row(const float *row, float *h, int W, int Wo, int s, float fill, int max) {
    float padded[W + 2];
    padded[0] = padded[W + 1] = fill;
    memcpy(padded + 1, row, sizeof(float) * W);
    for (int ox = 0; ox < Wo; ++ox) h[ox] = padded[ox * s];
    for (int k = 1; k < 3; ++k) {
        const float *src = padded + k;
        if (max)
            for (int ox = 0; ox < Wo; ++ox) h[ox] = src[ox * s] > h[ox] ? src[ox * s] : h[ox];
        else
            for (int ox = 0; ox < Wo; ++ox) h[ox] += src[ox * s];
    }
}

/* One plane's 3x3 max (max set) or sum pooling, the sums divided by their pixel counts when `average` is set;
 * the rows of the window first, then its columns. */
static void pool_plane(const float *xp, float *yp, int H, int W, int s, int max, int average) {
    const int Ho = pooled_size(H, s), Wo = pooled_size(W, s);
    float h[H * Wo], inv_cols[Wo];
    for (int iy = 0; iy < H; ++iy) pool_row(xp + iy * W, h + iy * Wo, W, Wo, s, max ? -INFINITY : 0.0f, max);
    for (int ox = 0; ox < Wo; ++ox) inv_cols[ox] = 1.0f / taps_inside(ox, s, W);
    for (int oy = 0; oy < Ho; ++oy) {
        float *yr = yp + oy * Wo;
        const int top = oy * s - 1;  /* the middle row, oy * s, always lies inside */
        memcpy(yr, h + (top + 1) * Wo, sizeof(float) * Wo);
        for (int iy = top; iy <= top + 2; iy += 2) {
            if (iy < 0 || iy >= H) continue;
            const float *hr = h + iy * Wo;
            if (max)
                for (int ox = 0; ox < Wo; ++ox) yr[ox] = hr[ox] > yr[ox] ? hr[ox] : yr[ox];
            else
                for (int ox = 0; ox < Wo; ++ox) yr[ox] += hr[ox];
        }
        if (average) {
            const float inv_rows = 1.0f / taps_inside(oy, s, H);
            for (int ox = 0; ox < Wo; ++ox) yr[ox] *= inv_rows * inv_cols[ox];
        }
    }
}

/* y = 3x3 average pooling of x. */
void avg_pool_forward(const float *x, float *y, int N, int C, int H, int W, int s) {
    const int Ho = pooled_size(H, s), Wo = pooled_size(W, s);
    #pragma omp parallel for schedule(static) if ((long)N * C * H * W >= POOL_PARALLEL_MIN_ELEMENTS)
    for (long nc = 0; nc < (long)N * C; ++nc) pool_plane(x + nc * H * W, y + nc * Ho * Wo, H, W, s, 0, 1);
}

/* y = 3x3 max pooling of x, and `taps` the window position (ky * 3 + kx) each maximum came from, for the
 * backward pass: the first one in the window's row-major order, as nnabla's MaxPooling (and PyTorch's) picks
 * among equal values (finding the maximum again in the backward pass, branching per pixel, took 17 ms at
 * (64, 16, 32, 32), stride 1, where nnabla's backward with kept indices takes 0.5 ms).
 * The plane is padded with -inf and laid out so that each tap reads the whole plane's outputs as one run, in
 * rows of stride R (the output kept at that stride, like dw_forward's): at stride 1 the padded plane itself; at
 * stride 2 its even rows, then its odd ones, each row its even columns, then its odd ones (Wo + 1 each).
 * Per-row loops, or strided reads, left the layer slower than nnabla's single thread on 8 x 8 planes. */
void max_pool_forward(const float *x, float *y, unsigned char *taps, int N, int C, int H, int W, int s) {
    const int Ho = pooled_size(H, s), Wo = pooled_size(W, s), half = Wo + 1;
    const int R = s == 1 ? W + 2 : 2 * half, len = Ho * R;
    const int even_rows = s == 1 ? H + 3 : Ho + 2, size = s == 1 ? even_rows * R : (even_rows + Ho + 1) * R;
    const int row_bases[3] = {0, s == 1 ? R : even_rows * R, s == 1 ? 2 * R : R};
    const int column_offsets[3] = {0, s == 1 ? 1 : half, s == 1 ? 2 : 1};
    #pragma omp parallel for schedule(static) if ((long)N * C * H * W >= POOL_PARALLEL_MIN_ELEMENTS)
    for (long nc = 0; nc < (long)N * C; ++nc) {
        float padded[size], best[len];
        int tap[len];
        const float *xp = x + nc * H * W;
        for (int i = 0; i < size; ++i) padded[i] = -INFINITY;
        for (int iy = 0; iy < H; ++iy) {
            const float *xr = xp + iy * W;
            const int r = iy + 1;  /* the padded row */
            if (s == 1) {
                memcpy(padded + r * R + 1, xr, sizeof(float) * W);
            } else {
                float *row = padded + (r % 2 ? even_rows * R : 0) + (r / 2) * R;
                for (int ix = 0; ix < W; ++ix) row[(ix + 1) / 2 + ((ix + 1) % 2) * half] = xr[ix];
            }
        }
        for (int i = 0; i < len; ++i) {
            best[i] = -INFINITY;
            tap[i] = 4;  /* the centre, which lies inside; only an x of -inf keeps it */
        }
        for (int k = 0; k < 9; ++k) {
            const float *src = padded + row_bases[k / 3] + column_offsets[k % 3];
            for (int i = 0; i < len; ++i) {
                const int larger = src[i] > best[i];
                best[i] = larger ? src[i] : best[i];
                tap[i] = larger ? k : tap[i];
            }
        }
        float *yp = y + nc * Ho * Wo;
        unsigned char *tp = taps + nc * Ho * Wo;
        for (int oy = 0; oy < Ho; ++oy) {
            memcpy(yp + oy * Wo, best + oy * R, sizeof(float) * Wo);
            for (int ox = 0; ox < Wo; ++ox) tp[oy * Wo + ox] = (unsigned char)tap[oy * R + ox];
        }
    }
}

/* dx (+)= dy routed to each window's maximum, at the taps max_pool_forward kept. */
void max_pool_backward(const float *dy, const unsigned char *taps, float *dx, int N, int C, int H, int W, int s,
                       int accum) {
    const int Ho = pooled_size(H, s), Wo = pooled_size(W, s);
    #pragma omp parallel for schedule(static) if ((long)N * C * H * W >= POOL_PARALLEL_MIN_ELEMENTS)
    for (long nc = 0; nc < (long)N * C; ++nc) {
        const float *dyp = dy + nc * Ho * Wo;
        const unsigned char *tp = taps + nc * Ho * Wo;
        float *dxp = dx + nc * H * W;
        if (!accum) memset(dxp, 0, sizeof(float) * H * W);
        for (int oy = 0; oy < Ho; ++oy)
            for (int ox = 0; ox < Wo; ++ox) {
                const int k = tp[oy * Wo + ox];
                dxp[(oy * s - 1 + k / 3) * W + ox * s - 1 + k % 3] += dyp[oy * Wo + ox];
            }
    }
}

/* dx (+)= the transpose of average pooling applied to dy: each output's gradient over its pixel count, g, summed
 * back over the windows that read each pixel. At stride 1 those are the 3x3 windows around it, so the transpose
 * is the same sum pooling (of g). */
void avg_pool_backward(const float *dy, float *dx, int N, int C, int H, int W, int s, int accum) {
    const int Ho = pooled_size(H, s), Wo = pooled_size(W, s);
    #pragma omp parallel for schedule(static) if ((long)N * C * H * W >= POOL_PARALLEL_MIN_ELEMENTS)
    for (long nc = 0; nc < (long)N * C; ++nc) {
        float g[Ho * Wo], inv_cols[Wo], sums[accum ? H * W : 1];
        const float *dyp = dy + nc * Ho * Wo;
        float *dxp = dx + nc * H * W, *target = accum ? sums : dxp;
        for (int ox = 0; ox < Wo; ++ox) inv_cols[ox] = 1.0f / taps_inside(ox, s, W);
        for (int oy = 0; oy < Ho; ++oy) {
            const float inv_rows = 1.0f / taps_inside(oy, s, H);
            for (int ox = 0; ox < Wo; ++ox) g[oy * Wo + ox] = dyp[oy * Wo + ox] * inv_rows * inv_cols[ox];
        }
        if (s == 1) {
            pool_plane(g, target, H, W, 1, 0, 0);
        } else {
            /* At stride 2 the windows of outputs j and j + 1 share pixel 2j + 1, and pixel 2j is in window j
             * alone: each row of dx gathers one or two rows of g, each pixel one or two of its columns. */
            float v[Wo + 1];
            v[Wo] = 0.0f;
            for (int iy = 0; iy < H; ++iy) {
                const float *upper = g + (iy / 2) * Wo;
                if (iy % 2 && iy / 2 + 1 < Ho)
                    for (int ox = 0; ox < Wo; ++ox) v[ox] = upper[ox] + upper[Wo + ox];
                else
                    memcpy(v, upper, sizeof(float) * Wo);
                float *dxr = target + iy * W;
                for (int ix = 0; ix < W; ++ix) dxr[ix] = ix % 2 ? v[ix / 2] + v[ix / 2 + 1] : v[ix / 2];
            }
        }
        if (accum)
            for (int i = 0; i < H * W; ++i) dxp[i] += sums[i];
    }
}
