"""PyTorch twin of bench_model.c: one training step (two views through the network
separately as the official code does, backward of sum(z * dz)) for the same models.
Prints one line per case: name batch threads images_per_s peak_mb, where peak_mb is
the high-water RSS minus the RSS just before the model was created (as bench_model.c)."""
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
import torch  # noqa: E402
from torchvision.models.resnet import BasicBlock  # noqa: E402

from gen_model import Net  # noqa: E402

CASES = {
    "small": (BasicBlock, [1, 1, 1], [16, 32, 64], 1, [512, 512, 512], 28),
    "cifar18": (BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], 3, [2048, 2048], 32),
}


def status_mb(field):
    """A field of /proc/self/status ("VmRSS", "VmHWM") in MB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def run(name, batch, threads, reps):
    torch.set_num_threads(threads)
    block, blocks, widths, ch, proj, hw = CASES[name]
    base = status_mb("VmRSS")
    net = Net(block, blocks, widths, ch, True, proj)
    net.train()
    xs = [torch.randn(batch, ch, hw, hw) for _ in range(2)]
    dzs = [torch.randn(batch, proj[-1]) * 0.01 for _ in range(2)]
    times = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        net.zero_grad(set_to_none=False)
        total = 0
        for v in range(2):
            _, z = net(xs[v])
            total = total + (z * dzs[v]).sum()
        total.backward()
        if r:
            times.append(time.perf_counter() - t0)
    times.sort()
    t = times[len(times) // 2]
    peak = status_mb("VmHWM")
    if peak is None or base is None:  # no /proc: the whole process
        peak, base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 0.0
    peak -= base
    print("%s %d %d %.2f %.0f" % (name, batch, threads, batch / t, peak), flush=True)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
