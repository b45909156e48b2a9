/* conv_winograd_avx512.c - the Winograd transforms at 16 channels per AVX-512 register. */
#define BTI_VEC_LANES 16
#include "kernels/conv_winograd_body.h"

BTI_WINO_OPS(bti_wino_avx512);
