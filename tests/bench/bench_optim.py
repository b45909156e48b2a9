"""PyTorch twin of bench_optim.c: median ms of one optimizer step over
torchvision ResNet-50's parameters (fc removed). Prints one number.
usage: bench_optim.py lars|sgd|adamw threads"""
import sys
import time

import torch
import torchvision


class OfficialLARS(torch.optim.Optimizer):
    """barlowtwins main.py LARS, biases and BN excluded."""

    def __init__(self, params, lr, weight_decay=1e-6, momentum=0.9, eta=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      eta=eta))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if p.ndim != 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.,
                                    torch.where(update_norm > 0,
                                                (g["eta"] * param_norm / update_norm), one), one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


def main():
    kind, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    model = torchvision.models.resnet50()
    model.fc = torch.nn.Identity()
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    w = [p for p in params if p.ndim != 1]
    b = [p for p in params if p.ndim == 1]
    if kind == "lars":
        opt = OfficialLARS([{"params": w}, {"params": b}], lr=0.1)
    elif kind == "sgd":
        opt = torch.optim.SGD([{"params": w, "weight_decay": 1e-6}, {"params": b}], lr=0.1,
                              momentum=0.9)
    else:
        opt = torch.optim.AdamW([{"params": w, "weight_decay": 1e-6},
                                 {"params": b, "weight_decay": 0.0}], lr=0.1)
    opt.step()
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t0)
    times.sort()
    print("%.3f" % (1e3 * times[len(times) // 2]))


if __name__ == "__main__":
    main()
