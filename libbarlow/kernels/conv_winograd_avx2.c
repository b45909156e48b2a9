/* conv_winograd_avx2.c - the Winograd transforms at 8 channels per AVX2 register. */
#define BTI_VEC_LANES 8
#include "kernels/conv_winograd_body.h"

BTI_WINO_OPS(bti_wino_avx2);
