/* progress.c - training progress: a bar on stderr (a terminal) or plain lines
 * on stdout, with the rate and the time left. */
#include "cli.h"

#include <stdio.h>

static void fmt_duration(char *buf, size_t cap, double s)
{
    long t = s > 0 && s < 1e8 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void progress_step(struct progress *p, int64_t step, double loss, double on, double off, int force)
{
    double t = now_s(), rate, eta;
    int64_t done = step - p->first_step, e = (step - 1) / p->spe, in = step - e * p->spe;
    char eta_s[32];
    if (!force && t - p->last < (p->bar ? 0.2 : 30.0) && !(!p->bar && in == p->spe))
        return;
    p->last = t;
    rate = done > 0 ? (double)(done * p->batch) / (t - p->t0) : 0;
    eta = done > 0 ? (t - p->t0) / (double)done * (double)(p->total - step) : 0;
    fmt_duration(eta_s, sizeof eta_s, eta);
    if (p->bar) {
        int width = 20, fill = (int)(width * in / p->spe), i;
        char bar[32];
        for (i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] step %lld/%lld loss %.4g (on %.3g off %.3g) %.0f img/s ETA %s",
                (long long)e + 1, (long long)((p->total + p->spe - 1) / p->spe), bar, (long long)in,
                (long long)p->spe, loss, on, off, rate, eta_s);
        fflush(stderr);
    } else {
        printf("epoch %lld/%lld step %lld/%lld loss %.6g on_diag %.6g off_diag %.6g %.0f img/s ETA %s\n",
               (long long)e + 1, (long long)((p->total + p->spe - 1) / p->spe), (long long)in,
               (long long)p->spe, loss, on, off, rate, eta_s);
        fflush(stdout);
    }
}

void progress_clear(const struct progress *p)
{
    if (p->bar) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}
