/* OpenBLAS's cblas_sgemm, for every kernel file: ops/blas.py loads the library and ops/cpu_kernels.py hands its
 * address to set_sgemm (cpu_kernels.c) once, before any kernel runs. One call runs on one thread; the kernels
 * spread their calls over their OpenMP threads. */
#ifndef NNABLA_DARTS_SGEMM_H
#define NNABLA_DARTS_SGEMM_H

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };  /* CBLAS's enumerations */
typedef void (*sgemm_fn)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                         int lda, const float *B, int ldb, float beta, float *C, int ldc);
extern sgemm_fn sgemm;

#endif
