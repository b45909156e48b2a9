/* png_write.h - a small header-only PNG writer with no dependencies.
 *
 *   #include "png_write.h"
 *   png_write_gray8("a.png", width, height, pixels);   pixels: width*height bytes
 *   png_write_rgb8("b.png", width, height, pixels);    pixels: width*height*3 bytes (RGBRGB...)
 *
 * Both return 0 on success and -1 when the file cannot be written. Rows are
 * top to bottom, packed. The image data is stored in uncompressed deflate
 * blocks (valid PNG, read by every viewer; files are about the raw size), so
 * neither zlib nor anything else is needed. Functions are static inline:
 * include it in any number of files. */
#ifndef PNG_WRITE_H
#define PNG_WRITE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t png_crc_(uint32_t crc, const uint8_t *p, size_t n)
{
    size_t i;
    int k;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static inline void png_be32_(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static inline int png_chunk_(FILE *f, const char *type, const uint8_t *data, uint32_t n)
{
    uint8_t head[8], tail[4];
    uint32_t crc;
    png_be32_(head, n);
    memcpy(head + 4, type, 4);
    crc = png_crc_(0, head + 4, 4);
    crc = png_crc_(crc, data, n);
    png_be32_(tail, crc);
    return fwrite(head, 1, 8, f) == 8 && (n == 0 || fwrite(data, 1, n, f) == n) &&
                   fwrite(tail, 1, 4, f) == 4
               ? 0
               : -1;
}

/* color_type 0 (gray) or 2 (RGB), 8 bits per sample. */
static inline int png_write_(const char *path, int w, int h, int color_type, const uint8_t *px)
{
    const int bpp = color_type == 2 ? 3 : 1;
    size_t row = (size_t)w * bpp + 1, raw = row * (size_t)h;
    size_t blocks = raw / 65535 + 1, zn = 2 + raw + 5 * blocks + 4, pos = 0, done = 0, i;
    uint8_t ihdr[13], *z;
    uint32_t a = 1, b = 0;
    FILE *f;
    int y, ok;
    if (w <= 0 || h <= 0 || zn > 0x7fffffffu)
        return -1;
    z = (uint8_t *)malloc(zn);
    if (!z)
        return -1;
    z[pos++] = 0x78; /* zlib header: deflate, 32K window, no preset dictionary */
    z[pos++] = 0x01;
    for (y = 0; y < h; y++) {
        /* each row: filter byte 0, then the samples; split into stored blocks */
        const uint8_t *src = px + (size_t)y * (row - 1);
        for (i = 0; i < row; i++) {
            uint8_t v = i ? src[i - 1] : 0;
            if (done % 65535 == 0) {
                size_t len = raw - done < 65535 ? raw - done : 65535;
                z[pos++] = (uint8_t)(raw - done <= 65535); /* BFINAL on the last block */
                z[pos++] = (uint8_t)len, z[pos++] = (uint8_t)(len >> 8);
                z[pos++] = (uint8_t)~len, z[pos++] = (uint8_t)(~len >> 8);
            }
            z[pos++] = v;
            done++;
            a = (a + v) % 65521;
            b = (b + a) % 65521;
        }
    }
    png_be32_(z + pos, (b << 16) | a);
    pos += 4;
    png_be32_(ihdr, (uint32_t)w);
    png_be32_(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8, ihdr[9] = (uint8_t)color_type, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0;
    f = fopen(path, "wb");
    if (!f) {
        free(z);
        return -1;
    }
    ok = fwrite("\x89PNG\r\n\x1a\n", 1, 8, f) == 8 && png_chunk_(f, "IHDR", ihdr, 13) == 0 &&
         png_chunk_(f, "IDAT", z, (uint32_t)pos) == 0 && png_chunk_(f, "IEND", NULL, 0) == 0;
    free(z);
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* 8-bit grayscale image, width*height bytes. */
static inline int png_write_gray8(const char *path, int width, int height, const uint8_t *pixels)
{
    return png_write_(path, width, height, 0, pixels);
}

/* 8-bit RGB image, width*height*3 bytes. */
static inline int png_write_rgb8(const char *path, int width, int height, const uint8_t *pixels)
{
    return png_write_(path, width, height, 2, pixels);
}

#endif
