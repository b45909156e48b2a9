"""PyTorch twin of bench_loss.c: the official Barlow Twins loss (facebookresearch/
barlowtwins main.py) forward+backward in float32 on the CPU, same threads.

    /usr/bin/python3 tests/bench/bench_loss.py N D reps
prints "torch_seconds <median>" (and a note line)."""
import os
import statistics
import sys
import time

import torch

LAMBDA = 0.0051


def off_diagonal(x):
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def main():
    n, d, reps = (int(a) for a in sys.argv[1:4])
    threads = int(os.environ.get("BT_NUM_THREADS", "0")) or os.cpu_count()
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    u1 = torch.rand(n, d, generator=g) - 0.5
    z1 = u1.clone().requires_grad_()
    z2 = (u1 + 0.5 * (torch.rand(n, d, generator=g) - 0.5)).requires_grad_()
    bn = torch.nn.BatchNorm1d(d, affine=False)

    def step():
        z1.grad = None
        z2.grad = None
        c = bn(z1).T @ bn(z2)
        c.div_(n)
        on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
        off_diag = off_diagonal(c).pow_(2).sum()
        loss = on_diag + LAMBDA * off_diag
        loss.backward()
        return loss.item()

    if reps > 1:  # at the largest size one long call is the measurement
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print("  (pytorch %s, %d threads, %d reps%s)" % (torch.__version__, threads, reps,
                                                     " after one warm-up" if reps > 1 else ""))
    print("torch_seconds %.6f" % statistics.median(times))


if __name__ == "__main__":
    main()
