/*
 * blas.h - the CBLAS entry points libbarlow calls, and the OpenBLAS extensions
 * it uses, declared here (and nowhere else) so the build does not depend on
 * which cblas.h (OpenBLAS or netlib) is installed. The values of the enums are
 * fixed by the CBLAS standard.
 */
#ifndef BARLOW_BLAS_H
#define BARLOW_BLAS_H

enum { BTI_ROW_MAJOR = 101, BTI_COL_MAJOR = 102 };
enum { BTI_NO_TRANS = 111, BTI_TRANS = 112 };
enum { BTI_UPPER = 121, BTI_LOWER = 122 };

/* Standard CBLAS prototypes (enum parameters declared as int, same ABI). */
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float *a, int lda,
                 const float *x, int incx, float beta, float *y, int incy);
void cblas_dgemm(int order, int transa, int transb, int m, int n, int k, double alpha,
                 const double *a, int lda, const double *b, int ldb, double beta, double *c,
                 int ldc);
void cblas_ssyrk(int order, int uplo, int trans, int n, int k, float alpha, const float *a, int lda,
                 float beta, float *c, int ldc);

#ifdef BT_BLAS_OPENBLAS
/* OpenBLAS's own entry points (its cblas.h), in an OpenBLAS build only: the
 * process-wide thread count (common/threads.c) and the build facts
 * (common/version.c, kernels/sgemm.c). */
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);
char *openblas_get_corename(void);
char *openblas_get_config(void);
#endif

#endif /* BARLOW_BLAS_H */
