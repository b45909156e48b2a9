/* model.c - the Barlow Twins network: ResNet encoder + MLP projector.
 *
 * The network is a flat list of steps over numbered activations: a layer step
 * (conv, BatchNorm, ReLU, pooling, linear) maps one activation to another, and
 * an add-ReLU step closes a residual block. Views are concatenated along the
 * batch and every BatchNorm runs with one statistics group per view, which is
 * exactly the per-view semantics of the official code with bigger GEMMs.
 *
 * Every activation keeps its own buffer (the layers borrow their inputs until
 * backward); gradients flow through a small pool of reusable buffers planned
 * once per shape, so a training step allocates nothing after the first. */
#include "model/model.h"

#include "layers/layer.h"
#include "common/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VIEWS 8
#define MAX_STAGES 8
#define MAX_PROJ 8
#define NAME_CAP 128

enum { STEP_LAYER, STEP_ADD_RELU };

/* Fusions, decided once the network is built (see plan_fusion): a BatchNorm
 * whose output only feeds a ReLU writes the ReLU's output itself, and its
 * backward reads the ReLU's gradient through the ReLU's mask; a BatchNorm whose
 * output only feeds an add-ReLU runs at the add-ReLU's turn (the other operand
 * is ready then) and writes relu(bn(x) + skip) directly. */
enum { FUSE_NONE, FUSE_RELU, FUSE_ADD };

struct step {
    int kind;
    bt_layer *layer; /* STEP_LAYER */
    int is_bn;       /* BatchNorm: one statistics group per view */
    int in, in2, out;
    int fuse;        /* BatchNorm: FUSE_* */
    int partner;     /* the step fused with this one (either side), or -1 */
};

/* One planned execution: activation shapes and buffers for a batch shape. */
struct plan {
    int ready;
    int nsteps;     /* steps executed (all, or the backbone for eval) */
    int groups;     /* BatchNorm groups: views in training, 1 in eval */
    int64_t in_shape[4];
    int nacts;
    struct bt_tensor *act; /* views over the buffers, unregistered */
    float **buf;
    int npool; /* gradient buffers */
    float **pool;
    int64_t max_numel;
    /* the backward's bookkeeping (plans with gradients), sized from the
     * network: per activation, the pool buffer holding its gradient or -1
     * (nacts entries); per pool buffer, whether it is in use (nacts + 1, the
     * most the planning dry run can hold at once: one per activation and a
     * temporary) */
    int *grad_slot, *grad_busy;
};

struct bt_model {
    int threads;
    int level; /* CPU level of every layer (common/cpu.h) */
    int nsteps, backbone_steps, cap_steps;
    struct step *steps;
    bt_layer **layers; /* in state_dict order, owned */
    int nlayers, cap_layers;
    char (*layer_prefix)[NAME_CAP];
    int64_t in_channels, feature_dim, embed_dim;

    /* tensor table for bt_model_tensor */
    int ntensors;
    char (*tensor_name)[NAME_CAP];
    bt_tensor **tensor_value, **tensor_grad;

    struct plan train, eval;
    int nviews;         /* of the last training forward */
    int can_backward;   /* a training forward is cached */
    int64_t batch;      /* per view */
    bt_tensor *features[MAX_VIEWS]; /* registered borrowed views of the feature rows */
    int act_features;   /* index of the backbone output activation */
    struct bti_buffer scratch;  /* shared by all layers: they run one at a time */
    int no_fusion;              /* tests: run every step on its own */
};

/* ---- construction -------------------------------------------------------- */

static bt_status add_layer(bt_model *m, bt_layer *l, const char *prefix)
{
    if (m->nlayers == m->cap_layers) {
        int cap = m->cap_layers ? 2 * m->cap_layers : 64;
        bt_layer **nl = realloc(m->layers, (size_t)cap * sizeof *nl);
        char(*np)[NAME_CAP];
        if (!nl)
            return bti_fail(BT_E_NOMEM, "bt_model_create: out of memory");
        m->layers = nl;
        np = realloc(m->layer_prefix, (size_t)cap * sizeof *np);
        if (!np)
            return bti_fail(BT_E_NOMEM, "bt_model_create: out of memory");
        m->layer_prefix = np;
        m->cap_layers = cap;
    }
    m->layers[m->nlayers] = l;
    snprintf(m->layer_prefix[m->nlayers], NAME_CAP, "%s", prefix);
    m->nlayers++;
    return BT_OK;
}

static bt_status add_step(bt_model *m, int kind, bt_layer *l, int is_bn, int in, int in2, int out)
{
    if (m->nsteps == m->cap_steps) {
        int cap = m->cap_steps ? 2 * m->cap_steps : 64;
        struct step *ns = realloc(m->steps, (size_t)cap * sizeof *ns);
        if (!ns)
            return bti_fail(BT_E_NOMEM, "bt_model_create: out of memory");
        m->steps = ns;
        m->cap_steps = cap;
    }
    m->steps[m->nsteps].kind = kind;
    m->steps[m->nsteps].layer = l;
    m->steps[m->nsteps].is_bn = is_bn;
    m->steps[m->nsteps].in = in;
    m->steps[m->nsteps].in2 = in2;
    m->steps[m->nsteps].out = out;
    m->steps[m->nsteps].fuse = FUSE_NONE;
    m->steps[m->nsteps].partner = -1;
    m->nsteps++;
    return BT_OK;
}

/* Builder state: the next free activation index. */
struct builder {
    bt_model *m;
    int next_act;
    uint64_t seed;
    int conv_count;
};

/* Kaiming normal, fan-out, ReLU gain: torchvision's ResNet convolution init. */
static void kaiming_normal_fan_out(bt_layer *conv, int64_t out_ch, int64_t k, uint64_t key)
{
    bt_tensor *w = bti_layer_value(conv, 0);
    double std = sqrt(2.0 / (double)(out_ch * k * k));
    int64_t i;
    for (i = 0; i < w->numel; i++)
        w->data[i] = (float)(std * bti_rng_normal(key, (uint64_t)i));
}

static bt_status conv(struct builder *b, const char *prefix, int in, int64_t cin, int64_t cout,
                      int k, int stride, int pad, int *out)
{
    bt_layer *l;
    bt_status st = bti_layer_conv2d_new(&l, (int)cin, (int)cout, k, stride, pad, 0, "bt_model_create");
    if (st != BT_OK)
        return st;
    if ((st = add_layer(b->m, l, prefix)) != BT_OK) {
        bti_layer_destroy(l);
        return st;
    }
    kaiming_normal_fan_out(l, cout, k, bti_rng_key(b->seed, 1, (uint64_t)b->conv_count++, 0));
    *out = b->next_act++;
    return add_step(b->m, STEP_LAYER, l, 0, in, -1, *out);
}

static bt_status bn(struct builder *b, const char *prefix, int in, int64_t ch, int zero_gamma,
                    int *out)
{
    bt_layer *l;
    bt_status st = bti_layer_batchnorm_new(&l, (int)ch, 1e-5, 0.1, 1, "bt_model_create");
    if (st != BT_OK)
        return st;
    if ((st = add_layer(b->m, l, prefix)) != BT_OK) {
        bti_layer_destroy(l);
        return st;
    }
    if (zero_gamma)
        memset(bti_layer_value(l, 0)->data, 0, (size_t)ch * sizeof(float));
    *out = b->next_act++;
    return add_step(b->m, STEP_LAYER, l, 1, in, -1, *out);
}

/* Parameter-free layers are not listed in the tensor table but still owned. */
static bt_status simple(struct builder *b, bt_layer *l, bt_status made, int in, int *out)
{
    bt_status st = made;
    if (st != BT_OK)
        return st;
    if ((st = add_layer(b->m, l, "")) != BT_OK) {
        bti_layer_destroy(l);
        return st;
    }
    *out = b->next_act++;
    return add_step(b->m, STEP_LAYER, l, 0, in, -1, *out);
}

static bt_status relu(struct builder *b, int in, int *out)
{
    bt_layer *l = NULL;
    bt_status st = bti_layer_relu_new(&l, "bt_model_create");
    return simple(b, l, st, in, out);
}

static bt_status residual_block(struct builder *b, const char *name, int in, int64_t cin,
                                int64_t width, int bottleneck, int stride, int zero_init,
                                int *out, int64_t *cout)
{
    char p[NAME_CAP];
    int a, skip = in;
    /* name is short ("backbone.layer4.2"); NAME_CAP leaves room for every suffix */
    int64_t expansion = bottleneck ? 4 : 1, outc = width * expansion;
    bt_status st;

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x)) != BT_OK)                                                                   \
            return st;                                                                             \
    } while (0)
    if (bottleneck) {
        snprintf(p, sizeof p, "%s.conv1", name);
        TRY(conv(b, p, in, cin, width, 1, 1, 0, &a));
        snprintf(p, sizeof p, "%s.bn1", name);
        TRY(bn(b, p, a, width, 0, &a));
        TRY(relu(b, a, &a));
        snprintf(p, sizeof p, "%s.conv2", name); /* v1.5: the stride sits on the 3x3 */
        TRY(conv(b, p, a, width, width, 3, stride, 1, &a));
        snprintf(p, sizeof p, "%s.bn2", name);
        TRY(bn(b, p, a, width, 0, &a));
        TRY(relu(b, a, &a));
        snprintf(p, sizeof p, "%s.conv3", name);
        TRY(conv(b, p, a, width, outc, 1, 1, 0, &a));
        snprintf(p, sizeof p, "%s.bn3", name);
        TRY(bn(b, p, a, outc, zero_init, &a));
    } else {
        snprintf(p, sizeof p, "%s.conv1", name);
        TRY(conv(b, p, in, cin, width, 3, stride, 1, &a));
        snprintf(p, sizeof p, "%s.bn1", name);
        TRY(bn(b, p, a, width, 0, &a));
        TRY(relu(b, a, &a));
        snprintf(p, sizeof p, "%s.conv2", name);
        TRY(conv(b, p, a, width, width, 3, 1, 1, &a));
        snprintf(p, sizeof p, "%s.bn2", name);
        TRY(bn(b, p, a, width, zero_init, &a));
    }
    if (stride != 1 || cin != outc) {
        snprintf(p, sizeof p, "%s.downsample.0", name);
        TRY(conv(b, p, in, cin, outc, 1, stride, 0, &skip));
        snprintf(p, sizeof p, "%s.downsample.1", name);
        TRY(bn(b, p, skip, outc, 0, &skip));
    }
    *out = b->next_act++;
    *cout = outc;
    return add_step(b->m, STEP_ADD_RELU, NULL, 0, a, skip, *out);
#undef TRY
}

struct arch {
    int bottleneck, nstages, cifar_stem, zero_init, proj_bias, proj_bn, nproj;
    int64_t blocks[MAX_STAGES], widths[MAX_STAGES], proj[MAX_PROJ], in_channels;
};

static bt_status read_arch(const bt_config *cfg, struct arch *a)
{
    const char *arch, *block, *stem;
    int n1 = 0, n2 = 0, i;
    int64_t v;
    bt_status st;
    memset(a, 0, sizeof *a);
    if ((st = bti_config_text(cfg, "model.arch", &arch)) != BT_OK ||
        (st = bti_config_text(cfg, "model.block", &block)) != BT_OK ||
        (st = bti_config_text(cfg, "model.stem", &stem)) != BT_OK)
        return st;
    if (strcmp(arch, "resnet") == 0) {
        a->bottleneck = strcmp(block, "bottleneck") == 0;
        if ((st = bti_config_int_list(cfg, "model.blocks", a->blocks, MAX_STAGES, &n1)) != BT_OK ||
            (st = bti_config_int_list(cfg, "model.widths", a->widths, MAX_STAGES, &n2)) != BT_OK)
            return st;
        if (n1 != n2)
            return bti_fail(BT_E_INVALID_ARG,
                            "bt_model_create: model.blocks has %d stages but model.widths has %d",
                            n1, n2);
        a->nstages = n1;
    } else {
        static const int64_t r18[4] = {2, 2, 2, 2}, r34[4] = {3, 4, 6, 3};
        static const int64_t w[4] = {64, 128, 256, 512};
        a->bottleneck = strcmp(arch, "resnet50") == 0;
        memcpy(a->blocks, strcmp(arch, "resnet18") == 0 ? r18 : r34, sizeof r18);
        memcpy(a->widths, w, sizeof w);
        a->nstages = 4;
    }
    a->cifar_stem = strcmp(stem, "cifar") == 0;
    if ((st = bti_config_int(cfg, "model.in_channels", &a->in_channels)) != BT_OK)
        return st;
    if ((st = bti_config_int(cfg, "model.zero_init_residual", &v)) != BT_OK)
        return st;
    a->zero_init = (int)v;
    if ((st = bti_config_int(cfg, "model.projector_bias", &v)) != BT_OK)
        return st;
    a->proj_bias = (int)v;
    if ((st = bti_config_int(cfg, "model.projector_bn", &v)) != BT_OK)
        return st;
    a->proj_bn = (int)v;
    if ((st = bti_config_int_list(cfg, "model.projector", a->proj, MAX_PROJ, &a->nproj)) != BT_OK)
        return st;
    for (i = 0; i < a->nstages; i++)
        if (a->blocks[i] < 1)
            return bti_fail(BT_E_INVALID_ARG, "bt_model_create: stage %d has no blocks", i + 1);
    return BT_OK;
}

static bt_status build(bt_model *m, const struct arch *a, uint64_t seed)
{
    struct builder b = {m, 1, seed, 0}; /* activation 0 is the input */
    char name[48];
    int x = 0, s, k;
    int64_t ch = a->in_channels, stem_w = a->widths[0];
    bt_layer *l = NULL;
    bt_status st;

#define TRY(e)                                                                                     \
    do {                                                                                           \
        if ((st = (e)) != BT_OK)                                                                   \
            return st;                                                                             \
    } while (0)
    if (a->cifar_stem)
        TRY(conv(&b, "backbone.conv1", x, ch, stem_w, 3, 1, 1, &x));
    else
        TRY(conv(&b, "backbone.conv1", x, ch, stem_w, 7, 2, 3, &x));
    TRY(bn(&b, "backbone.bn1", x, stem_w, 0, &x));
    TRY(relu(&b, x, &x));
    if (!a->cifar_stem) {
        st = bti_layer_maxpool2d_new(&l, 3, 2, 1, "bt_model_create");
        TRY(simple(&b, l, st, x, &x));
    }
    ch = stem_w;
    for (s = 0; s < a->nstages; s++) {
        for (k = 0; k < a->blocks[s]; k++) {
            int stride = (s > 0 && k == 0) ? 2 : 1;
            snprintf(name, sizeof name, "backbone.layer%d.%d", s + 1, k);
            TRY(residual_block(&b, name, x, ch, a->widths[s], a->bottleneck, stride, a->zero_init,
                               &x, &ch));
        }
    }
    st = bti_layer_avgpool_new(&l, "bt_model_create");
    TRY(simple(&b, l, st, x, &x));
    m->act_features = x;
    m->feature_dim = ch;
    m->backbone_steps = m->nsteps;

    /* Projector, numbered as the official nn.Sequential: Linear, BN, ReLU, ..., Linear. */
    {
        int idx = 0, i;
        int64_t in_f = ch;
        for (i = 0; i < a->nproj; i++) {
            int last = i == a->nproj - 1;
            snprintf(name, sizeof name, "projector.%d", idx++);
            st = bti_layer_linear_new(&l, (int)in_f, (int)a->proj[i], a->proj_bias, "bt_model_create");
            if (st != BT_OK)
                return st;
            if ((st = add_layer(m, l, name)) != BT_OK) {
                bti_layer_destroy(l);
                return st;
            }
            TRY(bti_layer_reset_parameters(l, bti_rng_key(seed, 2, (uint64_t)i, 0)));
            {
                int out = b.next_act++;
                TRY(add_step(m, STEP_LAYER, l, 0, x, -1, out));
                x = out;
            }
            if (!last) {
                if (a->proj_bn) {
                    snprintf(name, sizeof name, "projector.%d", idx++);
                    TRY(bn(&b, name, x, a->proj[i], 0, &x));
                }
                TRY(relu(&b, x, &x));
                idx++;
            }
            in_f = a->proj[i];
        }
        m->embed_dim = in_f;
    }
    m->train.nacts = b.next_act;
    m->eval.nacts = b.next_act;
    return BT_OK;
#undef TRY
}

/* Mark the BatchNorm steps whose output has exactly one consumer that is a ReLU
 * layer (FUSE_RELU) or the first operand of an add-ReLU (FUSE_ADD). */
static void plan_fusion(bt_model *m)
{
    int s, t;
    for (s = 0; s < m->nsteps; s++) {
        struct step *b = &m->steps[s];
        int uses = 0, cons = -1;
        if (b->kind != STEP_LAYER || b->layer->type != BTI_LAYER_BATCHNORM)
            continue;
        for (t = s + 1; t < m->nsteps; t++) {
            const struct step *c = &m->steps[t];
            uses += (c->in == b->out) + (c->kind == STEP_ADD_RELU && c->in2 == b->out);
            if (c->in == b->out)
                cons = t;
        }
        if (uses != 1 || cons < 0 || b->out == m->act_features)
            continue;
        if (m->steps[cons].kind == STEP_LAYER && m->steps[cons].layer->type == BTI_LAYER_RELU)
            b->fuse = FUSE_RELU;
        else if (m->steps[cons].kind == STEP_ADD_RELU)
            b->fuse = FUSE_ADD;
        else
            continue;
        b->partner = cons;
        m->steps[cons].partner = s;
    }
}

static void plan_release(struct plan *p);

/* Whether step s runs fused with its partner in a plan of nsteps steps. */
static int fused(const bt_model *m, int s, int nsteps)
{
    const struct step *st = &m->steps[s];
    return !m->no_fusion && st->partner >= 0 && st->partner < nsteps && s < nsteps;
}

/* Whether activation `act` is the output of a BatchNorm fused into its
 * consumer in a plan of nsteps steps (so never written). */
static int written_by_fusion(const bt_model *m, int act, int nsteps)
{
    int s;
    for (s = 0; s < nsteps; s++)
        if (m->steps[s].out == act && m->steps[s].fuse != FUSE_NONE && fused(m, s, nsteps))
            return 1;
    return 0;
}

/* The activation whose gradient step s reads in the backward pass, or -1 when
 * the step has none of its own (a ReLU done by its BatchNorm). A BatchNorm
 * fused with a ReLU reads the ReLU's output gradient, through its mask. */
static int grad_out(const bt_model *m, int s, int nsteps)
{
    const struct step *st = &m->steps[s];
    if (!fused(m, s, nsteps))
        return st->out;
    if (st->kind == STEP_LAYER && st->fuse == FUSE_NONE)
        return -1;
    return st->fuse == FUSE_RELU ? m->steps[st->partner].out : st->out;
}

void bti_model_set_fusion(bt_model *m, int on)
{
    m->no_fusion = !on;
    plan_release(&m->train); /* fused-away activations have no buffer: plan again */
    plan_release(&m->eval);
    m->can_backward = 0;
}

static bt_status build_tensor_table(bt_model *m)
/* names are "<layer prefix>.<tensor name>", both short */
{
    int i, k, n = 0;
    for (i = 0; i < m->nlayers; i++)
        if (m->layer_prefix[i][0])
            n += bti_layer_tensor_count(m->layers[i]);
    m->tensor_name = calloc((size_t)n + 1, sizeof *m->tensor_name);
    m->tensor_value = calloc((size_t)n + 1, sizeof *m->tensor_value);
    m->tensor_grad = calloc((size_t)n + 1, sizeof *m->tensor_grad);
    if (!m->tensor_name || !m->tensor_value || !m->tensor_grad)
        return bti_fail(BT_E_NOMEM, "bt_model_create: out of memory");
    for (i = 0; i < m->nlayers; i++) {
        if (!m->layer_prefix[i][0])
            continue;
        for (k = 0; k < bti_layer_tensor_count(m->layers[i]); k++, m->ntensors++) {
            snprintf(m->tensor_name[m->ntensors], NAME_CAP, "%s.%s", m->layer_prefix[i],
                     bti_layer_tensor_name(m->layers[i], k));
            m->tensor_value[m->ntensors] = bti_layer_value(m->layers[i], k);
            m->tensor_grad[m->ntensors] = bti_layer_grad(m->layers[i], k);
        }
    }
    (void)n;
    return BT_OK;
}

/* ---- plans: activation buffers and the gradient pool ---------------------- */

static void plan_release(struct plan *p)
{
    int i;
    if (p->buf)
        for (i = 0; i < p->nacts; i++)
            bti_free(p->buf[i]);
    if (p->pool)
        for (i = 0; i < p->npool; i++)
            bti_free(p->pool[i]);
    free(p->buf);
    free(p->pool);
    free(p->act);
    free(p->grad_slot);
    free(p->grad_busy);
    p->buf = p->pool = NULL;
    p->act = NULL;
    p->grad_slot = p->grad_busy = NULL;
    p->npool = 0;
    p->ready = 0;
}

/* Gradient bookkeeping shared by the real backward and the planning dry run. */
struct gstate {
    int *slot; /* per activation: pool index or -1 */
    int *busy; /* per pool buffer, cap of them */
    int used_max, cap;
};

static int take(struct gstate *g)
{
    int i;
    for (i = 0; i < g->cap; i++)
        if (!g->busy[i]) {
            g->busy[i] = 1;
            if (i + 1 > g->used_max)
                g->used_max = i + 1;
            return i;
        }
    return -1;
}

static void give(struct gstate *g, int i) { g->busy[i] = 0; }

/* The pool buffers the backward of p needs (a dry run of run_backward's
 * bookkeeping), or -1 if the bookkeeping ran out of room, which its sizes
 * rule out (a bug). */
static int count_pool(const bt_model *m, const struct plan *p)
{
    int *slot = p->grad_slot, s, n = p->nacts, out;
    struct gstate g = {p->grad_slot, p->grad_busy, 0, n + 1};
    for (s = 0; s < n; s++)
        slot[s] = -1;
    for (s = 0; s < n + 1; s++)
        g.busy[s] = 0;
    out = m->steps[p->nsteps - 1].out;
    slot[out] = take(&g);
    for (s = p->nsteps - 1; s >= 0; s--) {
        const struct step *st = &m->steps[s];
        const int gout = grad_out(m, s, p->nsteps);
        int go;
        if (gout < 0)
            continue;
        go = slot[gout];
        if (go < 0)
            return -1;
        if (st->kind == STEP_LAYER) {
            if (st->in != 0) {
                int t = take(&g);
                if (t < 0)
                    return -1;
                if (slot[st->in] < 0)
                    slot[st->in] = t;
                else
                    give(&g, t);
            }
            give(&g, go);
        } else {
            if (slot[st->in2] < 0 && (slot[st->in2] = take(&g)) < 0)
                return -1;
            if (slot[st->in] < 0)
                slot[st->in] = go;
            else
                give(&g, go);
        }
        slot[gout] = -1;
    }
    return g.used_max;
}

/* Size a plan for input [batch, C, H, W] over the first nsteps steps. Builds into
 * a fresh struct so a failure leaves the current plan untouched. */
static bt_status plan_build(bt_model *m, struct plan *p, int nsteps, int groups,
                            const int64_t *in_shape, int need_grads, const char *fn)
{
    struct plan q;
    int64_t (*shape)[4] = NULL;
    int *nd = NULL, s, i;
    bt_status st = BT_OK;

    memset(&q, 0, sizeof q);
    q.nacts = m->train.nacts;
    q.nsteps = nsteps;
    q.groups = groups;
    memcpy(q.in_shape, in_shape, sizeof q.in_shape);
    shape = calloc((size_t)q.nacts, sizeof *shape);
    nd = calloc((size_t)q.nacts, sizeof *nd);
    q.act = calloc((size_t)q.nacts, sizeof *q.act);
    q.buf = calloc((size_t)q.nacts, sizeof *q.buf);
    if (!shape || !nd || !q.act || !q.buf) {
        st = bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    nd[0] = 4;
    memcpy(shape[0], in_shape, 4 * sizeof(int64_t));
    for (s = 0; s < nsteps; s++) {
        const struct step *stp = &m->steps[s];
        if (stp->kind == STEP_ADD_RELU) {
            nd[stp->out] = nd[stp->in];
            memcpy(shape[stp->out], shape[stp->in], sizeof shape[0]);
            continue;
        }
        st = bti_layer_output_shape(stp->layer, nd[stp->in], shape[stp->in], &nd[stp->out],
                                   shape[stp->out]);
        if (st != BT_OK) {
            char sb[96];
            st = bti_fail(BT_E_SHAPE, "%s: input %s does not fit the network (step %d: %s)", fn,
                          bti_dims_str(4, in_shape, sb, sizeof sb), s, bt_last_error());
            goto done;
        }
    }
    for (i = 0; i < q.nacts; i++) {
        int64_t n = 1;
        int k;
        if (nd[i] == 0)
            continue; /* not reached by these steps */
        for (k = 0; k < nd[i]; k++)
            n *= shape[i][k];
        q.act[i].ndim = nd[i];
        memcpy(q.act[i].shape, shape[i], sizeof shape[i]);
        q.act[i].numel = n;
        if (n > q.max_numel)
            q.max_numel = n;
        if (written_by_fusion(m, i, nsteps))
            continue; /* a fused-away output is never written: no buffer */
        q.act[i].data = q.buf[i] = bti_alloc((size_t)n * sizeof(float));
        if (!q.buf[i]) {
            st = bti_fail(BT_E_NOMEM, "%s: out of memory for the workspace", fn);
            goto done;
        }
    }
    if (need_grads) {
        q.grad_slot = calloc((size_t)q.nacts, sizeof *q.grad_slot);
        q.grad_busy = calloc((size_t)q.nacts + 1, sizeof *q.grad_busy);
        if (!q.grad_slot || !q.grad_busy) {
            st = bti_fail(BT_E_NOMEM, "%s: out of memory for the gradient plan", fn);
            goto done;
        }
        q.npool = count_pool(m, &q);
        if (q.npool < 0) {
            st = bti_fail(BT_E_INTERNAL, "%s: the gradient plan ran out of buffers", fn);
            q.npool = 0;
            goto done;
        }
        q.pool = calloc((size_t)(q.npool > 0 ? q.npool : 1), sizeof *q.pool);
        if (!q.pool) {
            st = bti_fail(BT_E_NOMEM, "%s: out of memory for the gradient pool", fn);
            goto done;
        }
        for (i = 0; i < q.npool; i++)
            if (!(q.pool[i] = bti_alloc((size_t)q.max_numel * sizeof(float)))) {
                q.npool = i;
                st = bti_fail(BT_E_NOMEM, "%s: out of memory for the gradient pool", fn);
                goto done;
            }
    }
    q.ready = 1;
done:
    free(shape);
    free(nd);
    if (st == BT_OK) {
        plan_release(p);
        *p = q;
    } else {
        plan_release(&q);
    }
    return st;
}

/* ---- element-wise helpers ------------------------------------------------- */

static void add_relu(float *restrict out, const float *restrict a, const float *restrict b,
                     int64_t n, int threads)
{
    int64_t i;
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n > 65536)
    for (i = 0; i < n; i++) {
        float v = a[i] + b[i];
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

static void mask_relu(float *restrict g, const float *restrict y, int64_t n, int threads)
{
    int64_t i;
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n > 65536)
    for (i = 0; i < n; i++) {
        const float v = g[i];
        g[i] = y[i] > 0.0f ? v : 0.0f;
    }
}

/* mask_relu, also writing the result to copy: one pass instead of two */
static void mask_relu_copy(float *restrict g, float *restrict copy, const float *restrict y,
                           int64_t n, int threads)
{
    int64_t i;
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n > 65536)
    for (i = 0; i < n; i++) {
        const float v = g[i], r = y[i] > 0.0f ? v : 0.0f;
        g[i] = r;
        copy[i] = r;
    }
}

static void add_into(float *restrict dst, const float *restrict src, int64_t n, int threads)
{
    int64_t i;
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n > 65536)
    for (i = 0; i < n; i++)
        dst[i] += src[i];
}

/* A gradient view: the activation's shape over a pool buffer. */
static struct bt_tensor gview(const struct plan *p, int act, float *data)
{
    struct bt_tensor t = p->act[act];
    t.data = data;
    return t;
}

/* ---- forward / backward ---------------------------------------------------- */

static bt_status run_forward(bt_model *m, struct plan *p, int training)
{
    int s;
    bt_status st;
    for (s = 0; s < p->nsteps; s++) {
        const struct step *stp = &m->steps[s];
        const int fz = fused(m, s, p->nsteps);
        if (stp->kind == STEP_LAYER && fz && stp->fuse == FUSE_RELU) {
            st = bti_layer_forward_fused(stp->layer, &p->act[stp->in],
                                         &p->act[m->steps[stp->partner].out], training,
                                         p->groups, NULL, 1);
            if (st != BT_OK)
                return st;
        } else if (stp->kind == STEP_LAYER && fz) {
            continue; /* a ReLU already done, or a BatchNorm done at its add-ReLU */
        } else if (stp->kind == STEP_LAYER) {
            st = bti_layer_forward(stp->layer, &p->act[stp->in], &p->act[stp->out], training,
                                   stp->is_bn ? p->groups : 1);
            if (st != BT_OK)
                return st;
        } else if (fz) {
            const struct step *b = &m->steps[stp->partner];
            st = bti_layer_forward_fused(b->layer, &p->act[b->in], &p->act[stp->out], training,
                                         p->groups, &p->act[stp->in2], 1);
            if (st != BT_OK)
                return st;
        } else {
            add_relu(p->buf[stp->out], p->buf[stp->in], p->buf[stp->in2], p->act[stp->out].numel,
                     m->threads);
        }
    }
    return BT_OK;
}

/* A layer's backward; mask: the output of the ReLU fused into this BatchNorm. */
static bt_status layer_backward(bt_layer *l, const bt_tensor *dy, bt_tensor *dx,
                                const bt_tensor *mask)
{
    return mask ? bti_layer_backward_masked(l, dy, dx, mask) : bti_layer_backward(l, dy, dx);
}

static bt_status run_backward(bt_model *m, struct plan *p)
{
    int *slot = p->grad_slot, s, n = p->nacts;
    struct gstate g = {p->grad_slot, p->grad_busy, 0, p->npool};
    bt_status st = BT_OK;
    for (s = 0; s < n; s++)
        slot[s] = -1;
    for (s = 0; s < p->npool; s++)
        g.busy[s] = 0;
    slot[m->steps[p->nsteps - 1].out] = 0;
    g.busy[0] = 1;
    for (s = p->nsteps - 1; s >= 0 && st == BT_OK; s--) {
        const struct step *stp = &m->steps[s];
        const int gout = grad_out(m, s, p->nsteps);
        const struct bt_tensor *mask;
        struct bt_tensor dy;
        int go;
        if (gout < 0)
            continue;
        mask = gout != stp->out ? &p->act[gout] : NULL; /* the fused ReLU's output */
        go = slot[gout];
        dy = gview(p, gout, p->pool[go]);
        if (stp->kind == STEP_LAYER) {
            if (stp->in == 0) {
                st = layer_backward(stp->layer, &dy, NULL, mask);
            } else if (slot[stp->in] < 0) {
                struct bt_tensor dx;
                slot[stp->in] = take(&g);
                dx = gview(p, stp->in, p->pool[slot[stp->in]]);
                st = layer_backward(stp->layer, &dy, &dx, mask);
            } else {
                int t = take(&g);
                struct bt_tensor dx = gview(p, stp->in, p->pool[t]);
                st = layer_backward(stp->layer, &dy, &dx, mask);
                add_into(p->pool[slot[stp->in]], p->pool[t], dx.numel, m->threads);
                give(&g, t);
            }
            give(&g, go);
        } else {
            int64_t cnt = p->act[stp->out].numel;
            if (slot[stp->in2] < 0) {
                slot[stp->in2] = take(&g);
                mask_relu_copy(p->pool[go], p->pool[slot[stp->in2]], p->buf[stp->out], cnt,
                               m->threads);
            } else {
                mask_relu(p->pool[go], p->buf[stp->out], cnt, m->threads);
                add_into(p->pool[slot[stp->in2]], p->pool[go], cnt, m->threads);
            }
            if (slot[stp->in] < 0) {
                slot[stp->in] = go; /* hand the buffer over: no copy */
            } else {
                add_into(p->pool[slot[stp->in]], p->pool[go], cnt, m->threads);
                give(&g, go);
            }
        }
        slot[gout] = -1;
    }
    return st;
}

/* ---- public API -------------------------------------------------------------- */

static void model_destroy(bt_model *m)
{
    int i;
    for (i = 0; i < MAX_VIEWS; i++)
        bti_tensor_destroy(m->features[i]);
    for (i = 0; i < m->nlayers; i++)
        bti_layer_destroy(m->layers[i]);
    bti_buffer_release(&m->scratch);
    plan_release(&m->train);
    plan_release(&m->eval);
    free(m->layers);
    free(m->layer_prefix);
    free(m->steps);
    free(m->tensor_name);
    free(m->tensor_value);
    free(m->tensor_grad);
    free(m);
}

BT_API bt_status bt_model_create(bt_model **out, const bt_config *cfg)
{
    struct arch a;
    bt_model *m;
    int64_t seed;
    int i, level;
    bt_status st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "bt_model_create: out is NULL");
    *out = NULL;
    if ((st = bti_check(cfg, BTI_KIND_CONFIG, "bt_model_create", "cfg")) != BT_OK)
        return st;
    if ((st = read_arch(cfg, &a)) != BT_OK || (st = bti_config_int(cfg, "seed", &seed)) != BT_OK ||
        (st = bti_cpu_resolve(cfg, &level, "bt_model_create")) != BT_OK)
        return st;
    m = calloc(1, sizeof *m);
    if (!m)
        return bti_fail(BT_E_NOMEM, "bt_model_create: out of memory");
    m->threads = bti_threads_resolve(cfg);
    m->level = level;
    m->in_channels = a.in_channels;
    if ((st = build(m, &a, (uint64_t)seed)) == BT_OK)
        plan_fusion(m);
    if (st != BT_OK || (st = build_tensor_table(m)) != BT_OK ||
        (st = bti_handle_add(m, BTI_KIND_MODEL)) != BT_OK) {
        model_destroy(m);
        return st;
    }
    for (i = 0; i < m->nlayers; i++) {
        bti_layer_set_threads(m->layers[i], m->threads);
        bti_layer_set_level(m->layers[i], m->level);
        bti_layer_set_scratch(m->layers[i], &m->scratch);
    }
    *out = m;
    return BT_OK;
}

BT_API void bt_model_free(bt_model *m)
{
    if (!m || bti_check(m, BTI_KIND_MODEL, "bt_model_free", "m") != BT_OK)
        return;
    bti_handle_remove(m);
    model_destroy(m);
}

BT_API int64_t bt_model_feature_dim(const bt_model *m)
{
    if (bti_check(m, BTI_KIND_MODEL, "bt_model_feature_dim", "m") != BT_OK)
        return -1;
    return m->feature_dim;
}

BT_API int64_t bt_model_embed_dim(const bt_model *m)
{
    if (bti_check(m, BTI_KIND_MODEL, "bt_model_embed_dim", "m") != BT_OK)
        return -1;
    return m->embed_dim;
}

BT_API bt_status bt_model_set_threads(bt_model *m, int32_t threads)
{
    int i;
    bt_status st = bti_check(m, BTI_KIND_MODEL, "bt_model_set_threads", "m");
    if (st != BT_OK)
        return st;
    if (threads < 1 || threads > 1024)
        return bti_fail(BT_E_INVALID_ARG, "bt_model_set_threads: threads is %d; it must be 1 to 1024",
                        (int)threads);
    m->threads = threads;
    for (i = 0; i < m->nlayers; i++)
        bti_layer_set_threads(m->layers[i], threads);
    return BT_OK;
}

/* Check views x[0..n-1] (same [N, C, H, W]) and outputs out[v] of [N, width]. */
static bt_status check_views(const bt_model *m, const char *fn, int32_t n,
                             const bt_tensor *const *x, const bt_tensor *const *out,
                             const char *out_name, int64_t width, int64_t min_batch)
{
    char a[96], b[96];
    int32_t v;
    bt_status st;
    if (!x)
        return bti_fail(BT_E_MISUSE, "%s: x is NULL", fn);
    if (!out)
        return bti_fail(BT_E_MISUSE, "%s: %s is NULL", fn, out_name);
    for (v = 0; v < n; v++) {
        char arg[32];
        snprintf(arg, sizeof arg, "x[%d]", (int)v);
        if ((st = bti_check(x[v], BTI_KIND_TENSOR, fn, arg)) != BT_OK)
            return st;
        snprintf(arg, sizeof arg, "%s[%d]", out_name, (int)v);
        if ((st = bti_check(out[v], BTI_KIND_TENSOR, fn, arg)) != BT_OK)
            return st;
        if (x[v]->ndim != 4 || x[v]->shape[1] != m->in_channels)
            return bti_fail(BT_E_SHAPE, "%s: x[%d] is %s; expected [N, %lld, H, W]", fn, (int)v,
                            bti_shape_str(x[v], a, sizeof a), (long long)m->in_channels);
        if (!bti_tensor_has_shape(x[v], 4, x[0]->shape))
            return bti_fail(BT_E_SHAPE, "%s: x[%d] is %s but x[0] is %s; views must match", fn,
                            (int)v, bti_shape_str(x[v], a, sizeof a),
                            bti_shape_str(x[0], b, sizeof b));
        if (x[v]->shape[0] < min_batch)
            return bti_fail(BT_E_SHAPE, "%s: x[%d] is %s; training needs a batch of at least 2", fn,
                            (int)v, bti_shape_str(x[v], a, sizeof a));
        {
            int64_t want[2] = {x[0]->shape[0], width};
            if (!bti_tensor_has_shape(out[v], 2, want))
                return bti_fail(BT_E_SHAPE, "%s: %s[%d] is %s; expected %s", fn, out_name, (int)v,
                                bti_shape_str(out[v], a, sizeof a),
                                bti_dims_str(2, want, b, sizeof b));
        }
    }
    return BT_OK;
}

static bt_status make_feature_views(bt_model *m, int nviews, int64_t batch)
{
    int v;
    bt_tensor *fresh[MAX_VIEWS] = {0};
    int64_t shape[2] = {batch, m->feature_dim};
    for (v = 0; v < nviews; v++) {
        float *rows = m->train.buf[m->act_features] + (size_t)v * (size_t)batch * (size_t)m->feature_dim;
        bt_status st = bti_tensor_wrap_owned(&fresh[v], rows, 2, shape);
        if (st != BT_OK) {
            while (v-- > 0)
                bti_tensor_destroy(fresh[v]);
            return st;
        }
    }
    for (v = 0; v < MAX_VIEWS; v++) {
        bti_tensor_destroy(m->features[v]);
        m->features[v] = fresh[v];
    }
    return BT_OK;
}

BT_API bt_status bt_model_forward(bt_model *m, int32_t nviews, const bt_tensor *const *x,
                                  bt_tensor *const *z)
{
    static const char *fn = "bt_model_forward";
    int64_t in_shape[4], per;
    int32_t v;
    int last;
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if (nviews < 1 || nviews > MAX_VIEWS)
        return bti_fail(BT_E_INVALID_ARG, "%s: nviews is %d; it must be 1 to %d", fn, (int)nviews,
                        MAX_VIEWS);
    if ((st = check_views(m, fn, nviews, x, (const bt_tensor *const *)z, "z", m->embed_dim, 2)) !=
        BT_OK)
        return st;
    memcpy(in_shape, x[0]->shape, sizeof in_shape);
    in_shape[0] *= nviews;
    if (!m->train.ready || memcmp(in_shape, m->train.in_shape, sizeof in_shape) != 0 ||
        m->train.groups != nviews) {
        m->can_backward = 0; /* a new plan drops the cached forward, even if it fails */
        if ((st = plan_build(m, &m->train, m->nsteps, nviews, in_shape, 1, fn)) != BT_OK)
            return st;
        if ((st = make_feature_views(m, nviews, x[0]->shape[0])) != BT_OK) {
            plan_release(&m->train);
            return st;
        }
    }
    per = x[0]->numel;
    for (v = 0; v < nviews; v++)
        memcpy(m->train.buf[0] + (size_t)v * (size_t)per, x[v]->data, (size_t)per * sizeof(float));
    m->can_backward = 0;
    if ((st = run_forward(m, &m->train, 1)) != BT_OK)
        return st;
    last = m->steps[m->nsteps - 1].out;
    per = z[0]->numel;
    for (v = 0; v < nviews; v++)
        memcpy(z[v]->data, m->train.buf[last] + (size_t)v * (size_t)per, (size_t)per * sizeof(float));
    m->nviews = nviews;
    m->batch = x[0]->shape[0];
    m->can_backward = 1;
    return BT_OK;
}

BT_API bt_status bt_model_backward(bt_model *m, int32_t nviews, const bt_tensor *const *dz)
{
    static const char *fn = "bt_model_backward";
    char a[96], b[96];
    int64_t want[2], per;
    int32_t v;
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if (!m->can_backward)
        return bti_fail(BT_E_STATE, "%s: no training forward to differentiate (call "
                                    "bt_model_forward first; bt_model_encode discards it)", fn);
    if (nviews != m->nviews)
        return bti_fail(BT_E_SHAPE, "%s: nviews is %d but the forward had %d", fn, (int)nviews,
                        m->nviews);
    if (!dz)
        return bti_fail(BT_E_MISUSE, "%s: dz is NULL", fn);
    want[0] = m->batch;
    want[1] = m->embed_dim;
    for (v = 0; v < nviews; v++) {
        char arg[32];
        snprintf(arg, sizeof arg, "dz[%d]", (int)v);
        if ((st = bti_check(dz[v], BTI_KIND_TENSOR, fn, arg)) != BT_OK)
            return st;
        if (!bti_tensor_has_shape(dz[v], 2, want))
            return bti_fail(BT_E_SHAPE, "%s: dz[%d] is %s; expected %s", fn, (int)v,
                            bti_shape_str(dz[v], a, sizeof a), bti_dims_str(2, want, b, sizeof b));
    }
    per = m->batch * m->embed_dim;
    for (v = 0; v < nviews; v++)
        memcpy(m->train.pool[0] + (size_t)v * (size_t)per, dz[v]->data, (size_t)per * sizeof(float));
    return run_backward(m, &m->train);
}

BT_API bt_status bt_model_features(bt_model *m, int32_t view, const bt_tensor **out)
{
    bt_status st = bti_check(m, BTI_KIND_MODEL, "bt_model_features", "m");
    if (st != BT_OK)
        return st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "bt_model_features: out is NULL");
    if (!m->can_backward)
        return bti_fail(BT_E_STATE, "bt_model_features: no training forward is cached");
    if (view < 0 || view >= m->nviews)
        return bti_fail(BT_E_INVALID_ARG, "bt_model_features: view %d is not in [0, %d)", (int)view,
                        m->nviews);
    *out = m->features[view];
    return BT_OK;
}

BT_API bt_status bt_model_encode(bt_model *m, const bt_tensor *x, bt_tensor *features)
{
    static const char *fn = "bt_model_encode";
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if ((st = check_views(m, fn, 1, &x, (const bt_tensor *const *)&features, "features",
                          m->feature_dim, 1)) != BT_OK)
        return st;
    if (!m->eval.ready || memcmp(x->shape, m->eval.in_shape, sizeof m->eval.in_shape) != 0)
        if ((st = plan_build(m, &m->eval, m->backbone_steps, 1, x->shape, 0, fn)) != BT_OK)
            return st;
    memcpy(m->eval.buf[0], x->data, (size_t)x->numel * sizeof(float));
    m->can_backward = 0;
    if ((st = run_forward(m, &m->eval, 0)) != BT_OK)
        return st;
    memcpy(features->data, m->eval.buf[m->act_features],
           (size_t)features->numel * sizeof(float));
    return BT_OK;
}

BT_API bt_status bt_model_zero_grad(bt_model *m)
{
    int i;
    bt_status st = bti_check(m, BTI_KIND_MODEL, "bt_model_zero_grad", "m");
    if (st != BT_OK)
        return st;
    for (i = 0; i < m->nlayers; i++)
        bti_layer_zero_grad(m->layers[i]);
    return BT_OK;
}

BT_API int32_t bt_model_tensor_count(const bt_model *m)
{
    if (bti_check(m, BTI_KIND_MODEL, "bt_model_tensor_count", "m") != BT_OK)
        return -1;
    return m->ntensors;
}

BT_API bt_status bt_model_tensor(bt_model *m, int32_t i, const char **name, bt_tensor **value,
                                 bt_tensor **grad)
{
    bt_status st = bti_check(m, BTI_KIND_MODEL, "bt_model_tensor", "m");
    if (st != BT_OK)
        return st;
    if (i < 0 || i >= m->ntensors)
        return bti_fail(BT_E_INVALID_ARG, "bt_model_tensor: index %d is not in [0, %d)", (int)i,
                        m->ntensors);
    if (name)
        *name = m->tensor_name[i];
    if (value)
        *value = m->tensor_value[i];
    if (grad)
        *grad = m->tensor_grad[i];
    return BT_OK;
}

/* ---- private access for checkpoints ----------------------------------------- */

int bti_model_tensor_count(const bt_model *m) { return m->ntensors; }

const char *bti_model_tensor_name(const bt_model *m, int i) { return m->tensor_name[i]; }

bt_tensor *bti_model_tensor_value(bt_model *m, int i) { return m->tensor_value[i]; }

bt_tensor *bti_model_tensor_grad(bt_model *m, int i) { return m->tensor_grad[i]; }
