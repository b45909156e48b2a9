/* fast_blas.h - for command-line tools: re-run the program with OpenBLAS's fast
 * kernels when Debian's OpenBLAS picked its generic ones.
 *
 * Debian 12's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not recognise recent Xeons
 * and falls back to its "Prescott" kernels, several times slower than its
 * SkylakeX (AVX-512) or Haswell (AVX2) ones on the same CPU. OpenBLAS reads
 * OPENBLAS_CORETYPE once, when it loads, so the only way to switch is to set it
 * and start again. A library must not do this behind its host's back; a
 * program that owns its process may. Set OPENBLAS_CORETYPE yourself (any
 * value) to keep full control: this then does nothing. */
#ifndef BARLOW_FAST_BLAS_H
#define BARLOW_FAST_BLAS_H

/* Re-execute /proc/self/exe with argv and OPENBLAS_CORETYPE set when OpenBLAS
 * chose its Prescott kernels on a CPU with AVX2 or AVX-512; returns (doing
 * nothing) otherwise, or when the exec fails. */
void fast_blas_reexec(char **argv);

#endif
