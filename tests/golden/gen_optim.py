"""Golden data for the optimizers, the schedule and the probe cross-entropy.

optim.bin: four tensors (2-D weight, 4-D conv weight, 1-D bias, an all-zero
2-D weight for LARS's q = 1 branch) and five fixed gradients each; for every
case the values and optimizer state after every step and the rates used.
The rates follow the official adjust_learning_rate with batch_size 512,
warm-up 2 steps, 5 steps in total and final ratio 0.01, so step 0 runs at
rate 0, step 1 at half the base and steps 2..4 on the cosine.

The official LARS class (facebookresearch/barlowtwins main.py) and
solo-learn's (solo/utils/lars.py, Lightning Bolts) are re-implemented here
from their published update rules; SGD and AdamW are torch.optim's own.

optim_lr.bin: the official schedule at chosen steps of the ImageNet run.
xent.bin: F.cross_entropy forward and backward on three cases."""
import math
import os

import torch
import torch.nn.functional as F

import golden_io

NAMES = ["w2", "w4", "b", "z2"]
STEPS = 5
BATCH, WARMUP, TOTAL, FINAL = 512, 2, 5, 0.01


class OfficialLARS(torch.optim.Optimizer):
    """The update of barlowtwins main.py: decay, trust ratio with both norms
    positive, momentum on the adapted update, rate applied last."""

    def __init__(self, params, lr, weight_decay, momentum, eta, exclude):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      eta=eta, weight_decay_filter=exclude,
                                      lars_adaptation_filter=exclude))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if not g["weight_decay_filter"] or p.ndim != 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                if not g["lars_adaptation_filter"] or p.ndim != 1:
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


class SoloLARS(torch.optim.Optimizer):
    """solo-learn's LARS with clip_lars_lr=True, dampening 0, no Nesterov."""

    def __init__(self, params, lr, weight_decay, momentum, eta, exclude, eps=1e-8):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                                      eta=eta, eps=eps, exclude=exclude))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                d_p = p.grad
                p_norm = torch.norm(p.data)
                g_norm = torch.norm(p.grad.data)
                if p.ndim != 1 or not g["exclude"]:
                    if p_norm != 0 and g_norm != 0:
                        lars_lr = p_norm / (g_norm + p_norm * g["weight_decay"] + g["eps"])
                        lars_lr *= g["eta"]
                        lars_lr = min(lars_lr / g["lr"], 1)
                        d_p = d_p.add(p, alpha=g["weight_decay"])
                        d_p *= lars_lr
                state = self.state[p]
                if "momentum_buffer" not in state:
                    buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    buf = state["momentum_buffer"]
                    buf.mul_(g["momentum"]).add_(d_p)
                p.add_(buf, alpha=-g["lr"])


def official_lr(step, batch, warmup, total, final):
    """adjust_learning_rate of barlowtwins main.py, in steps, before the group factor."""
    base = batch / 256
    if step < warmup:
        return base * step / warmup
    if step >= total:
        return base * final
    step -= warmup
    total -= warmup
    q = 0.5 * (1 + math.cos(math.pi * step / total))
    return base * q + base * final * (1 - q)


# Each case: options as the C test sets them, and how to build the torch optimizer.
CASES = {
    "lars": dict(kind="lars", lr=0.2, lr_bias=0.05, wd=0.01, momentum=0.9, eta=0.02, exclude=1),
    "lars_noexcl": dict(kind="lars", lr=0.2, lr_bias=0.05, wd=0.01, momentum=0.9, eta=0.02,
                        exclude=0),
    "lars_solo": dict(kind="solo", lr=0.2, lr_bias=0.05, wd=0.01, momentum=0.9, eta=0.02,
                      exclude=1),
    "sgd": dict(kind="sgd", lr=0.05, lr_bias=0.02, wd=0.01, momentum=0.9, nesterov=False),
    "sgd_nesterov": dict(kind="sgd", lr=0.05, lr_bias=0.02, wd=0.01, momentum=0.9,
                         nesterov=True),
    "adamw": dict(kind="adamw", lr=0.01, lr_bias=0.004, wd=0.05, momentum=0.9, beta2=0.99,
                  eps=1e-8),
}


def initial():
    gen = torch.Generator().manual_seed(1234)
    init = {
        "w2": torch.randn(6, 5, generator=gen) * 0.5,
        "w4": torch.randn(4, 3, 3, 3, generator=gen) * 0.2,
        "b": torch.randn(7, generator=gen) * 0.1,
        "z2": torch.zeros(3, 4),
    }
    grads = []
    for s in range(STEPS):
        grads.append({n: torch.randn(t.shape, generator=gen) * (0.3 + 0.2 * s)
                      for n, t in init.items()})
    return init, grads


def run_case(name, c, init, grads, out):
    params = {n: init[n].clone().requires_grad_(True) for n in NAMES}
    g0 = [params["w2"], params["w4"], params["z2"]]
    g1 = [params["b"]]
    kind = c["kind"]
    if kind == "lars":
        opt = OfficialLARS([{"params": g0}, {"params": g1}], lr=0, weight_decay=c["wd"],
                           momentum=c["momentum"], eta=c["eta"], exclude=bool(c["exclude"]))
        state_keys = [("mu", "momentum")]
    elif kind == "solo":
        opt = SoloLARS([{"params": g0}, {"params": g1}], lr=0, weight_decay=c["wd"],
                       momentum=c["momentum"], eta=c["eta"], exclude=bool(c["exclude"]))
        state_keys = [("momentum_buffer", "momentum")]
    elif kind == "sgd":
        opt = torch.optim.SGD([{"params": g0, "weight_decay": c["wd"]},
                               {"params": g1, "weight_decay": 0.0}], lr=0.1,
                              momentum=c["momentum"], nesterov=c["nesterov"])
        state_keys = [("momentum_buffer", "momentum")]
    else:
        opt = torch.optim.AdamW([{"params": g0, "weight_decay": c["wd"]},
                                 {"params": g1, "weight_decay": 0.0}], lr=0.1,
                                betas=(c["momentum"], c["beta2"]), eps=c["eps"])
        state_keys = [("exp_avg", "exp_avg"), ("exp_avg_sq", "exp_avg_sq")]
    lr0, lr1 = [], []
    for s in range(STEPS):
        base = official_lr(s, BATCH, WARMUP, TOTAL, FINAL)
        opt.param_groups[0]["lr"] = base * c["lr"]
        opt.param_groups[1]["lr"] = base * c["lr_bias"]
        lr0.append(opt.param_groups[0]["lr"])
        lr1.append(opt.param_groups[1]["lr"])
        for n in NAMES:
            params[n].grad = grads[s][n].clone()
        opt.step()
        for n in NAMES:
            out["%s.%d.%s" % (name, s, n)] = params[n].detach().clone()
            for key, label in state_keys:
                out["%s.%d.%s.%s" % (name, s, n, label)] = opt.state[params[n]][key].clone()
    out[name + ".lr0"] = torch.tensor(lr0, dtype=torch.float64)
    out[name + ".lr1"] = torch.tensor(lr1, dtype=torch.float64)


def gen_optim(outdir):
    init, grads = initial()
    out = {}
    for n in NAMES:
        out["init." + n] = init[n]
        for s in range(STEPS):
            out["grad.%d.%s" % (s, n)] = grads[s][n]
    for name, c in CASES.items():
        run_case(name, c, init, grads, out)
    golden_io.write(os.path.join(outdir, "optim.bin"), out)

    # The ImageNet run: batch 2048, 626 steps/epoch, 10 warm-up epochs, 1000 epochs.
    steps = [0, 1, 2, 3130, 6259, 6260, 6261, 100000, 313130, 600000, 625999, 626000, 700000]
    lrs = [official_lr(s, 2048, 6260, 626000, 0.001) for s in steps]
    golden_io.write(os.path.join(outdir, "optim_lr.bin"), {
        "steps": torch.tensor(steps, dtype=torch.float64),
        "lr0": torch.tensor([x * 0.2 for x in lrs], dtype=torch.float64),
        "lr1": torch.tensor([x * 0.0048 for x in lrs], dtype=torch.float64),
    })


def gen_xent(outdir):
    gen = torch.Generator().manual_seed(99)
    cases = {
        "small": (torch.randn(8, 10, generator=gen) * 3.0, None),
        "wide": (torch.randn(64, 100, generator=gen) * 2.0, None),
        # large offsets: a naive exp would overflow in float
        "offset": (torch.randn(16, 3, generator=gen) * 5.0 + 1000.0, None),
    }
    out = {}
    for name, (z, _) in cases.items():
        n, k = z.shape
        y = torch.randint(0, k, (n,), generator=gen)
        z = z.clone().requires_grad_(True)
        loss = F.cross_entropy(z, y)
        loss.backward()
        topk = min(5, k)
        top = z.detach().topk(topk, dim=1).indices
        out[name + ".logits"] = z.detach()
        out[name + ".labels"] = y.to(torch.float32)
        out[name + ".loss"] = torch.tensor([loss.item()], dtype=torch.float64)
        out[name + ".grad"] = z.grad
        out[name + ".top1"] = torch.tensor([(top[:, 0] == y).sum().item()], dtype=torch.float32)
        out[name + ".top5"] = torch.tensor([(top == y[:, None]).any(1).sum().item()],
                                           dtype=torch.float32)
    golden_io.write(os.path.join(outdir, "xent.bin"), out)


def main(outdir):
    torch.set_default_dtype(torch.float32)
    gen_optim(outdir)
    gen_xent(outdir)
