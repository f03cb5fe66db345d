/* Weight gradients summed over images by several OpenMP threads: each thread sums its images (a static schedule)
 * into a part of its own, and the parts are added in thread order, so the result does not depend on timing. */
#ifndef NNABLA_DARTS_THREAD_PARTS_H
#define NNABLA_DARTS_THREAD_PARTS_H

/* target[e] (+ when accum)= the sum over t < threads of parts[t * stride + e], for e < count. */
static inline void add_thread_parts(float *target, const float *parts, long count, long stride, int threads,
                                    int accum) {
    for (long e = 0; e < count; ++e) {
        float total = accum ? target[e] : 0.0f;
        for (int t = 0; t < threads; ++t) total += parts[t * stride + e];
        target[e] = total;
    }
}

#endif
