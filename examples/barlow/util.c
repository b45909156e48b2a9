/* util.c - what every part of the `barlow` command uses: the two ways to stop
 * (bad input, exit 2; a failure while running, exit 1), a clock, memory, folders,
 * atomic file writes and loading a dataset split or stopping. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "paths.h"

const char *g_cmd = "barlow";

void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: error: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: error: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void die_checkpoint(const char *path)
{
    const char *msg = bt_last_error();
    if (strstr(msg, path))
        die("%s", msg);
    die("checkpoint %s: %s", path, msg);
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        fail("out of memory (%zu bytes)", n);
    return p;
}

void mkdirs(const char *dir)
{
    char p[PATH_CAP];
    size_t i;
    snprintf(p, sizeof p, "%s", dir);
    for (i = 1; p[i]; i++) {
        if (p[i] != '/')
            continue;
        p[i] = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            die("%s: cannot create folder: %s", p, strerror(errno));
        p[i] = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST)
        die("%s: cannot create folder: %s", p, strerror(errno));
    if (!path_is_dir(p))
        die("%s: not a folder", p);
}

FILE *atomic_open(const char *path, char *tmp, size_t cap)
{
    FILE *f;
    snprintf(tmp, cap, "%s.tmp%ld", path, (long)getpid());
    f = fopen(tmp, "wb");
    if (!f)
        fail("%s: cannot write: %s", tmp, strerror(errno));
    return f;
}

void atomic_close(FILE *f, const char *tmp, const char *path)
{
    int bad = ferror(f);
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        fail("%s: cannot write: %s", path, strerror(errno));
    }
}

void load_split(struct dataset *d, const char *kind, const char *path, int test, int32_t channels,
                int64_t limit)
{
    char err[DATA_ERR_CAP];
    if (data_load(d, kind, path, test, channels, limit, err) != 0)
        die("%s", err);
}
