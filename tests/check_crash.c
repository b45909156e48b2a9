/* check_crash.c - crash safety of bt_checkpoint_save: SIGKILL at random points
 * of a save, a full disk (RLIMIT_FSIZE), and the clean-up of the temporaries
 * that killed savers leave behind.
 *
 * The savers are fork()ed children. libgomp does not survive fork: a child
 * that enters an OpenMP region after its parent ran one can wait forever for
 * threads that were not copied. So the children only change tensor values
 * with plain loops and call bt_checkpoint_save, which runs no OpenMP region
 * (it only gathers pointers and writes); the models use "threads" 1 too.
 * Every child leaves with _exit, so no Check or atexit code runs twice.
 *
 * BT_CRASH_STATS=1 prints how the kills landed (stderr). */
#include "barlow.h"

#include "fixtures.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILLS 300

static const char *const small[] = {"model.arch", "resnet", "model.blocks", "1-1",
                                    "model.widths", "8-16", "model.stem", "cifar",
                                    "model.in_channels", "1", "model.projector", "32-16",
                                    "threads", "1", NULL};

static bt_model *make(const char *seed)
{
    const char *const more[] = {"seed", seed, NULL};
    return test_model(small, more);
}

static float *values(bt_model *m, int32_t t, int64_t *n)
{
    bt_tensor *v;
    bt_model_tensor(m, t, NULL, &v, NULL);
    *n = bt_tensor_numel(v);
    return bt_tensor_data(v);
}

/* dst = src + k, element by element (integers stay integers, so the int64
 * num_batches_tracked stays exact); no OpenMP, safe in a forked child. */
static void shifted(bt_model *dst, bt_model *src, int k)
{
    int32_t t;
    int64_t n, i;
    for (t = 0; t < bt_model_tensor_count(src); t++) {
        const float *s = values(src, t, &n);
        float *d = values(dst, t, &n);
        for (i = 0; i < n; i++)
            d[i] = s[i] + (float)k;
    }
}

/* 1 when every tensor of a and b is bit-identical. */
static int same_tensors(bt_model *a, bt_model *b)
{
    int32_t t;
    int64_t na, nb;
    for (t = 0; t < bt_model_tensor_count(a); t++) {
        const float *x = values(a, t, &na), *y = values(b, t, &nb);
        if (na != nb || memcmp(x, y, (size_t)na * sizeof *x) != 0)
            return 0;
    }
    return 1;
}

/* Loads path into a fresh model and tells whether it equals a (1), b (2), or neither (0). */
static int load_matches(const char *p, bt_model *a, bt_model *b)
{
    bt_model *f = make("9");
    int r;
    ck_assert_msg(bt_checkpoint_load(p, f, NULL, NULL) == BT_OK, "%s", bt_last_error());
    r = same_tensors(f, a) ? 1 : b && same_tensors(f, b) ? 2 : 0;
    bt_model_free(f);
    return r;
}

/* Entries of test_dir whose name contains ".tmp." (and then "<pid>." when pid > 0). */
static int count_temps_of(pid_t pid)
{
    DIR *d = opendir(test_dir);
    struct dirent *de;
    char tail[32];
    int n = 0;
    ck_assert_ptr_nonnull(d);
    snprintf(tail, sizeof tail, ".tmp.%ld.", (long)pid);
    while ((de = readdir(d)) != NULL)
        n += strstr(de->d_name, pid > 0 ? tail : ".tmp.") != NULL;
    closedir(d);
    return n;
}

static int count_temps(void) { return count_temps_of(0); }

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void touch(const char *p)
{
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
}

/* The pid of a process that has exited and been reaped. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    return pid;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A child that saves next = base + k over p, killed after delay seconds
 * (delay < 0: not killed). Returns its wait status; *child its pid. */
static int save_in_child(const char *p, bt_model *next, bt_model *base, int k, double delay,
                         pid_t *child)
{
    int status;
    pid_t pid = *child = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        shifted(next, base, k);
        _exit(bt_checkpoint_save(p, next, NULL, NULL) == BT_OK ? 0 : 1);
    }
    if (delay >= 0) {
        struct timespec ts = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

START_TEST(sigkill_during_save_leaves_a_whole_checkpoint)
{
    const char *p = test_path("m.safetensors");
    bt_model *base = make("0"), *prev = make("0"), *next = make("0");
    double t_save, t_first, probe[5];
    int i, before = 0, in_write = 0, after = 0, completed = 0, left = 0, status;
    pid_t pid;
    unsigned seed = 12345;
    char stale[160];

    /* T: the median of five unkilled children, from fork to exit, saving over p */
    for (i = 0; i < 5; i++) {
        double t0 = now();
        status = save_in_child(p, next, base, 1, -1, &pid);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        probe[i] = now() - t0;
    }
    qsort(probe, 5, sizeof probe[0], cmp_double);
    t_save = t_first = probe[2];
    ck_assert_msg(bt_checkpoint_save(p, prev, NULL, NULL) == BT_OK, "%s", bt_last_error());
    for (i = 1; i <= KILLS; i++) {
        const double delay = t_save * rand_r(&seed) / RAND_MAX;
        int got;
        status = save_in_child(p, next, base, i, delay, &pid);
        shifted(next, base, i); /* what the child wrote, if it got that far */
        got = load_matches(p, prev, next);
        ck_assert_msg(got != 0, "kill %d after %.6f s: the checkpoint is neither the old one"
                      " nor the new one", i, delay);
        if (WIFEXITED(status)) {
            ck_assert_int_eq(WEXITSTATUS(status), 0);
            ck_assert_int_eq(got, 2);
            completed++;
        } else {
            ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
            got == 1 ? before++ : after++;
            in_write += got == 1 && count_temps_of(pid) > 0;
        }
        if (got == 2)
            shifted(prev, base, i);
        /* fsync times vary: keep T where about as many saves finish as not */
        t_save *= WIFEXITED(status) ? 0.95 : got == 1 ? 1.05 : 1.0;
        /* each save clears the dead savers' temporaries before making its own */
        ck_assert_int_le(count_temps(), 1);
    }
    ck_assert_int_gt(before, 0);
    ck_assert_int_gt(after + completed, 0);

    /* Leftovers of dead savers (one made sure of): the next save removes them all. */
    left = count_temps();
    snprintf(stale, sizeof stale, "%s.tmp.%ld.0", p, (long)dead_pid());
    touch(stale);
    ck_assert_int_gt(count_temps(), 0);
    ck_assert_msg(bt_checkpoint_save(p, prev, NULL, NULL) == BT_OK, "%s", bt_last_error());
    ck_assert_int_eq(count_temps(), 0);
    ck_assert_int_eq(load_matches(p, prev, NULL), 1);
    if (getenv("BT_CRASH_STATS"))
        fprintf(stderr, "crash: %d kills within T = %.2f ms (%.2f at the end): %d before the"
                " rename (%d leaving a partial temporary), %d after, %d saves completed; %d"
                " temporary left\n", KILLS, 1e3 * t_first, 1e3 * t_save, before, in_write, after,
                completed, left);
    bt_model_free(base);
    bt_model_free(prev);
    bt_model_free(next);
}
END_TEST

START_TEST(full_disk_fails_with_the_path_and_keeps_the_old_file)
{
    const char *p = test_path("m.safetensors");
    bt_model *m = make("0"), *other = make("1");
    struct stat sb;
    int k;

    ck_assert_int_eq(bt_checkpoint_save(p, m, NULL, NULL), BT_OK);
    ck_assert_int_eq(stat(p, &sb), 0);
    for (k = 0; k < 2; k++) {
        /* nothing fits, then a cut in the middle of the tensors */
        const rlim_t limit = k == 0 ? 0 : (rlim_t)sb.st_size / 2;
        char msg[600] = "";
        int fds[2], status;
        ssize_t len;
        pid_t pid;
        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) { /* the limit stays in the child */
            struct rlimit rl = {limit, limit};
            bt_status st;
            const char *e;
            close(fds[0]);
            signal(SIGXFSZ, SIG_IGN);
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
                _exit(3);
            st = bt_checkpoint_save(p, other, NULL, NULL);
            e = bt_last_error();
            if (write(fds[1], e, strlen(e)) < 0)
                _exit(4);
            _exit(st == BT_E_IO ? 0 : 1);
        }
        close(fds[1]);
        len = read(fds[0], msg, sizeof msg - 1);
        msg[len > 0 ? len : 0] = '\0';
        close(fds[0]);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "limit %ld: status %d, message: %s", (long)limit, status, msg);
        ck_assert_msg(strstr(msg, p) && strstr(msg, strerror(EFBIG)), "message: %s", msg);
        ck_assert_int_eq(load_matches(p, m, NULL), 1);
        ck_assert_int_eq(count_temps(), 0);
    }
    bt_model_free(m);
    bt_model_free(other);
}
END_TEST

START_TEST(temporaries_of_live_savers_and_other_files_are_kept)
{
    const char *p = test_path("m.safetensors");
    bt_model *m = make("0");
    char live[160], dead[160], other[160], odd[160];
    const long gone = (long)dead_pid();
    snprintf(live, sizeof live, "%s.tmp.%ld.7", p, (long)getpid());
    snprintf(dead, sizeof dead, "%s.tmp.%ld.3", p, gone);
    snprintf(other, sizeof other, "%s.tmp.%ld.3", test_path("n.safetensors"), gone);
    snprintf(odd, sizeof odd, "%s.tmp.%ld.3x", p, gone);
    touch(live);
    touch(dead);
    touch(other);
    touch(odd);
    ck_assert_msg(bt_checkpoint_save(p, m, NULL, NULL) == BT_OK, "%s", bt_last_error());
    ck_assert(exists(live));  /* its process may be saving */
    ck_assert(!exists(dead)); /* a saver killed */
    ck_assert(exists(other)); /* another destination's */
    ck_assert(exists(odd));   /* not a name the writer makes */
    ck_assert_int_eq(load_matches(p, m, NULL), 1);
    bt_model_free(m);
}
END_TEST

Suite *crash_suite(void)
{
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sigkill_during_save_leaves_a_whole_checkpoint);
    tcase_add_test(tc, full_disk_fails_with_the_path_and_keeps_the_old_file);
    tcase_add_test(tc, temporaries_of_live_savers_and_other_files_are_kept);
    suite_add_tcase(s, tc);
    return s;
}
