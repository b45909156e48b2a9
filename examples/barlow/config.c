/* config.c - the library options of a run: per-dataset presets, config files
 * (name=value lines, read and written), --set. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-dataset presets, applied before the config file and --set.
 * Fashion-MNIST's was chosen by measuring short runs (docs/results.md): 16 px
 * crops train 3x faster than 28 px at equal accuracy; a 256-wide last stage
 * (after narrow early ones, for more steps in the budget), a 2048 projector
 * and a learning rate far above ImageNet's 0.2 each helped, since a 10-minute
 * run has about a thousand steps, not hundreds of thousands. */
static const char *const preset_fmnist[][2] = {
    {"model.arch", "resnet"},       {"model.block", "basic"},      {"model.blocks", "1-1-1"},
    {"model.widths", "16-32-256"},  {"model.stem", "cifar"},       {"model.in_channels", "1"},
    {"model.projector", "2048-2048-2048"}, {"aug.preset", "fmnist"}, {"aug.size", "16"},
    {"optim.kind", "lars"},         {"optim.batch_size", "128"},   {"optim.lr", "4"},
    {"optim.lr_bias", "0.096"},     {"optim.weight_decay", "1e-5"}, {"loss.lambda", "0.0051"},
    {NULL, NULL}};

static const char *const preset_cifar10[][2] = {
    {"model.arch", "resnet18"},     {"model.stem", "cifar"},       {"model.in_channels", "3"},
    {"model.projector", "2048-2048-2048"}, {"model.projector_bias", "1"}, {"aug.preset", "cifar"},
    {"optim.kind", "lars"},         {"optim.lars_variant", "solo"}, {"optim.eta", "0.02"},
    {"optim.batch_size", "256"},    {"optim.lr", "0.3"},           {"optim.lr_bias", "0.3"},
    {"optim.weight_decay", "1e-4"}, {"loss.scale", "0.1"},         {NULL, NULL}};

static const char *const preset_folder[][2] = {
    {"model.arch", "resnet18"},     {"model.stem", "imagenet"},    {"model.in_channels", "3"},
    {"model.projector", "2048-2048-2048"}, {"aug.preset", "imagenet"}, {"aug.size", "96"},
    {"optim.kind", "lars"},         {"optim.batch_size", "128"},   {NULL, NULL}};

void cfg_set(bt_config *c, const char *name, const char *value, const char *where)
{
    if (bt_config_set(c, name, value) != BT_OK)
        die("%s%s%s", where ? where : "", where ? ": " : "", bt_last_error());
}

void cfg_get(const bt_config *c, const char *name, char *buf, size_t cap)
{
    if (bt_config_get(c, name, buf, cap) != BT_OK)
        fail("%s", bt_last_error());
}

int64_t cfg_int(const bt_config *c, const char *name)
{
    char buf[64];
    cfg_get(c, name, buf, sizeof buf);
    return strtoll(buf, NULL, 10);
}

double cfg_real(const bt_config *c, const char *name)
{
    char buf[64];
    cfg_get(c, name, buf, sizeof buf);
    return strtod(buf, NULL);
}

void cfg_apply_preset(bt_config *c, const char *kind)
{
    const char *const(*p)[2] = !strcmp(kind, "fmnist") ? preset_fmnist
                               : !strcmp(kind, "cifar10") ? preset_cifar10 : preset_folder;
    for (; (*p)[0]; p++)
        cfg_set(c, (*p)[0], (*p)[1], "preset");
}

int cfg_read_file(bt_config *c, const char *path, char *err, size_t cap)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int ln = 0;
    if (!f) {
        snprintf(err, cap, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *s = line, *e, *eq;
        ln++;
        while (*s == ' ' || *s == '\t')
            s++;
        e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = 0;
        if (!*s || *s == '#')
            continue;
        eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, cap, "%s:%d: '%s' is not name=value", path, ln, s);
            fclose(f);
            return -1;
        }
        e = eq;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        *e = 0;
        eq++;
        while (*eq == ' ' || *eq == '\t')
            eq++;
        if (bt_config_set(c, s, eq) != BT_OK) {
            snprintf(err, cap, "%s:%d: %s", path, ln, bt_last_error());
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

void cfg_load_file(bt_config *c, const char *path)
{
    char err[PATH_CAP + 1024];
    if (cfg_read_file(c, path, err, sizeof err) != 0)
        die("%s", err);
}

void cfg_apply_sets(bt_config *c, const struct args *a)
{
    int i;
    for (i = 0; i < a->nsets; i++) {
        char name[256];
        const char *eq = strchr(a->sets[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - a->sets[i]), a->sets[i]);
        cfg_set(c, name, eq + 1, "--set");
    }
}

void cfg_write_file(const bt_config *c, const char *path)
{
    char tmp[PATH_CAP + 32], val[1024], shared[1024], vname[256];
    int32_t i, n = bt_config_option_count();
    FILE *f = atomic_open(path, tmp, sizeof tmp);
    fprintf(f, "# libbarlow %s options of this run (name=value; barlow --config reads it)\n",
            bt_version_string());
    for (i = 0; i < n; i++) {
        const char *name;
        int v;
        if (bt_config_option(i, &name, NULL, NULL, NULL, NULL) != BT_OK)
            fail("%s", bt_last_error());
        if (bt_config_is_set(c, name) == 1) {
            cfg_get(c, name, val, sizeof val);
            fprintf(f, "%s=%s\n", name, val);
        }
        if (strncmp(name, "aug.", 4) != 0 || !strcmp(name, "aug.preset"))
            continue;
        cfg_get(c, name, shared, sizeof shared);
        for (v = 1; v <= 2; v++) {
            snprintf(vname, sizeof vname, "aug.view%d.%s", v, name + 4);
            if (bt_config_is_set(c, vname) != 1)
                continue;
            cfg_get(c, vname, val, sizeof val);
            if (strcmp(val, shared) != 0 || bt_config_is_set(c, name) != 1)
                fprintf(f, "%s=%s\n", vname, val);
        }
    }
    atomic_close(f, tmp, path);
}
