/* optim_schedule.c - the learning-rate schedule: linear warm-up, then cosine
 * decay to a fraction of the base rate (facebookresearch/barlowtwins main.py
 * adjust_learning_rate, with its constants made options), or constant. */
#include "optim/optim.h"

#include <math.h>

#define BTI_PI 3.14159265358979323846 /* M_PI is not in strict C11 */

double bti_optim_schedule(double base, int64_t s, int64_t warmup_steps, int64_t total_steps,
                          int schedule_cosine, double final_lr_ratio)
{
    double q, t, span;
    if (s < 0)
        s = 0;
    if (s < warmup_steps)
        return base * (double)s / (double)warmup_steps;
    if (!schedule_cosine || total_steps <= 0)
        return base;
    if (s >= total_steps)
        return base * final_lr_ratio;
    /* Same operation order as the official code: base*q + (base*ratio)*(1-q). */
    t = (double)(s - warmup_steps);
    span = (double)(total_steps - warmup_steps);
    q = 0.5 * (1.0 + cos(BTI_PI * t / span));
    return base * q + base * final_lr_ratio * (1.0 - q);
}
