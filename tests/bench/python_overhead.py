"""Per-call overhead of the barlow Python package: loss forward + backward at
N=256, D=2048 (and at a tiny N=4, D=8, where the arithmetic is negligible so
the difference is the overhead itself), timed three ways, medians in µs:

  python   barlow.Loss.forward(za, zb) + barlow.Loss.backward()  (new output arrays)
  py-out   the same with out= arrays given (no allocation)
  ctypes   the declared C functions called directly through ctypes on tensors made once
  C        a small C program doing the same calls (compiled with cc when there is one)

    /usr/bin/python3 tests/bench/python_overhead.py BUILD_DIR [reps]

Not a test. Threads: BT_NUM_THREADS, else all cores (the same for all three)."""
import ctypes
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.dont_write_bytecode = True  # leave no __pycache__ in the source folder
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "libbarlow", "python"))  # the source, uninstalled
import barlow  # noqa: E402
from barlow import _lib  # noqa: E402

C_SOURCE = r"""
#include <barlow.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    int64_t n = atoll(argv[1]), d = atoll(argv[2]), shape[2] = {n, d}, i; int reps = atoi(argv[3]), r;
    bt_loss *loss; bt_tensor *za, *zb, *ga, *gb; double v, *t = malloc(sizeof(double) * reps);
    if (bt_loss_create(&loss, NULL) || bt_tensor_create(&za, 2, shape) || bt_tensor_create(&zb, 2, shape) ||
        bt_tensor_create(&ga, 2, shape) || bt_tensor_create(&gb, 2, shape)) { fprintf(stderr, "%s\n", bt_last_error()); return 1; }
    for (i = 0; i < n * d; i++) { bt_tensor_data(za)[i] = (float)((i * 7919) % 1000) / 1000.0f; bt_tensor_data(zb)[i] = (float)((i * 104729) % 997) / 997.0f; }
    for (r = -3; r < reps; r++) {
        double t0 = now();
        if (bt_loss_forward(loss, za, zb, &v) || bt_loss_backward(loss, ga, gb)) { fprintf(stderr, "%s\n", bt_last_error()); return 1; }
        if (r >= 0) t[r] = now() - t0;
    }
    qsort(t, reps, sizeof *t, cmp);
    printf("%.3f\n", t[reps / 2] * 1e6);
    return 0;
}
"""


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def c_median(build, n, d, reps, tmp):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    exe = os.path.join(tmp, "overhead_c")
    if not os.path.exists(exe):
        src = os.path.join(tmp, "overhead.c")
        open(src, "w").write(C_SOURCE)
        inc = os.path.join(HERE, "..", "..", "include")
        r = subprocess.run([cc, "-O2", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-I", inc, src, "-o", exe,
                            "-L", build, "-Wl,-rpath," + build, "-l:libbarlow.so.0"],
                           capture_output=True, text=True)
        if r.returncode:
            print("  (C build failed: %s)" % r.stderr.strip()[:200])
            return None
    r = subprocess.run([exe, str(n), str(d), str(reps)], capture_output=True, text=True)
    return float(r.stdout) if r.returncode == 0 else None


def measure(n, d, reps):
    rng = np.random.default_rng(0)
    za = rng.standard_normal((n, d)).astype(np.float32)
    zb = (za + 0.5 * rng.standard_normal((n, d))).astype(np.float32)
    out = (np.empty_like(za), np.empty_like(zb))
    lib = _lib.lib()
    loss = barlow.Loss()
    ta, tb = barlow.Tensor.from_numpy(za), barlow.Tensor.from_numpy(zb)
    ga, gb = barlow.Tensor.from_numpy(out[0]), barlow.Tensor.from_numpy(out[1])
    h, pa, pb, pga, pgb = loss._p, ta._p, tb._p, ga._p, gb._p
    value = ctypes.c_double()
    ref = ctypes.byref(value)
    fwd, bwd = lib.bt_loss_forward, lib.bt_loss_backward

    def python():
        loss.forward(za, zb)
        loss.backward()

    def py_out():
        loss.forward(za, zb)
        loss.backward(out=out)

    def raw():
        fwd(h, pa, pb, ref)
        bwd(h, pga, pgb)

    runs = [("python", python), ("py-out", py_out), ("ctypes", raw)]
    times = {k: [] for k, _ in runs}
    for r in range(reps + 3):
        # interleaved, in a rotating order, so drift and cache effects hit all alike
        for k, f in runs[r % 3:] + runs[:r % 3]:
            t0 = time.perf_counter()
            f()
            dt = time.perf_counter() - t0
            if r >= 3:
                times[k].append(dt)
    loss.close()
    return {k: statistics.median(v) * 1e6 for k, v in times.items()}


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    build = os.path.abspath(sys.argv[1])
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    barlow.load_library(os.path.join(build, "libbarlow.so.0"))
    print("CPU: %s (%d logical cores)" % (cpu_model(), os.cpu_count() or 0))
    print("library: %s" % barlow.build_info())
    print("python: %s %s, numpy %s; BT_NUM_THREADS=%s" % (platform.python_implementation(),
          platform.python_version(), np.__version__, os.environ.get("BT_NUM_THREADS", "(unset: all cores)")))
    print("loss forward + backward, median of %d, microseconds:" % reps)
    print("%-12s %10s %10s %10s %10s   %s" % ("N x D", "python", "py-out", "ctypes", "C",
                                            "python-ctypes  ctypes-C"))
    with tempfile.TemporaryDirectory() as tmp:
        for n, d, r in ((4, 8, max(reps, 2000)), (256, 2048, reps)):
            m = measure(n, d, r)
            c = c_median(build, n, d, r, tmp)
            print("%-12s %10.1f %10.1f %10.1f %10s   %8.1f  %10s" % (
                "%d x %d" % (n, d), m["python"], m["py-out"], m["ctypes"],
                "%.1f" % c if c is not None else "n/a", m["python"] - m["ctypes"],
                "%.1f" % (m["ctypes"] - c) if c is not None else "n/a"))


if __name__ == "__main__":
    main()
