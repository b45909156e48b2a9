"""PyTorch twin of bench_layers.c: the same layers at the same shapes, forward +
backward (input gradient and parameter gradients), median milliseconds.

Usage: bench_layers.py --serve THREADS, as bench_layers.c runs it: prints
"ready VERSION", then reads lines "CASE REPS" and answers each with "CASE ms",
the median of REPS calls after one untimed call. The case's module and tensors are kept until another
case comes; REPS 0 makes them and runs one warm-up call.
CASE is the C benchmark's description "kind:args" (conv:N,C,H,W,Co,k,s,p
bn:N,C,H,W  bnrelu:N,C,H,W  relu:N,C,H,W  maxpool:N,C,H,W,k,s,p  avgpool:N,C,H,W
linear:N,in,out)."""
import sys
import time

import torch
import torch.nn as nn


def build(case):
    kind, args = case.split(":")
    a = [int(v) for v in args.split(",")]
    if kind == "conv":
        n, c, h, w, co, k, s, p = a
        return nn.Conv2d(c, co, k, stride=s, padding=p, bias=False), (n, c, h, w)
    if kind == "bn":
        n, c, h, w = a
        if h * w == 1:
            return nn.BatchNorm1d(c), (n, c)
        return nn.BatchNorm2d(c), (n, c, h, w)
    if kind == "bnrelu":
        n, c, h, w = a
        return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()), (n, c, h, w)
    if kind == "relu":
        return nn.ReLU(), tuple(a)
    if kind == "maxpool":
        n, c, h, w, k, s, p = a
        return nn.MaxPool2d(k, s, p), (n, c, h, w)
    if kind == "avgpool":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), tuple(a)
    if kind == "linear":
        n, fin, fout = a
        return nn.Linear(fin, fout, bias=True), (n, fin)
    raise ValueError(case)


class Case:
    def __init__(self, case):
        self.m, shape = build(case)
        self.m.train()
        self.x = torch.randn(*shape, requires_grad=True)
        self.dy = torch.randn_like(self.m(self.x))
        self.call()

    def call(self):
        t0 = time.perf_counter()
        y = self.m(self.x)
        y.backward(self.dy)
        return time.perf_counter() - t0


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "--serve":
        sys.exit(__doc__)
    torch.set_num_threads(int(sys.argv[2]))
    torch.manual_seed(0)
    print("ready", torch.__version__, flush=True)
    name, current = None, None
    for line in sys.stdin:
        case, reps = line.split()
        if case != name:
            name, current = case, Case(case)
        if int(reps) > 0:
            current.call()  # wakes the threads, as bench_layers.c does before its timed call
        times = sorted(current.call() for _ in range(int(reps)))
        ms = 1e3 * times[len(times) // 2] if times else 0.0
        print("%s %.4f" % (case, ms), flush=True)


if __name__ == "__main__":
    main()
