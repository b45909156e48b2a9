/* run_state.c - run.txt: what `barlow pretrain` records about a run beside its
 * checkpoint (dataset, schedule length, kNN subsets), read by --resume, eval and embed. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

void run_write(const struct run *r, const char *path)
{
    char tmp[PATH_CAP + 32];
    FILE *f = atomic_open(path, tmp, sizeof tmp);
    fprintf(f, "# barlow pretrain run state (read by --resume, eval and embed)\n");
    fprintf(f, "dataset=%s\ndata=%s\nlimit=%lld\nbatch=%lld\ntotal_steps=%lld\nsteps_per_epoch=%lld\n"
               "knn_bank=%lld\nknn_test=%lld\neval_size=%lld\n",
            r->dataset, r->data, (long long)r->limit, (long long)r->batch, (long long)r->total_steps,
            (long long)r->steps_per_epoch, (long long)r->knn_bank, (long long)r->knn_test,
            (long long)r->eval_size);
    atomic_close(f, tmp, path);
}

int run_read(struct run *r, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[PATH_CAP + 64];
    int ln = 0, have = 0;
    memset(r, 0, sizeof *r);
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        char *eq, *e;
        ln++;
        e = line + strlen(line);
        while (e > line && (e[-1] == '\n' || e[-1] == '\r'))
            *--e = 0;
        if (!line[0] || line[0] == '#')
            continue;
        eq = strchr(line, '=');
        if (!eq)
            die("%s:%d: malformed line", path, ln);
        *eq++ = 0;
        if (!strcmp(line, "dataset"))
            snprintf(r->dataset, sizeof r->dataset, "%s", eq), have |= 1;
        else if (!strcmp(line, "data"))
            snprintf(r->data, sizeof r->data, "%s", eq), have |= 2;
        else if (!strcmp(line, "limit"))
            r->limit = parse_int(path, eq, 0, INT32_MAX);
        else if (!strcmp(line, "batch"))
            r->batch = parse_int(path, eq, 2, 1000000), have |= 4;
        else if (!strcmp(line, "total_steps"))
            r->total_steps = parse_int(path, eq, 1, INT64_MAX / 2), have |= 8;
        else if (!strcmp(line, "steps_per_epoch"))
            r->steps_per_epoch = parse_int(path, eq, 1, INT64_MAX / 2), have |= 16;
        else if (!strcmp(line, "knn_bank"))
            r->knn_bank = parse_int(path, eq, 0, INT32_MAX);
        else if (!strcmp(line, "knn_test"))
            r->knn_test = parse_int(path, eq, 0, INT32_MAX);
        else if (!strcmp(line, "eval_size"))
            r->eval_size = parse_int(path, eq, 0, 4096);
        else
            die("%s:%d: unknown key '%s'", path, ln, line);
    }
    fclose(f);
    if (have != 31)
        die("%s: incomplete run state (dataset, data, batch, total_steps, steps_per_epoch)", path);
    return 1;
}
