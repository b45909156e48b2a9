/* data.c - the dataset loaders of the `barlow` command: idx files (zlib),
 * CIFAR-10 batches and folders of images (stb_image); formats in data.h. */
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <stb/stb_image.h>

#include "paths.h"

#define DATA_MAX_CLASSES 1000
/* Largest image a folder may hold, in pixels (8192 x 8192): stb_image reads the pixels of a
 * truncated file as zeros, so a few hundred bytes can announce gigabytes. */
#define DATA_MAX_PIXELS ((int64_t)1 << 26)

static void data_fail(char *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, DATA_ERR_CAP, fmt, ap);
    va_end(ap);
}

void data_free(struct dataset *d)
{
    int64_t i;
    if (d->owned)
        for (i = 0; i < d->n; i++)
            free(d->owned[i]);
    free(d->owned);
    free(d->block);
    free(d->image);
    free(d->height);
    free(d->width);
    free(d->label);
    memset(d, 0, sizeof *d);
}

static int data_alloc(struct dataset *d, int64_t n, int32_t channels, int labelled, char *err)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->channels = channels;
    d->image = calloc((size_t)(n ? n : 1), sizeof *d->image);
    d->height = calloc((size_t)(n ? n : 1), sizeof *d->height);
    d->width = calloc((size_t)(n ? n : 1), sizeof *d->width);
    d->label = labelled ? calloc((size_t)(n ? n : 1), sizeof *d->label) : NULL;
    if (!d->image || !d->height || !d->width || (labelled && !d->label)) {
        data_free(d);
        data_fail(err, "out of memory for %lld images", (long long)n);
        return -1;
    }
    return 0;
}

/* ---- Fashion-MNIST idx files (gzip or plain) ------------------------------ */

static uint32_t data_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Read exactly n bytes from a gz stream; -1 on a short read or a gzip error. */
static int data_gzread_all(gzFile f, void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

/* Exactly n bytes (n >= 1) from a gz stream into a buffer grown as they arrive, so that a
 * header announcing more than the file holds costs no more memory than the file's data;
 * NULL on a short read or a gzip error, or with *nomem set when memory ran out. */
static unsigned char *data_gzread_grow(gzFile f, size_t n, int *nomem)
{
    unsigned char *buf = NULL, *nb;
    size_t have = 0, cap;
    *nomem = 0;
    while (have < n) {
        cap = have ? 2 * have : (size_t)1 << 20;
        if (cap > n)
            cap = n;
        nb = realloc(buf, cap);
        if (!nb) {
            free(buf);
            *nomem = 1;
            return NULL;
        }
        buf = nb;
        if (data_gzread_all(f, buf + have, cap - have) != 0) {
            free(buf);
            return NULL;
        }
        have = cap;
    }
    return buf;
}

/* Open DIR/base.gz, or DIR/base when no .gz exists; the path is left in path. */
static gzFile data_open_idx(const char *dir, const char *base, char *path, size_t cap, char *err)
{
    gzFile f;
    snprintf(path, cap, "%s/%s.gz", dir, base);
    if (!path_is_file(path))
        snprintf(path, cap, "%s/%s", dir, base);
    if (!path_is_file(path)) {
        data_fail(err, "%s/%s.gz: no such file (nor %s without .gz)", dir, base, base);
        return NULL;
    }
    f = gzopen(path, "rb");
    if (!f)
        data_fail(err, "%s: cannot open: %s", path, strerror(errno));
    return f;
}

/* Load the "train" or "t10k" split of idx files in dir. limit > 0 keeps the first limit images. */
static int data_load_idx(struct dataset *d, const char *dir, const char *split, int64_t limit, char *err)
{
    char base[64], path[4096];
    unsigned char hdr[16], extra;
    gzFile f;
    int64_t n, rows, cols, keep, i;
    size_t img_bytes;
    int nomem;

    snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
    f = data_open_idx(dir, base, path, sizeof path, err);
    if (!f)
        return -1;
    if (data_gzread_all(f, hdr, 16) != 0 || data_be32(hdr) != 0x00000803u) {
        gzclose(f);
        data_fail(err, "%s: not an idx3 image file (bad header or corrupt gzip)", path);
        return -1;
    }
    n = data_be32(hdr + 4);
    rows = data_be32(hdr + 8);
    cols = data_be32(hdr + 12);
    if (n < 1 || rows < 1 || cols < 1 || rows > 4096 || cols > 4096 || n > 100000000) {
        gzclose(f);
        data_fail(err, "%s: implausible header: %lld images of %lldx%lld", path, (long long)n,
                  (long long)rows, (long long)cols);
        return -1;
    }
    keep = limit > 0 && limit < n ? limit : n;
    img_bytes = (size_t)(rows * cols);
    if (data_alloc(d, keep, 1, 1, err) != 0) {
        gzclose(f);
        return -1;
    }
    /* Read the whole file even when keeping fewer, so truncation is always detected. */
    d->block = data_gzread_grow(f, (size_t)n * img_bytes, &nomem);
    if (!d->block && nomem) {
        gzclose(f);
        data_free(d);
        data_fail(err, "%s: out of memory for %lld images", path, (long long)n);
        return -1;
    }
    if (!d->block || gzread(f, &extra, 1) != 0) {
        gzclose(f);
        data_free(d);
        data_fail(err, "%s: corrupt: the header announces %lld images of %lldx%lld; the data %s",
                  path, (long long)n, (long long)rows, (long long)cols,
                  "is truncated, unreadable or longer");
        return -1;
    }
    gzclose(f);
    for (i = 0; i < keep; i++) {
        d->image[i] = d->block + (size_t)i * img_bytes;
        d->height[i] = (int32_t)rows;
        d->width[i] = (int32_t)cols;
    }

    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
    f = data_open_idx(dir, base, path, sizeof path, err);
    if (!f) {
        data_free(d);
        return -1;
    }
    {
        unsigned char *lab = malloc((size_t)n);
        if (!lab || data_gzread_all(f, hdr, 8) != 0 || data_be32(hdr) != 0x00000801u
            || data_be32(hdr + 4) != (uint32_t)n || data_gzread_all(f, lab, (size_t)n) != 0
            || gzread(f, &extra, 1) != 0) {
            free(lab);
            gzclose(f);
            data_free(d);
            data_fail(err, "%s: corrupt or not an idx1 label file for %lld images", path, (long long)n);
            return -1;
        }
        gzclose(f);
        d->nclasses = 0;
        for (i = 0; i < keep; i++) {
            d->label[i] = lab[i];
            if (lab[i] + 1 > d->nclasses)
                d->nclasses = lab[i] + 1;
        }
        free(lab);
    }
    return 0;
}

/* ---- CIFAR-10 binary batches ------------------------------------------------ */

#define CIFAR_REC 3073

/* Append the records of one batch file to the byte buffer *buf (*nrec records). */
static int data_read_cifar_file(const char *path, unsigned char **buf, int64_t *nrec, char *err)
{
    FILE *f = fopen(path, "rb");
    long size;
    unsigned char *nb;
    if (!f) {
        data_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        data_fail(err, "%s: cannot read", path);
        return -1;
    }
    if (size == 0 || size % CIFAR_REC != 0) {
        fclose(f);
        data_fail(err, "%s: corrupt: %ld bytes is not a whole number of %d-byte CIFAR-10 records",
                  path, size, CIFAR_REC);
        return -1;
    }
    nb = realloc(*buf, (size_t)(*nrec * CIFAR_REC + size));
    if (!nb) {
        fclose(f);
        data_fail(err, "%s: out of memory", path);
        return -1;
    }
    *buf = nb;
    if (fread(nb + *nrec * CIFAR_REC, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        data_fail(err, "%s: short read", path);
        return -1;
    }
    fclose(f);
    *nrec += size / CIFAR_REC;
    return 0;
}

/* Records idx[0..n) of raw (label byte + R, G, B planes of 32x32) into HWC images. */
static int data_from_cifar(struct dataset *d, const unsigned char *raw, const int64_t *idx, int64_t n,
                           const char *path, char *err)
{
    int64_t i;
    int p;
    if (data_alloc(d, n, 3, 1, err) != 0)
        return -1;
    d->block = malloc((size_t)(n ? n : 1) * 3072);
    if (!d->block) {
        data_free(d);
        data_fail(err, "out of memory");
        return -1;
    }
    d->nclasses = 10;
    for (i = 0; i < n; i++) {
        const unsigned char *r = raw + idx[i] * CIFAR_REC;
        uint8_t *img = d->block + i * 3072;
        if (r[0] > 9) {
            data_free(d);
            data_fail(err, "%s: corrupt: record %lld has label %d (CIFAR-10 labels are 0..9)", path,
                      (long long)idx[i], r[0]);
            return -1;
        }
        d->label[i] = r[0];
        for (p = 0; p < 1024; p++) {
            img[3 * p + 0] = r[1 + p];
            img[3 * p + 1] = r[1 + 1024 + p];
            img[3 * p + 2] = r[1 + 2048 + p];
        }
        d->image[i] = img;
        d->height[i] = 32;
        d->width[i] = 32;
    }
    return 0;
}

/* ---- a folder of images (stb_image) ------------------------------------------ */

static int data_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int data_has_image_ext(const char *name)
{
    static const char *ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".psd"};
    const char *dot = strrchr(name, '.');
    size_t i, k;
    if (!dot)
        return 0;
    for (i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        if (strlen(dot) != strlen(ext[i]))
            continue;
        for (k = 0; dot[k]; k++) {
            char c = dot[k];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (c != ext[i][k])
                break;
        }
        if (!dot[k])
            return 1;
    }
    return 0;
}

/* Debian 12's stb_image (2.27) writes past a Huffman table's 256 values when a JPEG's DHT
 * segment declares more codes (stb 2.28 checks it): walk the JPEG's markers as stb reads
 * them and refuse such a file before decoding it. The walk visits every position stb can
 * read a marker at, and more (after a scan it follows any marker, where stb may stop); 0
 * when a DHT table has more than 256 codes, else 1 (any file that is not a JPEG too). */
static int data_jpeg_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] == 0xff) /* stb takes FF fill bytes before the SOI marker too */
        i++;
    if (i == 0 || i >= n || p[i] != 0xd8)
        return 1;
    i++;
    while (i < n) {
        unsigned m;
        size_t len;
        if (p[i] != 0xff) { /* padding between segments: stb skips it before the frame */
            i++;
            continue;
        }
        while (i < n && p[i] == 0xff)
            i++;
        if (i >= n)
            break;
        m = p[i++];
        if (m == 0xd9) /* EOI */
            break;
        if (m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8))
            continue; /* no length */
        if (i + 2 > n)
            break;
        len = (size_t)p[i] << 8 | p[i + 1];
        if (m == 0xc4) { /* DHT: tables until the length is used, as stb reads them */
            long left = (long)len - 2;
            size_t q = i + 2;
            while (left > 0 && q < n) {
                int k, codes = 0;
                for (k = 1; k <= 16; k++) /* stb reads zeros past the end */
                    codes += q + k < n ? p[q + k] : 0;
                if (codes > 256)
                    return 0;
                q += 17 + (size_t)codes;
                left -= 17 + codes;
            }
        }
        i += len;
        if (m == 0xda) { /* SOS: skip the entropy-coded data to the next marker */
            while (i + 1 < n && !(p[i] == 0xff && p[i + 1] != 0x00 && p[i + 1] != 0xff
                                  && !(p[i + 1] >= 0xd0 && p[i + 1] <= 0xd7)))
                i++;
        }
    }
    return 1;
}

/* stb_image 2.27 parses a PGM/PPM header's width, height and maximum into an int without
 * an overflow check (undefined behaviour; stb 2.28 checks): 0 when one of the three numbers,
 * read as stb reads them (whitespace and # comments between), exceeds INT_MAX, else 1. */
static int data_pnm_ok(const unsigned char *p, size_t n)
{
    size_t i = 2;
    int k;
    if (n < 2 || p[0] != 'P' || (p[1] != '5' && p[1] != '6'))
        return 1;
    for (k = 0; k < 3; k++) {
        int64_t v = 0;
        for (;;) {
            while (i < n && (p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r')))
                i++;
            if (i >= n || p[i] != '#')
                break;
            while (i < n && p[i] != '\n' && p[i] != '\r')
                i++;
        }
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            v = v * 10 + (p[i++] - '0');
            if (v > 0x7fffffff)
                return 0;
        }
    }
    return 1;
}

/* The image file at path decoded to `channels` (stb_image from memory, after data_jpeg_ok);
 * NULL with the reason in err. */
static unsigned char *data_decode(const char *path, int *w, int *h, int channels, char *err)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf, *px = NULL;
    long size = -1;
    int got = 0;
    if (!f) {
        data_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0
        || size > 0x7fffffffL) {
        fclose(f);
        data_fail(err, "%s: cannot decode image: %s", path, size > 0x7fffffffL ? "larger than 2 GiB"
                                                                              : "cannot read it");
        return NULL;
    }
    buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(buf);
        data_fail(err, "%s: %s", path, buf ? "short read" : "out of memory");
        return NULL;
    }
    fclose(f);
    if (!data_jpeg_ok(buf, (size_t)size))
        data_fail(err, "%s: cannot decode image: corrupt JPEG (a Huffman table of more than 256 codes)",
                  path);
    else if (!data_pnm_ok(buf, (size_t)size))
        data_fail(err, "%s: cannot decode image: corrupt PGM/PPM (a size over 2^31)", path);
    else if (stbi_info_from_memory(buf, (int)size, w, h, &got) && (int64_t)*w * *h > DATA_MAX_PIXELS)
        data_fail(err, "%s: cannot decode image: %dx%d is more than %d megapixels", path, *w, *h,
                  (int)(DATA_MAX_PIXELS >> 20));
    else if (size >= 2 && buf[0] == 'P' && (buf[1] == '5' || buf[1] == '6') && got != channels
             && stbi_is_16_bit_from_memory(buf, (int)size))
        /* stb_image 2.27 converts a 16-bit PGM/PPM's channels with its 8-bit converter, then
         * reads twice the bytes it holds (stb 2.28 fixed it) */
        data_fail(err, "%s: cannot decode image: a 16-bit %s as %d channel%s is not supported",
                  path, buf[1] == '5' ? "PGM" : "PPM", channels, channels == 1 ? "" : "s");
    else if (!(px = stbi_load_from_memory(buf, (int)size, w, h, &got, channels)))
        data_fail(err, "%s: cannot decode image: %s", path, stbi_failure_reason());
    free(buf);
    return px;
}

/* Sorted names in dir (no dot files); want_dirs selects sub-folders or image files. */
static int data_list_dir(const char *dir, int want_dirs, char ***names, int64_t *count, char *err)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    char path[4096];
    int64_t n = 0, cap = 0;
    char **v = NULL;
    if (!dp) {
        data_fail(err, "%s: cannot open folder: %s", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(dp)) != NULL) {
        int isdir;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        isdir = path_is_dir(path);
        if (want_dirs ? !isdir : (isdir || !data_has_image_ext(e->d_name)))
            continue;
        if (n == cap) {
            char **nv;
            cap = cap ? 2 * cap : 256;
            nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv)
                break;
            v = nv;
        }
        v[n] = strdup(e->d_name);
        if (!v[n])
            break;
        n++;
    }
    closedir(dp);
    if (e != NULL) {
        while (n > 0)
            free(v[--n]);
        free(v);
        data_fail(err, "%s: out of memory listing the folder", dir);
        return -1;
    }
    if (n > 1)
        qsort(v, (size_t)n, sizeof *v, data_cmp_str);
    *names = v;
    *count = n;
    return 0;
}

static void data_free_names(char **names, int64_t n)
{
    while (n > 0)
        free(names[--n]);
    free(names);
}

/* Every image under dir (class sub-folders, or flat), with channels forced to
 * `channels`. split: 0 = all, 1 = train (not every 10th), 2 = test (every 10th per class). */
static int data_load_folder(struct dataset *d, const char *dir, int32_t channels, int split,
                            int64_t limit, char *err)
{
    char **classes = NULL, **files = NULL, path[8192 + 256];
    int64_t ncls = 0, nfiles = 0, c, i, cap = 0, n = 0;
    int labelled;
    struct dataset t;

    memset(&t, 0, sizeof t);
    if (data_list_dir(dir, 1, &classes, &ncls, err) != 0)
        return -1;
    labelled = ncls > 0;
    if (ncls > DATA_MAX_CLASSES) {
        data_free_names(classes, ncls);
        data_fail(err, "%s: %lld class folders; at most %d are supported", dir, (long long)ncls,
                  DATA_MAX_CLASSES);
        return -1;
    }
    if (!labelled && split == 2) {
        data_fail(err, "%s: no class sub-folders, so no labelled test split", dir);
        return -1;
    }
    t.channels = channels;
    t.nclasses = (int32_t)ncls;
    for (c = 0; c < (labelled ? ncls : 1); c++) {
        char sub[4096];
        if (labelled)
            snprintf(sub, sizeof sub, "%s/%s", dir, classes[c]);
        else
            snprintf(sub, sizeof sub, "%s", dir);
        if (data_list_dir(sub, 0, &files, &nfiles, err) != 0)
            goto fail;
        for (i = 0; i < nfiles; i++) {
            int w, h;
            unsigned char *px;
            if (labelled && split == 1 && i % 10 == 9)
                continue;
            if (labelled && split == 2 && i % 10 != 9)
                continue;
            if (limit > 0 && n >= limit)
                break;
            snprintf(path, sizeof path, "%s/%s", sub, files[i]);
            px = data_decode(path, &w, &h, channels, err);
            if (!px)
                goto fail;
            if (w < 1 || h < 1) { /* stb_image 2.27 returns PNM files of height 0 */
                stbi_image_free(px);
                data_fail(err, "%s: cannot decode image: it is empty (%dx%d)", path, w, h);
                goto fail;
            }
            if (n == cap) {
                int64_t ncap = cap ? 2 * cap : 1024;
                const uint8_t **ni = realloc(t.image, (size_t)ncap * sizeof *ni);
                int32_t *nh, *nw, *nl;
                uint8_t **no;
                if (ni)
                    t.image = ni;
                nh = realloc(t.height, (size_t)ncap * sizeof *nh);
                if (nh)
                    t.height = nh;
                nw = realloc(t.width, (size_t)ncap * sizeof *nw);
                if (nw)
                    t.width = nw;
                nl = realloc(t.label, (size_t)ncap * sizeof *nl);
                if (nl)
                    t.label = nl;
                no = realloc(t.owned, (size_t)ncap * sizeof *no);
                if (no)
                    t.owned = no;
                if (!ni || !nh || !nw || !nl || !no) {
                    stbi_image_free(px);
                    data_fail(err, "%s: out of memory", dir);
                    goto fail;
                }
                cap = ncap;
            }
            t.owned[n] = px;
            t.image[n] = px;
            t.height[n] = h;
            t.width[n] = w;
            t.label[n] = (int32_t)c;
            t.n = ++n;
        }
        data_free_names(files, nfiles);
        files = NULL;
    }
    data_free_names(classes, ncls);
    if (n == 0) {
        data_free(&t);
        data_fail(err, "%s: no images found (PNG, JPEG, BMP, GIF, TGA, PPM/PGM, PSD; "
                       "either directly in it or in one sub-folder per class)", dir);
        return -1;
    }
    if (!labelled) {
        free(t.label);
        t.label = NULL;
        t.nclasses = 0;
    }
    *d = t;
    return 0;
fail:
    if (files)
        data_free_names(files, nfiles);
    data_free_names(classes, ncls);
    data_free(&t);
    return -1;
}

/* ---- entry point ------------------------------------------------------------ */

const char *data_guess_kind(const char *path)
{
    char p[4096];
    if (path_is_file(path))
        return "cifar10";
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", path);
    if (path_is_file(p))
        return "fmnist";
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", path);
    if (path_is_file(p))
        return "fmnist";
    snprintf(p, sizeof p, "%s/data_batch_1.bin", path);
    if (path_is_file(p))
        return "cifar10";
    snprintf(p, sizeof p, "%s/cifar-10-batches-bin/data_batch_1.bin", path);
    if (path_is_file(p))
        return "cifar10";
    return "folder";
}

int data_load(struct dataset *d, const char *kind, const char *path, int test, int32_t channels,
              int64_t limit, char *err)
{
    memset(d, 0, sizeof *d);
    if (strcmp(kind, "fmnist") == 0) {
        if (!path_is_dir(path)) {
            data_fail(err, "%s: not a folder holding Fashion-MNIST's idx files%s", path,
                      strcmp(path, "/usr/share/datasets/fashion-mnist") == 0
                          ? " (install Debian's dataset-fashion-mnist package, or name another with --data)" : "");
            return -1;
        }
        if (channels != 1) {
            data_fail(err, "Fashion-MNIST images have 1 channel but model.in_channels is %d", channels);
            return -1;
        }
        return data_load_idx(d, path, test ? "t10k" : "train", limit, err);
    }
    if (strcmp(kind, "cifar10") == 0) {
        unsigned char *raw = NULL;
        int64_t nrec = 0, *idx, n = 0, i;
        char dir[4096], file[4096 + 64];
        int single = path_is_file(path), rc;
        if (channels != 3) {
            data_fail(err, "CIFAR-10 images have 3 channels but model.in_channels is %d", channels);
            return -1;
        }
        if (single) {
            if (data_read_cifar_file(path, &raw, &nrec, err) != 0)
                return -1;
        } else {
            int b;
            snprintf(dir, sizeof dir, "%s/cifar-10-batches-bin", path);
            if (!path_is_dir(dir))
                snprintf(dir, sizeof dir, "%s", path);
            if (!path_is_dir(dir)) {
                data_fail(err, "%s: no such folder or CIFAR-10 batch file", path);
                return -1;
            }
            for (b = 1; b <= (test ? 1 : 5); b++) {
                if (test)
                    snprintf(file, sizeof file, "%s/test_batch.bin", dir);
                else
                    snprintf(file, sizeof file, "%s/data_batch_%d.bin", dir, b);
                if (data_read_cifar_file(file, &raw, &nrec, err) != 0) {
                    free(raw);
                    return -1;
                }
            }
        }
        idx = malloc((size_t)nrec * sizeof *idx);
        if (!idx) {
            free(raw);
            data_fail(err, "out of memory");
            return -1;
        }
        for (i = 0; i < nrec; i++) {
            if (single && (i % 10 == 9) != (test != 0))
                continue;
            if (limit > 0 && n >= limit)
                break;
            idx[n++] = i;
        }
        rc = data_from_cifar(d, raw, idx, n, single ? path : dir, err);
        free(idx);
        free(raw);
        return rc;
    }
    if (strcmp(kind, "folder") == 0) {
        char **names = NULL;
        int64_t ncls = 0;
        if (!path_is_dir(path)) {
            data_fail(err, "%s: %s", path, path_exists(path) ? "not a folder of images (name --dataset "
                      "for a dataset file)" : "no such file or folder");
            return -1;
        }
        if (channels != 1 && channels != 3) {
            data_fail(err, "a folder of images is decoded to 1 or 3 channels, not model.in_channels %d",
                      channels);
            return -1;
        }
        if (test) {
            if (data_list_dir(path, 1, &names, &ncls, err) != 0)
                return -1;
            data_free_names(names, ncls);
            if (ncls == 0)
                return 0; /* unlabelled: no test split */
        }
        return data_load_folder(d, path, channels, test ? 2 : 1, limit, err);
    }
    data_fail(err, "unknown dataset '%s' (fmnist, cifar10 or folder)", kind);
    return -1;
}
