/* model.c - the Barlow Twins network: ResNet encoder + MLP projector.
 *
 * The network is a flat list of steps over numbered activations: a layer step
 * (conv, BatchNorm, ReLU, pooling, linear) maps one activation to another, and
 * an add-ReLU step closes a residual block. Views are concatenated along the
 * batch and every BatchNorm runs with one statistics group per view, which is
 * exactly the per-view semantics of the official code with bigger GEMMs.
 *
 * Activations, the fused ReLU outputs the backward recomputes and the
 * gradients share one arena laid out once per shape by their lifetimes (see
 * the plans below; the layers borrow their inputs until backward), so a
 * training step allocates nothing after the first. */
#include "model/model.h"

#include "layers/layer.h"
#include "common/comm.h"
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

/* What the cached training forward ran: the whole network (bt_model_forward) or
 * the backbone alone (bt_model_forward_backbone). */
enum { MODE_FULL, MODE_BACKBONE };

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

struct bstep;

/* One planned execution for a batch shape: activation shapes and where every
 * buffer lives in the arena (see plan_lifetimes). */
struct plan {
    int ready;
    int nsteps;     /* steps executed (all, or the backbone for eval) */
    int groups;     /* BatchNorm groups: views in training, 1 in eval */
    int64_t in_shape[4];
    int nacts;
    struct bt_tensor *act; /* views over the buffers, unregistered */
    float **fwd;           /* per activation: its forward output, or NULL */
    float **rec;           /* per activation: recomputed for the backward, or NULL */
    float **vptr;          /* per buffer number */
    struct bstep *bw;      /* per step: its backward (plans with gradients) */
    int dz;                /* buffer number of dz */
    int need_dx;           /* the backward also gives the input's gradient */
    int dx;                /* its buffer number, or NO_VAL */
    void *arena;
    size_t arena_bytes;
};

struct bt_model {
    int threads;
    int level; /* CPU level of every layer (common/cpu.h) */
    char *options; /* its model.* options as "name=value" lines, for checkpoints */
    int nsteps, backbone_steps, cap_steps;
    struct step *steps;
    bt_layer **layers; /* in state_dict order, owned */
    int nlayers, cap_layers;
    char (*layer_prefix)[NAME_CAP];
    int64_t in_channels, feature_dim, embed_dim;
    int arch_none;  /* model.arch none: no backbone, the input is [N, feature_dim] */
    int in_ndim;    /* of an input view: 4, or 2 with arch_none */
    int nacts; /* activations, the input included */

    /* tensor table for bt_model_tensor */
    int ntensors;
    char (*tensor_name)[NAME_CAP];
    bt_tensor **tensor_value, **tensor_grad;

    struct plan train, eval;
    int nviews;         /* of the last training forward */
    int can_backward;   /* a training forward is cached and not yet differentiated */
    int mode;           /* of the cached training forward: MODE_* */
    int have_dx;        /* the last bt_model_backward left the input's gradient (arch none) */
    int have_features;  /* the last training forward's features are valid */
    int64_t batch;      /* per view */
    bt_tensor *features[MAX_VIEWS]; /* registered borrowed views of the feature rows */
    int act_features;   /* index of the backbone output activation */
    struct bti_buffer scratch;  /* shared by all layers: they run one at a time */
    int no_fusion;              /* tests: run every step on its own */
    bt_comm *comm;              /* data-parallel (bt_model_set_comm), borrowed */
    struct bti_buffer gsave;    /* floats: the gradients before a data-parallel backward */
};

/* ---- construction -------------------------------------------------------- */

static bt_status add_layer(bt_model *m, bt_layer *l, const char *prefix)
{
    if (m->nlayers == m->cap_layers) {
        int cap = m->cap_layers ? 2 * m->cap_layers : 64;
        bt_layer **nl = bti_realloc(m->layers, (size_t)cap * sizeof *nl);
        char(*np)[NAME_CAP];
        if (!nl)
            return bti_fail(BT_E_NOMEM, "bt_model_create: out of memory");
        m->layers = nl;
        np = bti_realloc(m->layer_prefix, (size_t)cap * sizeof *np);
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
        struct step *ns = bti_realloc(m->steps, (size_t)cap * sizeof *ns);
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
    int none; /* model.arch none: projector only */
    int64_t feature_dim;
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
    if ((st = bti_config_int(cfg, "model.feature_dim", &a->feature_dim)) != BT_OK)
        return st;
    a->none = strcmp(arch, "none") == 0;
    if (a->none && a->feature_dim < 1)
        return bti_fail(BT_E_INVALID_ARG, "bt_model_create: model.arch none needs "
                        "model.feature_dim, the width of the host's features (>= 1)");
    if (!a->none && a->feature_dim != 0)
        return bti_fail(BT_E_INVALID_ARG, "bt_model_create: model.feature_dim is %lld but "
                        "model.arch is %s; it is only for model.arch none (a ResNet's width "
                        "follows from model.widths)", (long long)a->feature_dim, arch);
    if (a->none) {
        a->nstages = 0;
    } else if (strcmp(arch, "resnet") == 0) {
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
    if (a->none) { /* the input is the features */
        ch = a->feature_dim;
        goto projector;
    }
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
projector:
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
    m->nacts = b.next_act;
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
    m->have_features = 0;
}

static bt_status build_tensor_table(bt_model *m)
/* names are "<layer prefix>.<tensor name>", both short */
{
    int i, k, n = 0;
    for (i = 0; i < m->nlayers; i++)
        if (m->layer_prefix[i][0])
            n += bti_layer_tensor_count(m->layers[i]);
    m->tensor_name = bti_calloc((size_t)n + 1, sizeof *m->tensor_name);
    m->tensor_value = bti_calloc((size_t)n + 1, sizeof *m->tensor_value);
    m->tensor_grad = bti_calloc((size_t)n + 1, sizeof *m->tensor_grad);
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

/* ---- plans: one arena for activations, recomputed outputs and gradients -------
 *
 * A plan walks the steps once as the forward and the backward will run them and
 * gives every buffer they touch a lifetime on one clock: forward step s at time
 * s, the copy of dz at nsteps, the backward of step s at 2 nsteps - s. A buffer
 * is an activation's forward output (alive from its step to its last reader:
 * a later step, or the backward of a layer that reads its input, or a mask), a
 * fused ReLU's output recomputed for the backward (from its BatchNorm's input
 * and statistics, the same bits: the forward's copy dies with its last forward
 * reader), or a gradient. Buffers whose lifetimes do not meet share bytes: the
 * arena is laid out once per shape (largest first, lowest offset that fits), so
 * a step allocates nothing and one backward per forward reads only what it
 * needs (the buffers it frees become the next ones' gradients). */

#define NO_VAL (-1)

struct val {
    size_t bytes, off;
    int t0, t1;
};

struct vtab {
    struct val *v;
    int n, cap;
};

/* A new buffer of numel floats alive from time t, or NO_VAL when out of memory. */
static int vnew(struct vtab *t, int64_t numel, int time)
{
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        struct val *nv = bti_realloc(t->v, (size_t)cap * sizeof *nv);
        if (!nv)
            return NO_VAL;
        t->v = nv;
        t->cap = cap;
    }
    /* a multiple of the cache line: every buffer starts on one */
    t->v[t->n].bytes = ((size_t)numel * sizeof(float) + 63) / 64 * 64;
    t->v[t->n].off = 0;
    t->v[t->n].t0 = time;
    t->v[t->n].t1 = time;
    return t->n++;
}

static void vuse(struct vtab *t, int id, int time)
{
    if (id != NO_VAL && time > t->v[id].t1)
        t->v[id].t1 = time;
}

static int by_bytes_desc(const void *a, const void *b)
{
    const struct val *x = *(const struct val *const *)a, *y = *(const struct val *const *)b;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    return (x->t0 > y->t0) - (x->t0 < y->t0);
}

static int by_off(const void *a, const void *b)
{
    const struct val *x = *(const struct val *const *)a, *y = *(const struct val *const *)b;
    return (x->off > y->off) - (x->off < y->off);
}

/* Offsets for every buffer: largest first, each at the lowest offset clear of
 * the placed buffers alive at the same time. Returns the arena's bytes, or
 * (size_t)-1 when out of memory. */
static size_t pack(struct vtab *t)
{
    const size_t cnt = t->n > 0 ? (size_t)t->n : 1;
    struct val **order = bti_malloc(cnt * sizeof *order), **live = bti_malloc(cnt * sizeof *live);
    size_t total = 0;
    int i, j;
    if (!order || !live) {
        bti_free(order);
        bti_free(live);
        return (size_t)-1;
    }
    for (i = 0; i < t->n; i++)
        order[i] = &t->v[i];
    qsort(order, (size_t)t->n, sizeof *order, by_bytes_desc);
    for (i = 0; i < t->n; i++) {
        struct val *v = order[i];
        size_t at = 0;
        int nl = 0;
        for (j = 0; j < i; j++)
            if (order[j]->t0 <= v->t1 && v->t0 <= order[j]->t1)
                live[nl++] = order[j];
        qsort(live, (size_t)nl, sizeof *live, by_off);
        for (j = 0; j < nl; j++) {
            if (at + v->bytes <= live[j]->off)
                break;
            if (live[j]->off + live[j]->bytes > at)
                at = live[j]->off + live[j]->bytes;
        }
        v->off = at;
        if (at + v->bytes > total)
            total = at + v->bytes;
    }
    bti_free(order);
    bti_free(live);
    return total;
}

/* The backward of one step, as buffer numbers (NO_VAL: none). A layer step
 * reads dy, writes dx, then adds dx into acc when the input already had a
 * gradient; an add-ReLU masks dy in place and gives it to its skip input (a
 * fresh copy, or added into acc2) and to its first input (handed over, or added
 * into acc). rec/rec_bn: an activation recomputed by that BatchNorm step
 * before the step runs (up to two: the layer's input and its mask). */
struct bstep {
    int dy, dx, acc, skip, acc2;
    int rec[2], rec_bn[2];
};

static void plan_release(struct plan *p)
{
    bti_free(p->arena);
    bti_free(p->act);
    bti_free(p->fwd);
    bti_free(p->rec);
    bti_free(p->vptr);
    bti_free(p->bw);
    memset(p, 0, sizeof *p);
}

/* The step that executes step s's forward (a BatchNorm fused into an add-ReLU
 * runs at the add-ReLU's turn), or -1 when s never runs (a fused-away ReLU). */
static int exec_step(const bt_model *m, int s, int nsteps)
{
    const struct step *st = &m->steps[s];
    if (st->kind != STEP_LAYER || !fused(m, s, nsteps))
        return s;
    if (st->fuse == FUSE_ADD)
        return st->partner;
    return st->fuse == FUSE_RELU ? s : -1;
}

/* Lifetimes of plan q's buffers into t: the forward, then (need_grads) the
 * backward's bookkeeping into q->bw. recby[a]: the BatchNorm step that
 * recomputes activation a for the backward, or -1. slot: nacts ints. */
static bt_status plan_lifetimes(const bt_model *m, struct plan *q, struct vtab *t, int need_grads,
                                int *fwd, int *rec, int *recby, int *slot, const char *fn)
{
    const int n = q->nsteps, end = 2 * n + 1;
    const int last = m->steps[n - 1].out;
    int s, i;
#define NEW(dst, a_, t_)                                                                           \
    do {                                                                                           \
        if (((dst) = vnew(t, q->act[a_].numel, (t_))) == NO_VAL)                                   \
            return bti_fail(BT_E_NOMEM, "%s: out of memory for the workspace plan", fn);           \
    } while (0)
    for (i = 0; i < q->nacts; i++)
        fwd[i] = rec[i] = recby[i] = slot[i] = NO_VAL;
    NEW(fwd[0], 0, 0);
    for (s = 0; s < n; s++) {
        const struct step *st = &m->steps[s];
        const int e = exec_step(m, s, n);
        if (e < 0 || (st->kind == STEP_LAYER && st->fuse == FUSE_ADD && e != s))
            continue; /* a fused-away ReLU; a BatchNorm run by its add-ReLU (below) */
        if (st->kind == STEP_ADD_RELU && fused(m, s, n)) {
            const struct step *b = &m->steps[st->partner];
            vuse(t, fwd[b->in], s);
            vuse(t, fwd[st->in2], s);
        } else {
            vuse(t, fwd[st->in], s);
            if (st->kind == STEP_ADD_RELU)
                vuse(t, fwd[st->in2], s);
        }
        if (st->kind == STEP_LAYER && st->fuse == FUSE_RELU && fused(m, s, n)) {
            const int r = m->steps[st->partner].out;
            NEW(fwd[r], r, s);
            if (need_grads && r != m->act_features && r != last)
                recby[r] = s;
        } else {
            NEW(fwd[st->out], st->out, s);
        }
    }
    vuse(t, fwd[m->act_features], end); /* bt_model_features until the next forward */
    if (!need_grads)
        return BT_OK;

    NEW(slot[last], last, n); /* dz */
    q->dz = slot[last];
    for (s = n - 1; s >= 0; s--) {
        const struct step *st = &m->steps[s];
        struct bstep *b = &q->bw[s];
        const int time = 2 * n - s, gout = grad_out(m, s, n);
        int k, reads[2], nr = 0;
        b->dy = b->dx = b->acc = b->skip = b->acc2 = NO_VAL;
        b->rec[0] = b->rec[1] = b->rec_bn[0] = b->rec_bn[1] = -1;
        if (gout < 0)
            continue;
        b->dy = slot[gout];
        if (b->dy == NO_VAL)
            return bti_fail(BT_E_INTERNAL, "%s: the gradient plan lost a gradient", fn);
        vuse(t, b->dy, time);
        if (st->kind == STEP_LAYER) {
            reads[nr++] = st->in; /* every layer's backward reads its input */
            if (gout != st->out)
                reads[nr++] = gout; /* the fused ReLU's output, as the mask */
            for (k = 0; k < nr; k++) {
                const int a = reads[k];
                if (recby[a] < 0) {
                    vuse(t, fwd[a], time);
                    continue;
                }
                if (rec[a] == NO_VAL) {
                    NEW(rec[a], a, time);
                    b->rec[k] = a;
                    b->rec_bn[k] = recby[a];
                }
                vuse(t, rec[a], time);
            }
            if (st->in != 0 || q->need_dx) {
                if (slot[st->in] == NO_VAL) {
                    NEW(slot[st->in], st->in, time);
                    b->dx = slot[st->in];
                } else {
                    NEW(b->dx, st->in, time);
                    b->acc = slot[st->in];
                    vuse(t, b->acc, time);
                }
            }
        } else {
            vuse(t, fwd[st->out], time); /* the mask */
            if (slot[st->in2] == NO_VAL) {
                NEW(slot[st->in2], st->in2, time);
                b->skip = slot[st->in2];
            } else {
                b->acc2 = slot[st->in2];
            }
            vuse(t, slot[st->in2], time);
            if (slot[st->in] == NO_VAL) {
                slot[st->in] = b->dy; /* hand the buffer over: no copy */
            } else {
                b->acc = slot[st->in];
                vuse(t, b->acc, time);
            }
        }
        slot[gout] = NO_VAL;
    }
    if (q->need_dx) { /* read after the backward, until the next forward */
        q->dx = slot[0];
        if (q->dx == NO_VAL)
            return bti_fail(BT_E_INTERNAL, "%s: the gradient plan has no input gradient", fn);
        vuse(t, q->dx, end);
    }
    return BT_OK;
#undef NEW
}

/* Shapes of every activation of the first nsteps steps for input in_shape into
 * q->act (data NULL); BT_E_SHAPE naming the step that does not fit. */
static bt_status plan_shapes(const bt_model *m, struct plan *q, const int64_t *in_shape,
                             const char *fn)
{
    int s;
    q->act[0].ndim = m->in_ndim;
    memcpy(q->act[0].shape, in_shape, (size_t)m->in_ndim * sizeof(int64_t));
    for (s = 0; s < q->nsteps; s++) {
        const struct step *stp = &m->steps[s];
        struct bt_tensor *o = &q->act[stp->out];
        const struct bt_tensor *x = &q->act[stp->in];
        if (stp->kind == STEP_ADD_RELU) {
            o->ndim = x->ndim;
            memcpy(o->shape, x->shape, sizeof o->shape);
        } else if (bti_layer_output_shape(stp->layer, x->ndim, x->shape, &o->ndim, o->shape) !=
                   BT_OK) {
            char sb[96];
            return bti_fail(BT_E_SHAPE, "%s: input %s does not fit the network (step %d: %s)", fn,
                            bti_dims_str(4, in_shape, sb, sizeof sb), s, bt_last_error());
        }
    }
    for (s = 0; s < q->nacts; s++) {
        int64_t n = q->act[s].ndim ? 1 : 0;
        int k;
        for (k = 0; k < q->act[s].ndim; k++)
            n *= q->act[s].shape[k];
        q->act[s].numel = n;
    }
    return BT_OK;
}

/* Plan q for input [batch, C, H, W] over the first nsteps steps: shapes,
 * lifetimes, the arena's layout and (alloc) the arena itself. q is fresh (zeroed);
 * on failure the caller releases it. */
static bt_status plan_make(bt_model *m, struct plan *q, int nsteps, int groups,
                           const int64_t *in_shape, int need_grads, int need_dx, int alloc,
                           const char *fn)
{
    struct vtab t = {NULL, 0, 0};
    int *fwd = NULL, *rec = NULL, *recby = NULL, *slot = NULL, i;
    size_t bytes;
    bt_status st = BT_OK;

    q->nacts = m->nacts;
    q->nsteps = nsteps;
    q->groups = groups;
    q->need_dx = need_grads && need_dx;
    q->dx = NO_VAL;
    memcpy(q->in_shape, in_shape, sizeof q->in_shape);
    q->act = bti_calloc((size_t)q->nacts, sizeof *q->act);
    q->fwd = bti_calloc((size_t)q->nacts, sizeof *q->fwd);
    q->rec = bti_calloc((size_t)q->nacts, sizeof *q->rec);
    q->bw = bti_calloc((size_t)nsteps, sizeof *q->bw);
    fwd = bti_malloc((size_t)q->nacts * 4 * sizeof *fwd);
    if (!q->act || !q->fwd || !q->rec || !q->bw || !fwd) {
        st = bti_fail(BT_E_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    rec = fwd + q->nacts;
    recby = rec + q->nacts;
    slot = recby + q->nacts;
    if ((st = plan_shapes(m, q, in_shape, fn)) != BT_OK ||
        (st = plan_lifetimes(m, q, &t, need_grads, fwd, rec, recby, slot, fn)) != BT_OK)
        goto done;
    if ((bytes = pack(&t)) == (size_t)-1) {
        st = bti_fail(BT_E_NOMEM, "%s: out of memory for the workspace plan", fn);
        goto done;
    }
    q->arena_bytes = bytes;
    if (!alloc)
        goto done;
    q->vptr = bti_calloc(t.n > 0 ? (size_t)t.n : 1, sizeof *q->vptr);
    q->arena = bti_alloc(bytes ? bytes : 64);
    if (!q->vptr || !q->arena) {
        st = bti_fail(BT_E_NOMEM, "%s: out of memory for a %zu-byte workspace", fn, bytes);
        goto done;
    }
    for (i = 0; i < t.n; i++)
        q->vptr[i] = (float *)((char *)q->arena + t.v[i].off);
    for (i = 0; i < q->nacts; i++) {
        q->fwd[i] = fwd[i] == NO_VAL ? NULL : q->vptr[fwd[i]];
        q->rec[i] = rec[i] == NO_VAL ? NULL : q->vptr[rec[i]];
        q->act[i].data = q->fwd[i];
    }
    q->ready = 1;
done:
    bti_free(t.v);
    bti_free(fwd);
    return st;
}

/* Build a plan into p, or leave p untouched on failure. */
static bt_status plan_build(bt_model *m, struct plan *p, int nsteps, int groups,
                            const int64_t *in_shape, int need_grads, int need_dx, const char *fn)
{
    struct plan q;
    bt_status st;
    memset(&q, 0, sizeof q);
    st = plan_make(m, &q, nsteps, groups, in_shape, need_grads, need_dx, 1, fn);
    if (st != BT_OK) {
        plan_release(&q);
        return st;
    }
    plan_release(p);
    *p = q;
    return BT_OK;
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
    for (s = 0; s < p->nacts; s++)
        p->act[s].data = p->fwd[s]; /* a backward may have pointed some at recomputed copies */
    /* every buffer first: a failure then leaves the running statistics as they were */
    for (s = 0; s < p->nsteps; s++) {
        const struct step *stp = &m->steps[s];
        if (stp->kind == STEP_LAYER &&
            (st = bti_layer_prepare(stp->layer, &p->act[stp->in], training,
                                    stp->is_bn ? p->groups : 1)) != BT_OK)
            return st;
    }
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
            add_relu(p->fwd[stp->out], p->fwd[stp->in], p->fwd[stp->in2], p->act[stp->out].numel,
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

/* want_dx 0: the input's gradient is not computed even where the plan has room for it. */
static bt_status run_backward(bt_model *m, struct plan *p, int want_dx)
{
    int s, k;
    bt_status st = BT_OK;
    for (s = p->nsteps - 1; s >= 0 && st == BT_OK; s--) {
        const struct step *stp = &m->steps[s];
        const struct bstep *b = &p->bw[s];
        const int gout = grad_out(m, s, p->nsteps);
        struct bt_tensor dy;
        if (gout < 0)
            continue;
        for (k = 0; k < 2; k++)
            if (b->rec[k] >= 0) { /* a fused ReLU's output, again: its forward copy is gone */
                struct bt_tensor *a = &p->act[b->rec[k]];
                a->data = p->rec[b->rec[k]];
                bti_layer_batchnorm_output(m->steps[b->rec_bn[k]].layer, a, 1);
            }
        dy = gview(p, gout, p->vptr[b->dy]);
        if (stp->kind == STEP_LAYER) {
            /* the fused ReLU's output, the mask of its BatchNorm's backward */
            const struct bt_tensor *mask = gout != stp->out ? &p->act[gout] : NULL;
            if (b->dx == NO_VAL || (stp->in == 0 && !want_dx)) {
                st = layer_backward(stp->layer, &dy, NULL, mask);
            } else {
                struct bt_tensor dx = gview(p, stp->in, p->vptr[b->dx]);
                st = layer_backward(stp->layer, &dy, &dx, mask);
                if (b->acc != NO_VAL)
                    add_into(p->vptr[b->acc], dx.data, dx.numel, m->threads);
            }
        } else {
            const int64_t cnt = p->act[stp->out].numel;
            if (b->skip != NO_VAL) {
                mask_relu_copy(dy.data, p->vptr[b->skip], p->fwd[stp->out], cnt, m->threads);
            } else {
                mask_relu(dy.data, p->fwd[stp->out], cnt, m->threads);
                add_into(p->vptr[b->acc2], dy.data, cnt, m->threads);
            }
            if (b->acc != NO_VAL)
                add_into(p->vptr[b->acc], dy.data, cnt, m->threads);
        }
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
    bti_buffer_release(&m->gsave);
    plan_release(&m->train);
    plan_release(&m->eval);
    bti_free(m->layers);
    bti_free(m->layer_prefix);
    bti_free(m->options);
    bti_free(m->steps);
    bti_free(m->tensor_name);
    bti_free(m->tensor_value);
    bti_free(m->tensor_grad);
    bti_free(m);
}

const char *bti_model_options(const bt_model *m) { return m->options; }

int bti_model_level(const bt_model *m) { return m->level; }

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
    m = bti_calloc(1, sizeof *m);
    if (!m)
        return bti_fail(BT_E_NOMEM, "bt_model_create: out of memory");
    m->threads = bti_threads_resolve(cfg);
    m->level = level;
    m->in_channels = a.in_channels;
    m->arch_none = a.none;
    m->in_ndim = a.none ? 2 : 4;
    st = bti_config_lines(cfg, "model.", NULL, "bt_model_create", &m->options);
    if (st == BT_OK && (st = build(m, &a, (uint64_t)seed)) == BT_OK)
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
        if (m->arch_none && (x[v]->ndim != 2 || x[v]->shape[1] != m->feature_dim))
            return bti_fail(BT_E_SHAPE, "%s: x[%d] is %s; expected [N, %lld] (model.arch none: "
                            "the input is the features)", fn, (int)v,
                            bti_shape_str(x[v], a, sizeof a), (long long)m->feature_dim);
        if (!m->arch_none && (x[v]->ndim != 4 || x[v]->shape[1] != m->in_channels))
            return bti_fail(BT_E_SHAPE, "%s: x[%d] is %s; expected [N, %lld, H, W]", fn, (int)v,
                            bti_shape_str(x[v], a, sizeof a), (long long)m->in_channels);
        if (!bti_tensor_has_shape(x[v], m->in_ndim, x[0]->shape))
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
        float *rows = m->train.fwd[m->act_features] + (size_t)v * (size_t)batch * (size_t)m->feature_dim;
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

/* The steps a training forward of this mode runs, and the width of its outputs. */
static int mode_steps(const bt_model *m, int mode)
{
    return mode == MODE_BACKBONE ? m->backbone_steps : m->nsteps;
}

static int64_t mode_width(const bt_model *m, int mode)
{
    return mode == MODE_BACKBONE ? m->feature_dim : m->embed_dim;
}

/* Everything a training forward checks, and its plan; min_batch: per view. The
 * input's gradient is planned for the backbone (bt_model_backward_backbone's dx)
 * and for arch none (bt_model_input_grad), where it costs one GEMM. */
static bt_status prepare_forward(bt_model *m, int mode, int32_t nviews, const bt_tensor *const *x,
                                 bt_tensor *const *z, int64_t min_batch, const char *fn)
{
    const int nsteps = mode_steps(m, mode);
    int64_t in_shape[4] = {0, 0, 0, 0};
    bt_status st;
    if (nviews < 1 || nviews > MAX_VIEWS)
        return bti_fail(BT_E_INVALID_ARG, "%s: nviews is %d; it must be 1 to %d", fn, (int)nviews,
                        MAX_VIEWS);
    if ((st = check_views(m, fn, nviews, x, (const bt_tensor *const *)z,
                          mode == MODE_BACKBONE ? "features" : "z", mode_width(m, mode),
                          min_batch)) != BT_OK)
        return st;
    memcpy(in_shape, x[0]->shape, (size_t)m->in_ndim * sizeof *in_shape);
    in_shape[0] *= nviews;
    if (!m->train.ready || memcmp(in_shape, m->train.in_shape, sizeof in_shape) != 0 ||
        m->train.groups != nviews || m->train.nsteps != nsteps) {
        m->can_backward = 0; /* a new plan drops the cached forward, even if it fails */
        m->have_features = 0;
        m->have_dx = 0;
        if ((st = plan_build(m, &m->train, nsteps, nviews, in_shape, 1,
                             mode == MODE_BACKBONE || m->arch_none, fn)) != BT_OK)
            return st;
        if ((st = make_feature_views(m, nviews, x[0]->shape[0])) != BT_OK) {
            plan_release(&m->train);
            return st;
        }
    }
    return BT_OK;
}

static void load_views(bt_model *m, int32_t nviews, const bt_tensor *const *x)
{
    const int64_t per = x[0]->numel;
    int32_t v;
    for (v = 0; v < nviews; v++)
        memcpy(m->train.fwd[0] + (size_t)v * (size_t)per, x[v]->data, (size_t)per * sizeof(float));
    m->can_backward = 0;
    m->have_features = 0;
    m->have_dx = 0;
}

/* z: the outputs of the plan's last step (the embeddings, or the features). */
static void store_embeddings(bt_model *m, int mode, int32_t nviews, int64_t batch,
                             bt_tensor *const *z)
{
    const int last = m->steps[m->train.nsteps - 1].out;
    const int64_t per = z[0]->numel;
    int32_t v;
    for (v = 0; v < nviews; v++)
        memcpy(z[v]->data, m->train.fwd[last] + (size_t)v * (size_t)per, (size_t)per * sizeof(float));
    m->nviews = nviews;
    m->batch = batch;
    m->mode = mode;
    m->can_backward = 1;
    m->have_features = 1;
}

/* Point every BatchNorm at a call's collectives (NULL: none). */
static void set_coll(bt_model *m, struct bti_coll *k)
{
    int s;
    for (s = 0; s < m->nsteps; s++)
        if (m->steps[s].is_bn)
            bti_layer_batchnorm_set_coll(m->steps[s].layer, k);
}

static bt_status forward_comm(bt_model *m, int32_t nviews, const bt_tensor *const *x,
                              bt_tensor *const *z, const char *fn)
{
    static const char *const names[] = {"nviews", "the views' height", "the views' width"};
    struct bti_coll k;
    int64_t same[3] = {nviews, 0, 0}, total = 0;
    int32_t r;
    int s;
    bt_status st = bti_coll_begin(&k, m->comm, fn);
    if (st != BT_OK)
        return st;
    st = prepare_forward(m, MODE_FULL, nviews, x, z, 1, fn);
    if (st == BT_OK) {
        same[1] = x[0]->shape[2];
        same[2] = x[0]->shape[3];
    }
    if ((st = bti_coll_agree(&k, st, st == BT_OK ? x[0]->shape[0] : 0, same, 3, names, NULL)) !=
        BT_OK)
        return st;
    for (r = 0; r < m->comm->size; r++)
        total += m->comm->counts[r];
    if (total < 2 && !k.failed) /* the same on every rank (after a failed callback the counts may
                                   be garbage: go on, the closing agreement fails the call) */
        return bti_fail(BT_E_SHAPE, "%s: the global batch is %lld per view; training needs at "
                        "least 2", fn, (long long)total);
    load_views(m, nviews, x);
    set_coll(m, &k);
    st = run_forward(m, &m->train, 1); /* its buffers were reserved with the plan */
    set_coll(m, NULL);
    st = bti_coll_agree(&k, st, 0, NULL, 0, NULL, NULL);
    for (s = 0; s < m->nsteps; s++)
        if (m->steps[s].is_bn)
            bti_layer_batchnorm_commit(m->steps[s].layer, st == BT_OK);
    if (st != BT_OK)
        return st;
    store_embeddings(m, MODE_FULL, nviews, x[0]->shape[0], z);
    return BT_OK;
}

BT_API bt_status bt_model_forward(bt_model *m, int32_t nviews, const bt_tensor *const *x,
                                  bt_tensor *const *z)
{
    static const char *fn = "bt_model_forward";
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if (m->comm)
        return forward_comm(m, nviews, x, z, fn);
    if ((st = prepare_forward(m, MODE_FULL, nviews, x, z, 2, fn)) != BT_OK)
        return st;
    load_views(m, nviews, x);
    if ((st = run_forward(m, &m->train, 1)) != BT_OK)
        return st;
    store_embeddings(m, MODE_FULL, nviews, x[0]->shape[0], z);
    return BT_OK;
}

BT_API bt_status bt_model_forward_backbone(bt_model *m, int32_t nviews, const bt_tensor *const *x,
                                           bt_tensor *const *features)
{
    static const char *fn = "bt_model_forward_backbone";
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if (m->arch_none)
        return bti_fail(BT_E_UNSUPPORTED, "%s: model.arch is none: the model has no backbone "
                        "(its input is already the features)", fn);
    if (m->comm)
        return bti_fail(BT_E_UNSUPPORTED, "%s: not available with a communicator "
                        "(bt_model_set_comm); use bt_model_forward", fn);
    if ((st = prepare_forward(m, MODE_BACKBONE, nviews, x, features, 2, fn)) != BT_OK)
        return st;
    load_views(m, nviews, x);
    if ((st = run_forward(m, &m->train, 1)) != BT_OK)
        return st;
    store_embeddings(m, MODE_BACKBONE, nviews, x[0]->shape[0], features);
    return BT_OK;
}

/* The backward of a mode-`mode` forward: dz[v] [N, width]; dx (backbone only, may be
 * NULL) [N, C, H, W] like the forward's views. */
static bt_status check_backward(const bt_model *m, int mode, int32_t nviews,
                                const bt_tensor *const *dz, const bt_tensor *const *dx,
                                const char *fn)
{
    static const char *const fwd_name[] = {"bt_model_forward", "bt_model_forward_backbone"};
    const char *dz_name = mode == MODE_BACKBONE ? "dfeatures" : "dz";
    char a[96], b[96];
    int64_t want[4];
    int32_t v;
    bt_status st;
    if (!m->can_backward)
        return bti_fail(BT_E_STATE, "%s: no training forward to differentiate (call "
                                    "%s first, once per backward; "
                                    "bt_model_encode discards it)", fn, fwd_name[mode]);
    if (m->mode != mode)
        return bti_fail(BT_E_STATE, "%s: the cached forward is %s's; its backward is %s", fn,
                        fwd_name[m->mode],
                        m->mode == MODE_BACKBONE ? "bt_model_backward_backbone"
                                                 : "bt_model_backward");
    if (nviews != m->nviews)
        return bti_fail(BT_E_SHAPE, "%s: nviews is %d but the forward had %d", fn, (int)nviews,
                        m->nviews);
    if (!dz)
        return bti_fail(BT_E_MISUSE, "%s: %s is NULL", fn, dz_name);
    want[0] = m->batch;
    want[1] = mode_width(m, mode);
    for (v = 0; v < nviews; v++) {
        char arg[32];
        snprintf(arg, sizeof arg, "%s[%d]", dz_name, (int)v);
        if ((st = bti_check(dz[v], BTI_KIND_TENSOR, fn, arg)) != BT_OK)
            return st;
        if (!bti_tensor_has_shape(dz[v], 2, want))
            return bti_fail(BT_E_SHAPE, "%s: %s[%d] is %s; expected %s", fn, dz_name, (int)v,
                            bti_shape_str(dz[v], a, sizeof a), bti_dims_str(2, want, b, sizeof b));
    }
    if (!dx)
        return BT_OK;
    memcpy(want, m->train.in_shape, sizeof want);
    want[0] = m->batch;
    for (v = 0; v < nviews; v++) {
        char arg[32];
        snprintf(arg, sizeof arg, "dx[%d]", (int)v);
        if ((st = bti_check(dx[v], BTI_KIND_TENSOR, fn, arg)) != BT_OK)
            return st;
        if (!bti_tensor_has_shape(dx[v], m->in_ndim, want))
            return bti_fail(BT_E_SHAPE, "%s: dx[%d] is %s; expected %s, the shape of x[%d]", fn,
                            (int)v, bti_shape_str(dx[v], a, sizeof a),
                            bti_dims_str(m->in_ndim, want, b, sizeof b), (int)v);
    }
    return BT_OK;
}

static void load_dz(bt_model *m, int32_t nviews, const bt_tensor *const *dz)
{
    const int64_t per = m->batch * mode_width(m, m->mode);
    int32_t v;
    for (v = 0; v < nviews; v++)
        memcpy(m->train.vptr[m->train.dz] + (size_t)v * (size_t)per, dz[v]->data,
               (size_t)per * sizeof(float));
    /* the backward reuses what it has read for the gradients that follow: one per forward */
    m->can_backward = 0;
}

/* Gradient floats of the model: the size of gsave. */
static int64_t grad_numel(const bt_model *m)
{
    int64_t n = 0;
    int i;
    for (i = 0; i < m->ntensors; i++)
        if (m->tensor_grad[i])
            n += m->tensor_grad[i]->numel;
    return n;
}

/* gsave <-> gradients: op 0 saves and zeroes, 1 adds the saved back, 2 restores them. */
static void grads_saved(bt_model *m, int op)
{
    float *g = m->gsave.p;
    int i;
    for (i = 0; i < m->ntensors; i++) {
        bt_tensor *t = m->tensor_grad[i];
        int64_t j;
        if (!t)
            continue;
        if (op == 0) {
            memcpy(g, t->data, (size_t)t->numel * sizeof *g);
            memset(t->data, 0, (size_t)t->numel * sizeof *g);
        } else if (op == 1) {
            for (j = 0; j < t->numel; j++)
                t->data[j] += g[j];
        } else {
            memcpy(t->data, g, (size_t)t->numel * sizeof *g);
        }
        g += t->numel;
    }
}

/* The gradient of the one global loss: this backward's contribution alone is summed over
 * the ranks (what was accumulated before is set aside, then added back), so neither
 * earlier gradients nor this one are counted W times. */
static bt_status backward_comm(bt_model *m, int32_t nviews, const bt_tensor *const *dz,
                               const char *fn)
{
    static const char *const names[] = {"nviews"};
    struct bti_coll k;
    const int64_t same[1] = {nviews};
    int i;
    bt_status st = bti_coll_begin(&k, m->comm, fn);
    if (st != BT_OK)
        return st;
    st = check_backward(m, MODE_FULL, nviews, dz, NULL, fn);
    if ((st = bti_coll_agree(&k, st, m->batch, same, 1, names, NULL)) != BT_OK)
        return st;
    load_dz(m, nviews, dz);
    grads_saved(m, 0);
    set_coll(m, &k);
    st = run_backward(m, &m->train, 1);
    set_coll(m, NULL);
    for (i = 0; i < m->ntensors; i++)
        if (m->tensor_grad[i])
            bti_coll_sum_f32(&k, m->tensor_grad[i]->data, m->tensor_grad[i]->numel, "gradients");
    st = bti_coll_agree(&k, st, 0, NULL, 0, NULL, NULL);
    grads_saved(m, st == BT_OK ? 1 : 2);
    m->have_dx = st == BT_OK && m->train.dx != NO_VAL;
    return st;
}

BT_API bt_status bt_model_backward(bt_model *m, int32_t nviews, const bt_tensor *const *dz)
{
    static const char *fn = "bt_model_backward";
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if (m->comm)
        return backward_comm(m, nviews, dz, fn);
    if ((st = check_backward(m, MODE_FULL, nviews, dz, NULL, fn)) != BT_OK)
        return st;
    load_dz(m, nviews, dz);
    st = run_backward(m, &m->train, 1);
    m->have_dx = st == BT_OK && m->train.dx != NO_VAL;
    return st;
}

BT_API bt_status bt_model_backward_backbone(bt_model *m, int32_t nviews,
                                            const bt_tensor *const *dfeatures,
                                            bt_tensor *const *dx)
{
    static const char *fn = "bt_model_backward_backbone";
    int32_t v;
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if ((st = check_backward(m, MODE_BACKBONE, nviews, dfeatures, (const bt_tensor *const *)dx,
                             fn)) != BT_OK)
        return st;
    load_dz(m, nviews, dfeatures);
    if ((st = run_backward(m, &m->train, dx != NULL)) != BT_OK || !dx)
        return st;
    for (v = 0; v < nviews; v++)
        memcpy(dx[v]->data, m->train.vptr[m->train.dx] + (size_t)v * (size_t)dx[v]->numel,
               (size_t)dx[v]->numel * sizeof(float));
    return BT_OK;
}

BT_API bt_status bt_model_input_grad(bt_model *m, int32_t view, bt_tensor *dx)
{
    static const char *fn = "bt_model_input_grad";
    char a[96], b[96];
    int64_t want[2];
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if (!m->arch_none)
        return bti_fail(BT_E_UNSUPPORTED, "%s: only for model.arch none; a ResNet's "
                        "bt_model_backward does not compute the image gradient (use "
                        "bt_model_forward_backbone and bt_model_backward_backbone with dx)", fn);
    if (!m->have_dx)
        return bti_fail(BT_E_STATE, "%s: no input gradient (call bt_model_backward after "
                        "bt_model_forward; a forward or bt_model_encode since discards it)", fn);
    if (view < 0 || view >= m->nviews)
        return bti_fail(BT_E_INVALID_ARG, "%s: view %d is not in [0, %d)", fn, (int)view,
                        m->nviews);
    if ((st = bti_check(dx, BTI_KIND_TENSOR, fn, "dx")) != BT_OK)
        return st;
    want[0] = m->batch;
    want[1] = m->feature_dim;
    if (!bti_tensor_has_shape(dx, 2, want))
        return bti_fail(BT_E_SHAPE, "%s: dx is %s; expected %s, the shape of view %d's input", fn,
                        bti_shape_str(dx, a, sizeof a), bti_dims_str(2, want, b, sizeof b),
                        (int)view);
    memcpy(dx->data, m->train.vptr[m->train.dx] + (size_t)view * (size_t)dx->numel,
           (size_t)dx->numel * sizeof(float));
    return BT_OK;
}

BT_API bt_status bt_model_set_comm(bt_model *m, bt_comm *c)
{
    static const char *fn = "bt_model_set_comm";
    static const char *const names[] = {"the number of model tensors", "the gradient size",
                                        "model.feature_dim", "model.embed_dim"};
    int64_t same[4];
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if (!c) {
        m->comm = NULL;
        m->can_backward = 0;
        bti_buffer_release(&m->gsave);
        return BT_OK;
    }
    if ((st = bti_check(c, BTI_KIND_COMM, fn, "c")) != BT_OK)
        return st;
    same[0] = m->ntensors;
    same[1] = grad_numel(m);
    same[2] = m->feature_dim;
    same[3] = m->embed_dim;
    st = bti_buffer_reserve(&m->gsave, (size_t)same[1] ? (size_t)same[1] : 1, sizeof(float), fn);
    if ((st = bti_comm_join_st(c, st, same, 4, names, fn)) != BT_OK)
        return st;
    m->comm = c;
    m->can_backward = 0;
    return BT_OK;
}

BT_API bt_status bt_model_features(bt_model *m, int32_t view, const bt_tensor **out)
{
    bt_status st = bti_check(m, BTI_KIND_MODEL, "bt_model_features", "m");
    if (st != BT_OK)
        return st;
    if (!out)
        return bti_fail(BT_E_MISUSE, "bt_model_features: out is NULL");
    if (!m->have_features)
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
    if (m->arch_none) { /* no backbone: the features are the input */
        m->can_backward = 0; /* as for every arch */
        m->have_features = 0;
        m->have_dx = 0;
        memcpy(features->data, x->data, (size_t)x->numel * sizeof(float));
        return BT_OK;
    }
    if (!m->eval.ready || memcmp(x->shape, m->eval.in_shape, sizeof m->eval.in_shape) != 0)
        if ((st = plan_build(m, &m->eval, m->backbone_steps, 1, x->shape, 0, 0, fn)) != BT_OK)
            return st;
    memcpy(m->eval.fwd[0], x->data, (size_t)x->numel * sizeof(float));
    m->can_backward = 0;
    m->have_features = 0;
    m->have_dx = 0;
    if ((st = run_forward(m, &m->eval, 0)) != BT_OK)
        return st;
    memcpy(features->data, m->eval.fwd[m->act_features],
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

/* ---- workspace size ------------------------------------------------------------ */

BT_API bt_status bt_model_workspace_bytes(bt_model *m, int32_t nviews, int32_t ndim,
                                          const int64_t *shape, size_t *bytes)
{
    static const char *fn = "bt_model_workspace_bytes";
    char sb[96];
    struct plan q;
    int64_t in_shape[4];
    size_t scratch = 0;
    int s, k;
    bt_status st = bti_check(m, BTI_KIND_MODEL, fn, "m");
    if (st != BT_OK)
        return st;
    if (!shape)
        return bti_fail(BT_E_MISUSE, "%s: shape is NULL", fn);
    if (!bytes)
        return bti_fail(BT_E_MISUSE, "%s: bytes is NULL", fn);
    if (nviews < 1 || nviews > MAX_VIEWS)
        return bti_fail(BT_E_INVALID_ARG, "%s: nviews is %d; it must be 1 to %d", fn, (int)nviews,
                        MAX_VIEWS);
    if (ndim != m->in_ndim)
        return bti_fail(BT_E_INVALID_ARG, m->arch_none ? "%s: ndim is %d; a view is [N, %lld]"
                                                       : "%s: ndim is %d; a view is [N, %lld, H, W]",
                        fn, (int)ndim,
                        (long long)(m->arch_none ? m->feature_dim : m->in_channels));
    for (k = 0; k < ndim; k++)
        if (shape[k] < 1 || shape[k] > ((int64_t)1 << 31))
            return bti_fail(BT_E_INVALID_ARG, "%s: shape %s has a dimension outside 1 to 2^31", fn,
                            bti_dims_str(ndim, shape, sb, sizeof sb));
    if (shape[1] != (m->arch_none ? m->feature_dim : m->in_channels) || shape[0] < 2)
        return bti_fail(BT_E_INVALID_ARG,
                        m->arch_none ? "%s: shape %s; a view is [N, %lld] with N >= 2 for training"
                                     : "%s: shape %s; a view is [N, %lld, H, W] with N >= 2 for "
                                       "training",
                        fn, bti_dims_str(ndim, shape, sb, sizeof sb),
                        (long long)(m->arch_none ? m->feature_dim : m->in_channels));
    memset(in_shape, 0, sizeof in_shape);
    memcpy(in_shape, shape, (size_t)ndim * sizeof *in_shape);
    in_shape[0] *= nviews;
    memset(&q, 0, sizeof q);
    st = plan_make(m, &q, m->nsteps, nviews, in_shape, 1, m->arch_none, 0, fn);
    /* the shared scratch: the most any layer's preparation asks for */
    for (s = 0; s < m->nsteps && st == BT_OK; s++) {
        const struct step *stp = &m->steps[s];
        const int e = exec_step(m, s, m->nsteps);
        size_t need;
        if (stp->kind != STEP_LAYER || e < 0)
            continue;
        st = bti_layer_scratch_bytes(stp->layer, &q.act[stp->in], 1, stp->is_bn ? nviews : 1,
                                     &need, fn);
        if (need > scratch)
            scratch = need;
    }
    if (st == BT_OK)
        *bytes = q.arena_bytes + scratch;
    else if (st == BT_E_SHAPE) /* the shape is an argument here, not a tensor */
        st = bti_fail(BT_E_INVALID_ARG, "%s", bt_last_error());
    plan_release(&q);
    return st;
}

size_t bti_model_workspace_reserved(const bt_model *m)
{
    return (m->train.ready ? m->train.arena_bytes : 0) + m->scratch.bytes;
}
