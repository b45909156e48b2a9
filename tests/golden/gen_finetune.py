"""Golden data for fine-tuning (tests/check_backbone.c), in PyTorch float64.

"finetune": a small CIFAR-stem ResNet (basic blocks 1-1, widths 4-8, 3 channels,
8x8 images) trained through a host's head, a Linear(8, 5) with bias: per view,
L += sum(head(backbone(x_v)) * dy_v), each view its own BatchNorm batch as in
bt_model_forward_backbone. Stored: features, the gradients of every backbone
parameter and of the head, and dL/dx of both views.

"none": the projector-only model (model.arch none, model.feature_dim 12,
model.projector 16-8) on the host's [8, 12] features: z, the projector's
gradients and dL/dx for L = sum_v sum(z_v * dz_v).

Weights, inputs and upstream gradients come from gen_model.pattern(), which
check_backbone.c reproduces, so only results are stored. Each case is checked
for conditioning as gen_model.py does (ReLU inputs far from 0 in float32
differences, float32 gradients within F32_GRAD); a failing case gets another seed."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock

import gen_model
import golden_io
from gen_model import pattern

HEAD_OUT = 5
N = 8
FT = dict(blocks=[1, 1], widths=[4, 8], in_ch=3, hw=8, proj=[16], seed=7)
NONE = dict(k=12, proj=[16, 8], seed=3)


class Head(nn.Module):
    def __init__(self, backbone_net, feat):
        super().__init__()
        self.net = backbone_net
        self.head = nn.Linear(feat, HEAD_OUT)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(
                pattern(500, HEAD_OUT * feat) * 2.0 * np.sqrt(6.0 / feat)).reshape(HEAD_OUT, feat))
            self.head.bias.copy_(torch.from_numpy(0.2 * pattern(501, HEAD_OUT)))


class ProjOnly(nn.Module):
    def __init__(self, k, proj):
        super().__init__()
        self.projector = gen_model.projector([k] + proj, False, True)


def ft_step(model, xs, dys, dtype):
    model = __import__("copy").deepcopy(model).to(dtype)
    cap = gen_model.Capture(model)
    xs = [x.to(dtype).clone().requires_grad_(True) for x in xs]
    feats, total = [], 0
    for x, dy in zip(xs, dys):
        f = model.net.backbone(x)
        feats.append(f)
        total = total + (model.head(f) * dy.to(dtype)).sum()
    total.backward()
    cap.close()
    grads = {k: p.grad.double() for k, p in model.named_parameters() if p.grad is not None}
    return cap.calls, feats, grads, [x.grad.double() for x in xs]


def none_step(model, xs, dzs, dtype):
    model = __import__("copy").deepcopy(model).to(dtype)
    cap = gen_model.Capture(model)
    xs = [x.to(dtype).clone().requires_grad_(True) for x in xs]
    zs, total = [], 0
    for x, dz in zip(xs, dzs):
        z = model.projector(x)
        zs.append(z)
        total = total + (z * dz.to(dtype)).sum()
    total.backward()
    cap.close()
    grads = {k: p.grad.double() for k, p in model.named_parameters()}
    return cap.calls, zs, grads, [x.grad.double() for x in xs]


def conditioned(name, c64, c32, g64, g32, dx64, dx32):
    ratio, margin, where = gen_model.conditioning(c64, c32)
    pairs = [(g32[k], g64[k]) for k in g64] + list(zip(dx32, dx64))
    f32 = max((a - b).abs().max().item() / max(b.abs().max().item(), 1e-30) for a, b in pairs)
    print("golden: finetune_%s: nearest ReLU decision %.3g float32 differences, %.3g RMS (%s); "
          "float32 gradient error %.3g" % (name, ratio, margin, where, f32))
    assert ratio >= gen_model.SAFETY, "finetune_%s is ill-conditioned (%s); pick another seed" % (
        name, where)
    assert f32 <= gen_model.F32_GRAD, "finetune_%s: float32 gradients %.3g off" % (name, f32)


def case_finetune(out):
    p = FT
    torch.manual_seed(0)
    net = gen_model.Net(BasicBlock, p["blocks"], p["widths"], p["in_ch"], True, p["proj"]).double()
    gen_model.fill(net)  # tensor t of backbone + projector: the library's bt_model_tensor order
    model = Head(net, p["widths"][-1]).double()
    model.train()
    n_in = N * p["in_ch"] * p["hw"] * p["hw"]
    x_id = 1000 + 2 * p["seed"]
    xs = [torch.from_numpy(2.0 * pattern(x_id + v, n_in)).reshape(N, p["in_ch"], p["hw"], p["hw"])
          for v in range(2)]
    dys = [torch.from_numpy(0.1 * pattern(2000 + v, N * HEAD_OUT)).reshape(N, HEAD_OUT)
           for v in range(2)]
    c64, f64, g64, dx64 = ft_step(model, xs, dys, torch.float64)
    c32, _, g32, dx32 = ft_step(model, xs, dys, torch.float32)
    conditioned("resnet", c64, c32, g64, g32, dx64, dx32)
    g = {"n": N, "hw": p["hw"], "x_id": x_id}
    for v in range(2):
        g["features%d" % v] = f64[v]
        g["dx%d" % v] = dx64[v]
    for k, grad in g64.items():
        if k.startswith("net.backbone."):
            g["grad." + k[len("net."):]] = grad.reshape(-1)
        elif k.startswith("head."):
            g["grad." + k] = grad.reshape(-1)
    golden_io.write(os.path.join(out, "finetune_resnet.bin"), g)


def case_none(out):
    p = NONE
    model = ProjOnly(p["k"], p["proj"]).double()
    gen_model.fill(model)
    model.train()
    x_id = 1000 + 2 * p["seed"]
    xs = [torch.from_numpy(2.0 * pattern(x_id + v, N * p["k"])).reshape(N, p["k"]) for v in range(2)]
    dzs = [torch.from_numpy(0.01 * pattern(2000 + v, N * p["proj"][-1])).reshape(N, p["proj"][-1])
           for v in range(2)]
    c64, z64, g64, dx64 = none_step(model, xs, dzs, torch.float64)
    c32, _, g32, dx32 = none_step(model, xs, dzs, torch.float32)
    conditioned("none", c64, c32, g64, g32, dx64, dx32)
    g = {"n": N, "x_id": x_id}
    for v in range(2):
        g["z%d" % v] = z64[v]
        g["dx%d" % v] = dx64[v]
    for k, grad in g64.items():
        g["grad." + k] = grad.reshape(-1)
    golden_io.write(os.path.join(out, "finetune_none.bin"), g)


def main(out):
    case_finetune(out)
    case_none(out)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
