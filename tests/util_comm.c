/* util_comm.c - the thread harness of comm_harness.h. */
#include "comm_harness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static struct {
    int size;
    pthread_barrier_t bar;
    const void *send[HARNESS_MAX_RANKS];
    int64_t count[HARNESS_MAX_RANKS];
    int32_t dtype[HARNESS_MAX_RANKS];
} H;

static size_t esize(int32_t dtype) { return dtype ? sizeof(double) : sizeof(float); }

/* Publish; 1 when every rank passed the same count and dtype. */
static int publish(struct harness_rank *r, const void *send, int64_t count, int32_t dtype)
{
    int i, same = 1;
    H.send[r->rank] = send;
    H.count[r->rank] = count;
    H.dtype[r->rank] = dtype;
    pthread_barrier_wait(&H.bar);
    for (i = 0; i < H.size; i++)
        same &= H.count[i] == count && H.dtype[i] == dtype;
    return same;
}

static int32_t finish(struct harness_rank *r, int same)
{
    r->calls++;
    return !same || (r->fail_at && r->calls == r->fail_at);
}

int32_t harness_allreduce(void *user, void *buf, int64_t count, int32_t dtype)
{
    struct harness_rank *r = user;
    int same = publish(r, buf, count, dtype), i;
    void *sum = same ? calloc((size_t)count ? (size_t)count : 1, esize(dtype)) : NULL;
    int64_t k;
    if (sum)
        for (i = 0; i < H.size; i++) /* rank order on every rank: the same bits */
            for (k = 0; k < count; k++) {
                if (dtype)
                    ((double *)sum)[k] += ((const double *)H.send[i])[k];
                else
                    ((float *)sum)[k] += ((const float *)H.send[i])[k];
            }
    pthread_barrier_wait(&H.bar); /* everyone has read every buffer */
    if (sum)
        memcpy(buf, sum, (size_t)count * esize(dtype));
    free(sum);
    pthread_barrier_wait(&H.bar);
    return finish(r, same && (sum || !count));
}

int32_t harness_allgather(void *user, const void *send, void *recv, int64_t count, int32_t dtype)
{
    struct harness_rank *r = user;
    int same = publish(r, send, count, dtype), i;
    if (same)
        for (i = 0; i < H.size; i++)
            memcpy((char *)recv + (size_t)i * (size_t)count * esize(dtype), H.send[i],
                   (size_t)count * esize(dtype));
    pthread_barrier_wait(&H.bar);
    return finish(r, same);
}

struct job {
    struct harness_rank r;
    int (*body)(struct harness_rank *);
    int result;
};

static void *run_one(void *p)
{
    struct job *j = p;
    j->result = j->body(&j->r);
    return NULL;
}

int harness_run(int size, int gather, const int *fail_at, int (*body)(struct harness_rank *),
                void *arg)
{
    struct job jobs[HARNESS_MAX_RANKS];
    pthread_t th[HARNESS_MAX_RANKS];
    int i, bad = 0;
    if (size < 1 || size > HARNESS_MAX_RANKS)
        return 1;
    H.size = size;
    pthread_barrier_init(&H.bar, NULL, (unsigned)size);
    for (i = 0; i < size; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].r.rank = i;
        jobs[i].r.size = size;
        jobs[i].r.fail_at = fail_at ? fail_at[i] : 0;
        jobs[i].r.arg = arg;
        jobs[i].body = body;
        if (bt_comm_create(&jobs[i].r.comm, i, size, harness_allreduce, gather ? harness_allgather : NULL,
                           &jobs[i].r) != BT_OK)
            return 1;
    }
    for (i = 0; i < size; i++)
        pthread_create(&th[i], NULL, run_one, &jobs[i]);
    for (i = 0; i < size; i++) {
        pthread_join(th[i], NULL);
        bad |= jobs[i].result != 0;
        bt_comm_free(jobs[i].r.comm);
    }
    pthread_barrier_destroy(&H.bar);
    return bad;
}
