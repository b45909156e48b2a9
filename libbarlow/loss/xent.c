/*
 * xent.c - bt_xent: softmax cross-entropy with mean reduction for linear
 * probes, as torch.nn.functional.cross_entropy, plus top-1/top-5 counts.
 *
 * Each row is independent: its log-sum-exp is taken around the row maximum in
 * double, its loss stored, and softmax - onehot kept (rounded to float from
 * double, so p - 1 keeps its precision when p is near 1) for the backward. The
 * mean is summed over rows in row order, so it does not depend on the thread
 * count.
 */
#include "common/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAR_MIN ((int64_t)32768) /* fewer elements than this: one thread */

struct bt_xent {
    int threads;
    int level; /* CPU level (common/cpu.h) */
    int64_t n, k;           /* shape of the last successful forward; n = 0: none yet */
    struct bti_buffer prob; /* float [n, k]: softmax minus one-hot of the last forward */
    struct bti_buffer loss; /* double [n]: per-row loss */
    struct bti_buffer rank; /* int64_t [n]: per row, the classes ranked before the label */
};

BT_API bt_status bt_xent_create(bt_xent **out, const bt_config *cfg)
{
    bt_xent *x;
    bt_status st;
    int level;
    if (!out)
        return bti_fail(BT_E_MISUSE, "bt_xent_create: out is NULL");
    *out = NULL;
    if (cfg && (st = bti_check(cfg, BTI_KIND_CONFIG, "bt_xent_create", "cfg")) != BT_OK)
        return st;
    if ((st = bti_cpu_resolve(cfg, &level, "bt_xent_create")) != BT_OK)
        return st;
    x = bti_calloc(1, sizeof *x);
    if (!x)
        return bti_fail(BT_E_NOMEM, "bt_xent_create: out of memory");
    x->level = level;
    x->threads = bti_threads_resolve(cfg);
    st = bti_handle_add(x, BTI_KIND_XENT);
    if (st != BT_OK) {
        bti_free(x);
        return st;
    }
    *out = x;
    return BT_OK;
}

BT_API void bt_xent_free(bt_xent *x)
{
    if (!x || bti_check(x, BTI_KIND_XENT, "bt_xent_free", "x") != BT_OK)
        return;
    bti_handle_remove(x);
    bti_buffer_release(&x->prob);
    bti_buffer_release(&x->loss);
    bti_buffer_release(&x->rank);
    bti_free(x);
}

/* Grow the buffers to n rows of k classes. They keep their content when they
 * grow, so on failure the last forward stays usable. */
static bt_status reserve(bt_xent *x, int64_t n, int64_t k)
{
    static const char fn[] = "bt_xent_forward";
    bt_status st = bti_buffer_reserve(&x->prob, (size_t)(n * k), sizeof(float), fn);
    if (st == BT_OK)
        st = bti_buffer_reserve(&x->loss, (size_t)n, sizeof(double), fn);
    if (st == BT_OK)
        st = bti_buffer_reserve(&x->rank, (size_t)n, sizeof(int64_t), fn);
    return st;
}

BT_API bt_status bt_xent_forward(bt_xent *x, const bt_tensor *logits, const int32_t *labels,
                                 double *mean_loss, int64_t *top1_correct, int64_t *top5_correct)
{
    int64_t n, k, r, i, bad = -1, top1 = 0, top5 = 0, topk, *ranks;
    double total = 0.0, *loss;
    const float *z;
    float *prob;
    char s[96];
    bt_status st;

    if ((st = bti_check(x, BTI_KIND_XENT, "bt_xent_forward", "x")) != BT_OK ||
        (st = bti_check(logits, BTI_KIND_TENSOR, "bt_xent_forward", "logits")) != BT_OK)
        return st;
    if (!labels)
        return bti_fail(BT_E_MISUSE, "bt_xent_forward: labels is NULL");
    if (logits->ndim != 2)
        return bti_fail(BT_E_SHAPE, "bt_xent_forward: logits has shape %s; it must be [N, K]",
                        bti_shape_str(logits, s, sizeof s));
    n = logits->shape[0];
    k = logits->shape[1];
    z = logits->data;
    for (r = 0; r < n; r++)
        if (labels[r] < 0 || (int64_t)labels[r] >= k)
            return bti_fail(BT_E_INVALID_ARG,
                            "bt_xent_forward: labels[%lld] is %d; it must be in [0, %lld) for "
                            "logits of shape %s", (long long)r, (int)labels[r], (long long)k,
                            bti_shape_str(logits, s, sizeof s));
    for (i = 0; i < n * k; i++)
        if (!isfinite(z[i])) {
            bad = i;
            break;
        }
    if (bad >= 0)
        return bti_fail(BT_E_NUMERIC, "bt_xent_forward: logits[%lld, %lld] is not finite",
                        (long long)(bad / k), (long long)(bad % k));
    if ((st = reserve(x, n, k)) != BT_OK)
        return st;
    prob = x->prob.p;
    loss = x->loss.p;
    ranks = x->rank.p;

    topk = k < 5 ? k : 5;
#pragma omp parallel for num_threads(x->threads) schedule(static) if (n * k >= PAR_MIN)
    for (r = 0; r < n; r++) {
        const float *zr = z + r * k;
        float *pr = prob + r * k;
        const int32_t y = labels[r];
        double mx = zr[0], sum = 0.0, inv;
        int64_t j, rank = 0;
        for (j = 1; j < k; j++)
            if (zr[j] > mx)
                mx = zr[j];
        for (j = 0; j < k; j++)
            sum += exp((double)zr[j] - mx);
        inv = 1.0 / sum;
        for (j = 0; j < k; j++) {
            pr[j] = (float)(exp((double)zr[j] - mx) * inv - (j == y));
            /* Ties rank the lower class index first, as torch.argmax. */
            rank += zr[j] > zr[y] || (zr[j] == zr[y] && j < y);
        }
        loss[r] = mx + log(sum) - (double)zr[y];
        ranks[r] = rank;
    }
    for (r = 0; r < n; r++) {
        total += loss[r];
        top1 += ranks[r] < 1;
        top5 += ranks[r] < topk;
    }
    x->n = n;
    x->k = k;
    if (mean_loss)
        *mean_loss = total / (double)n;
    if (top1_correct)
        *top1_correct = top1;
    if (top5_correct)
        *top5_correct = top5;
    return BT_OK;
}

BT_API bt_status bt_xent_backward(bt_xent *x, bt_tensor *dlogits)
{
    int64_t n, k, r;
    int64_t want[2];
    double inv_n;
    char s[96], w[96];
    bt_status st;

    if ((st = bti_check(x, BTI_KIND_XENT, "bt_xent_backward", "x")) != BT_OK ||
        (st = bti_check(dlogits, BTI_KIND_TENSOR, "bt_xent_backward", "dlogits")) != BT_OK)
        return st;
    if (x->n == 0)
        return bti_fail(BT_E_STATE, "bt_xent_backward: no forward was run on this handle");
    n = x->n;
    k = x->k;
    want[0] = n;
    want[1] = k;
    if (!bti_tensor_has_shape(dlogits, 2, want))
        return bti_fail(BT_E_SHAPE, "bt_xent_backward: dlogits has shape %s; the forward had %s",
                        bti_shape_str(dlogits, s, sizeof s), bti_dims_str(2, want, w, sizeof w));
    inv_n = 1.0 / (double)n;
#pragma omp parallel for num_threads(x->threads) schedule(static) if (n * k >= PAR_MIN)
    for (r = 0; r < n; r++) {
        const float *pr = (const float *)x->prob.p + r * k;
        float *dr = dlogits->data + r * k;
        int64_t j;
        for (j = 0; j < k; j++)
            dr[j] = (float)((double)pr[j] * inv_n);
    }
    return BT_OK;
}
