/* probe.c - frozen-feature evaluation of the `barlow` command: encoding,
 * weighted kNN and the linear probe, on libbarlow's public API (protocols in probe.h). */
#include "probe.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void feats_free(struct feats *f)
{
    free(f->x);
    memset(f, 0, sizeof *f);
}

/* splitmix64: the example's own small generator (shuffles, probe initialisation). */
static uint64_t probe_mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void probe_permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t stream, uint64_t epoch)
{
    uint64_t s = seed * 0x100000001B3ull ^ (stream << 48) ^ (epoch * 0x9E3779B97F4A7C15ull);
    int64_t i;
    for (i = 0; i < n; i++)
        perm[i] = i;
    for (i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(probe_mix(&s) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* The first n images' own pixels (x/255) as features, when they all have the
 * same size; returns 1 when they do not (the caller uses the evaluation view). */
static int probe_raw_pixels(const struct dataset *d, int64_t n, struct feats *out, char *err)
{
    int64_t i, j, dim;
    if (n > d->n)
        n = d->n;
    for (i = 1; i < n; i++)
        if (d->height[i] != d->height[0] || d->width[i] != d->width[0])
            return 1;
    dim = (int64_t)d->height[0] * d->width[0] * d->channels;
    out->x = malloc((size_t)(n ? n : 1) * (size_t)dim * sizeof(float));
    if (!out->x) {
        snprintf(err, PROBE_ERR_CAP, "out of memory for %lld x %lld pixels", (long long)n, (long long)dim);
        return -1;
    }
    out->n = n;
    out->dim = dim;
    out->label = d->label;
    for (i = 0; i < n; i++)
        for (j = 0; j < dim; j++)
            out->x[i * dim + j] = (float)d->image[i][j] / 255.0f;
    return 0;
}

int probe_encode(bt_model *m, bt_augment *aug, const struct dataset *d, int64_t n, int32_t size,
                 struct feats *out, char *err)
{
    const int64_t chunk = 256;
    int64_t C = d->channels, pix = C * size * size, dim = m ? bt_model_feature_dim(m) : pix, i;
    float *x = NULL;
    memset(out, 0, sizeof *out);
    if (!m) {
        int rc = probe_raw_pixels(d, n, out, err);
        if (rc <= 0)
            return rc;
    }
    if (n > d->n)
        n = d->n;
    out->x = malloc((size_t)(n ? n : 1) * (size_t)dim * sizeof(float));
    x = m ? malloc((size_t)chunk * (size_t)pix * sizeof(float)) : NULL;
    if (!out->x || (m && !x)) {
        free(x);
        feats_free(out);
        snprintf(err, PROBE_ERR_CAP, "out of memory for %lld x %lld features", (long long)n,
                 (long long)dim);
        return -1;
    }
    out->n = n;
    out->dim = dim;
    out->label = d->label;
    for (i = 0; i < n; i += chunk) {
        int64_t c = n - i < chunk ? n - i : chunk;
        int64_t xs[4] = {c, C, size, size}, fs[2] = {c, dim};
        bt_tensor *xt = NULL, *ft = NULL;
        bt_status st = bt_tensor_wrap(&xt, m ? x : out->x + i * dim, 4, xs);
        if (st == BT_OK)
            st = bt_augment_eval(aug, (int32_t)c, d->image + i, d->height + i, d->width + i,
                                 (int32_t)C, xt);
        if (st == BT_OK && m) {
            st = bt_tensor_wrap(&ft, out->x + i * dim, 2, fs);
            if (st == BT_OK)
                st = bt_model_encode(m, xt, ft);
        }
        bt_tensor_free(xt);
        bt_tensor_free(ft);
        if (st != BT_OK) {
            snprintf(err, PROBE_ERR_CAP, "encoding images %lld..%lld: %s", (long long)i,
                     (long long)(i + c - 1), bt_last_error());
            free(x);
            feats_free(out);
            return -1;
        }
    }
    free(x);
    return 0;
}

/* ---- kNN ------------------------------------------------------------------- */

static void probe_l2_normalise(float *x, int64_t n, int64_t dim)
{
    int64_t i, j;
    for (i = 0; i < n; i++) {
        double s = 0;
        float *r = x + i * dim;
        for (j = 0; j < dim; j++)
            s += (double)r[j] * r[j];
        s = s > 0 ? 1.0 / sqrt(s) : 0;
        for (j = 0; j < dim; j++)
            r[j] = (float)(r[j] * s);
    }
}

int probe_knn(const struct feats *bank, int64_t nb, const struct feats *query, int64_t nq,
              int32_t nclasses, int32_t k, int32_t threads, double *top1, double *top5, char *err)
{
    const int64_t chunk = 128;
    const double T = 0.07;
    int64_t dim = bank->dim, i, j, hit1 = 0, hit5 = 0;
    bt_layer *lin = NULL;
    bt_tensor *w = NULL, *qt = NULL, *st_ = NULL;
    float *q = NULL, *sim = NULL;
    double *score = NULL;
    int64_t *nbr = NULL;
    float *nsim = NULL;
    bt_status st;
    int rc = -1;

    if (nb <= 0 || nb > bank->n)
        nb = bank->n;
    if (nq <= 0 || nq > query->n)
        nq = query->n;
    if (k > nb)
        k = (int32_t)nb;
    if (nq == 0 || nb == 0 || nclasses < 1) {
        *top1 = *top5 = 0;
        return 0;
    }
    st = bt_layer_linear_create(&lin, (int32_t)dim, (int32_t)nb, 0);
    if (st == BT_OK)
        st = bt_layer_set_threads(lin, threads);
    if (st == BT_OK)
        st = bt_layer_tensor(lin, 0, NULL, &w, NULL);
    if (st != BT_OK) {
        snprintf(err, PROBE_ERR_CAP, "kNN: bank of %lld x %lld: %s", (long long)nb, (long long)dim,
                 bt_last_error());
        bt_layer_free(lin);
        return -1;
    }
    /* The bank, normalised, is the layer's weight [nb, dim]: one GEMM gives all similarities. */
    memcpy(bt_tensor_data(w), bank->x, (size_t)(nb * dim) * sizeof(float));
    probe_l2_normalise(bt_tensor_data(w), nb, dim);
    q = malloc((size_t)(chunk * dim) * sizeof *q);
    sim = malloc((size_t)(chunk * nb) * sizeof *sim);
    score = malloc((size_t)nclasses * sizeof *score);
    nbr = malloc((size_t)k * sizeof *nbr);
    nsim = malloc((size_t)k * sizeof *nsim);
    if (!q || !sim || !score || !nbr || !nsim) {
        snprintf(err, PROBE_ERR_CAP, "kNN: out of memory");
        goto done;
    }
    for (i = 0; i < nq; i += chunk) {
        int64_t c = nq - i < chunk ? nq - i : chunk, r;
        int64_t qs[2] = {c, dim}, ss[2] = {c, nb};
        memcpy(q, query->x + i * dim, (size_t)(c * dim) * sizeof *q);
        probe_l2_normalise(q, c, dim);
        st = bt_tensor_wrap(&qt, q, 2, qs);
        if (st == BT_OK)
            st = bt_tensor_wrap(&st_, sim, 2, ss);
        if (st == BT_OK)
            st = bt_layer_forward(lin, qt, st_, 0);
        bt_tensor_free(qt);
        bt_tensor_free(st_);
        qt = st_ = NULL;
        if (st != BT_OK) {
            snprintf(err, PROBE_ERR_CAP, "kNN: %s", bt_last_error());
            goto done;
        }
        for (r = 0; r < c; r++) {
            const float *s = sim + r * nb;
            int32_t have = 0, y = query->label[i + r], better = 0, cls;
            /* insertion into the sorted k best (descending similarity, ties to the lower index) */
            for (j = 0; j < nb; j++) {
                int32_t p;
                if (have == k && !(s[j] > nsim[k - 1]))
                    continue;
                p = have < k ? have++ : k - 1;
                while (p > 0 && nsim[p - 1] < s[j]) {
                    nsim[p] = nsim[p - 1];
                    nbr[p] = nbr[p - 1];
                    p--;
                }
                nsim[p] = s[j];
                nbr[p] = j;
            }
            for (cls = 0; cls < nclasses; cls++)
                score[cls] = 0;
            for (j = 0; j < have; j++)
                score[bank->label[nbr[j]]] += exp(nsim[j] / T);
            for (cls = 0; cls < nclasses; cls++)
                if (cls != y && (score[cls] > score[y] || (score[cls] == score[y] && cls < y)))
                    better++;
            hit1 += better == 0;
            hit5 += better < 5;
        }
    }
    *top1 = (double)hit1 / (double)nq;
    *top5 = (double)hit5 / (double)nq;
    rc = 0;
done:
    free(q);
    free(sim);
    free(score);
    free(nbr);
    free(nsim);
    bt_layer_free(lin);
    return rc;
}

/* ---- linear probe ------------------------------------------------------------ */

static int probe_set(bt_config *c, const char *name, const char *value, char *err)
{
    if (bt_config_set(c, name, value) != BT_OK) {
        snprintf(err, PROBE_ERR_CAP, "linear probe: %s", bt_last_error());
        return -1;
    }
    return 0;
}

static double probe_gauss(uint64_t *s)
{
    double u1 = ((double)(probe_mix(s) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = (double)(probe_mix(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
}

int probe_linear(const struct feats *train, const struct feats *test, int32_t nclasses,
                 const struct probe_opts *po, double *top1, double *top5, char *err)
{
    int64_t dim = train->dim, ntr = train->n, nte = test->n, i, j, e, b;
    int64_t B = po->batch < ntr ? po->batch : ntr, spe = ntr / B, hit1 = 0, hit5 = 0;
    int64_t xs[2] = {B, dim}, ls[2] = {B, nclasses};
    float *xtr = NULL, *xte = NULL;
    double *mean = NULL, *sd = NULL;
    int64_t *perm = NULL;
    int32_t *yb = NULL;
    bt_layer *lin = NULL;
    bt_tensor *x = NULL, *logits = NULL, *dlogits = NULL, *w = NULL, *bias = NULL;
    bt_config *cfg = NULL;
    bt_optim *opt = NULL;
    bt_xent *xent = NULL;
    uint64_t s = po->seed ^ 0xC0FFEEull;
    char buf[64];
    int rc = -1;

    if (ntr < 2 || nte < 1 || nclasses < 2) {
        snprintf(err, PROBE_ERR_CAP, "linear probe: needs >= 2 training and >= 1 test images in "
                 ">= 2 classes (have %lld, %lld, %d)", (long long)ntr, (long long)nte, nclasses);
        return -1;
    }
    xtr = malloc((size_t)(ntr * dim) * sizeof *xtr);
    xte = malloc((size_t)(nte * dim) * sizeof *xte);
    mean = calloc((size_t)dim, sizeof *mean);
    sd = calloc((size_t)dim, sizeof *sd);
    perm = malloc((size_t)ntr * sizeof *perm);
    yb = malloc((size_t)(B > nte ? B : nte) * sizeof *yb);
    if (!xtr || !xte || !mean || !sd || !perm || !yb) {
        snprintf(err, PROBE_ERR_CAP, "linear probe: out of memory");
        goto done;
    }
    /* standardise with the training statistics */
    for (i = 0; i < ntr; i++)
        for (j = 0; j < dim; j++)
            mean[j] += train->x[i * dim + j];
    for (j = 0; j < dim; j++)
        mean[j] /= (double)ntr;
    for (i = 0; i < ntr; i++)
        for (j = 0; j < dim; j++) {
            double d = train->x[i * dim + j] - mean[j];
            sd[j] += d * d;
        }
    for (j = 0; j < dim; j++) {
        sd[j] = sqrt(sd[j] / (double)ntr);
        sd[j] = sd[j] > 1e-6 ? 1.0 / sd[j] : 0; /* constant features contribute nothing */
    }
    for (i = 0; i < ntr; i++)
        for (j = 0; j < dim; j++)
            xtr[i * dim + j] = (float)((train->x[i * dim + j] - mean[j]) * sd[j]);
    for (i = 0; i < nte; i++)
        for (j = 0; j < dim; j++)
            xte[i * dim + j] = (float)((test->x[i * dim + j] - mean[j]) * sd[j]);

    if (bt_config_create(&cfg) != BT_OK) {
        snprintf(err, PROBE_ERR_CAP, "linear probe: %s", bt_last_error());
        goto done;
    }
    snprintf(buf, sizeof buf, "%.17g", po->lr);
    if (probe_set(cfg, "optim.kind", "sgd", err) || probe_set(cfg, "optim.lr", buf, err)
        || probe_set(cfg, "optim.lr_bias", buf, err) || probe_set(cfg, "optim.momentum", "0.9", err)
        || probe_set(cfg, "optim.final_lr_ratio", "0", err)
        || probe_set(cfg, "optim.warmup_steps", "0", err))
        goto done;
    snprintf(buf, sizeof buf, "%.17g", po->wd);
    if (probe_set(cfg, "optim.weight_decay", buf, err))
        goto done;
    snprintf(buf, sizeof buf, "%lld", (long long)B);
    if (probe_set(cfg, "optim.batch_size", buf, err))
        goto done;
    snprintf(buf, sizeof buf, "%lld", (long long)(spe * po->epochs));
    if (probe_set(cfg, "optim.total_steps", buf, err))
        goto done;
    snprintf(buf, sizeof buf, "%d", po->threads);
    if (probe_set(cfg, "threads", buf, err))
        goto done;

    if (bt_layer_linear_create(&lin, (int32_t)dim, nclasses, 1) != BT_OK
        || bt_layer_set_threads(lin, po->threads) != BT_OK
        || bt_layer_tensor(lin, 0, NULL, &w, NULL) != BT_OK
        || bt_layer_tensor(lin, 1, NULL, &bias, NULL) != BT_OK
        || bt_optim_create(&opt, cfg) != BT_OK || bt_optim_add_layer(opt, lin) != BT_OK
        || bt_xent_create(&xent, cfg) != BT_OK || bt_tensor_create(&x, 2, xs) != BT_OK
        || bt_tensor_create(&logits, 2, ls) != BT_OK || bt_tensor_create(&dlogits, 2, ls) != BT_OK) {
        snprintf(err, PROBE_ERR_CAP, "linear probe: %s", bt_last_error());
        goto done;
    }
    /* evaluate.py: fc.weight ~ N(0, 0.01), fc.bias = 0 */
    for (i = 0; i < bt_tensor_numel(w); i++)
        bt_tensor_data(w)[i] = (float)(0.01 * probe_gauss(&s));
    memset(bt_tensor_data(bias), 0, (size_t)nclasses * sizeof(float));

    for (e = 0; e < po->epochs; e++) {
        probe_permutation(perm, ntr, po->seed, 2, (uint64_t)e);
        for (b = 0; b < spe; b++) {
            float *xd = bt_tensor_data(x);
            for (i = 0; i < B; i++) {
                int64_t r = perm[b * B + i];
                memcpy(xd + i * dim, xtr + r * dim, (size_t)dim * sizeof *xd);
                yb[i] = train->label[r];
            }
            if (bt_layer_forward(lin, x, logits, 1) != BT_OK
                || bt_xent_forward(xent, logits, yb, NULL, NULL, NULL) != BT_OK
                || bt_xent_backward(xent, dlogits) != BT_OK || bt_layer_zero_grad(lin) != BT_OK
                || bt_layer_backward(lin, dlogits, NULL) != BT_OK || bt_optim_step(opt) != BT_OK) {
                snprintf(err, PROBE_ERR_CAP, "linear probe, epoch %lld: %s", (long long)e,
                         bt_last_error());
                goto done;
            }
        }
    }
    /* test accuracy, in chunks of the training batch (a smaller last chunk gets its own tensors) */
    for (i = 0; i < nte; i += B) {
        int64_t c = nte - i < B ? nte - i : B, cx[2] = {c, dim}, cl[2] = {c, nclasses}, t1 = 0, t5 = 0;
        bt_tensor *xt = NULL, *lt = NULL;
        bt_status st = bt_tensor_wrap(&xt, xte + i * dim, 2, cx);
        if (st == BT_OK)
            st = c == B ? BT_OK : bt_tensor_create(&lt, 2, cl);
        if (st == BT_OK)
            st = bt_layer_forward(lin, xt, c == B ? logits : lt, 0);
        if (st == BT_OK)
            st = bt_xent_forward(xent, c == B ? logits : lt, test->label + i, NULL, &t1, &t5);
        bt_tensor_free(xt);
        bt_tensor_free(lt);
        if (st != BT_OK) {
            snprintf(err, PROBE_ERR_CAP, "linear probe, test: %s", bt_last_error());
            goto done;
        }
        hit1 += t1;
        hit5 += t5;
    }
    *top1 = (double)hit1 / (double)nte;
    *top5 = (double)hit5 / (double)nte;
    rc = 0;
done:
    bt_tensor_free(x);
    bt_tensor_free(logits);
    bt_tensor_free(dlogits);
    bt_xent_free(xent);
    bt_optim_free(opt);
    bt_layer_free(lin);
    bt_config_free(cfg);
    free(xtr);
    free(xte);
    free(mean);
    free(sd);
    free(perm);
    free(yb);
    return rc;
}
