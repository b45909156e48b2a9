/* stb_image_impl.c - Debian's stb_image.h (the source of the libstb the barlow
 * command links), compiled into the fuzz targets with their sanitizers and coverage,
 * so that fuzz_folder sees inside the decoder. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
