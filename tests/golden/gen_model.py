"""Golden data for the model: a two-view training forward/backward in PyTorch
(float64) with weights, inputs and upstream gradients from a formula that
tests/check_model.c reproduces exactly, so no weights are stored.

Each view goes through the network alone, as the official main.py does, so
BatchNorm sees one view per batch and running statistics update once per view.

Every case must be well conditioned, or the library's float32 (any summation
order, any kernel level) cannot match it to the tests' 1e-4: a ReLU whose input
is nearer zero than float32 rounding flips, and the gradients move by far more.
(The earlier cifar18 case, 8 images of 32x32, had a stem ReLU input 1.7e-7 RMS
from zero; one flip in PyTorch's own float32 run moved a gradient by 7e-3, and
the library's moved conv1's by 1.3e-3 to 5.9e-3.) So case() also runs the case
in float32 and refuses it unless, for every call of every ReLU and max-pool,
the input nearest the decision (|ReLU input|; a window's largest minus its
runner-up) is at least SAFETY times the largest float32-float64 difference of
that tensor, and the float32 gradients are within F32_GRAD of the float64 ones.
A fixed fraction of the RMS does not do: the float32 difference grows from
1e-6 RMS at the stem to 4e-5 RMS at the projector, and every ResNet-18 case has
ReLU inputs within 1e-3 RMS of zero (14 with 2 images of 2x2, 7550 at 8x32x32).
A case that fails gets another `seed` (the pattern of its input views):
    /usr/bin/python3 tests/golden/gen_model.py search NAME FIRST_SEED LAST_SEED
(forward only; prints each seed's conditioning). Without arguments this script
writes the model golden files, as tests/golden/gen.py model does."""
import copy
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck

import golden_io

SAMPLES = 512  # gradient entries stored per large tensor
SAFETY = 3.0  # smallest distance to a ReLU or max-pool decision, in float32 differences (1 thread)
F32_GRAD = 2e-5  # largest float32 gradient error allowed (check_model.c's tolerance is 1e-4)

# name: (block, blocks, widths, in_ch, cifar_stem, projector, n, hw, seed)
CASES = {
    # The one-channel network of the demo: 16-32-64 basic blocks, 512-512-512 projector.
    "small": (BasicBlock, [1, 1, 1], [16, 32, 64], 1, True, [512, 512, 512], 6, 28, 44),
    # CIFAR ResNet-18 (3x3 stem, no max-pool) with a 2048-2048 projector, on 6x6 images
    # (6, 3, 2, 1 pixels a side in the four stages). At 32x32 the case has 9e6 ReLU
    # inputs and hundreds lie within 5 float32 differences of zero whatever the seed.
    # 8 images keep 8 values per BatchNorm channel at 1x1; with 2 or 4, the float32
    # gradients through BatchNorm are mostly cancellation.
    "cifar18": (BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], 3, True, [2048, 2048], 8, 6,
                234),
    # ImageNet stem (with the max-pool) and bottleneck blocks (resnet50-style), tiny widths.
    # hw stays 33: check_checkpoint.c loads model_bottleneck_torch.safetensors and
    # encodes n 33x33 images of 2 * pattern(1000).
    "bottleneck": (Bottleneck, [1, 2], [8, 16], 3, False, [64, 32], 4, 33, 182),
}


def pattern(t, n):
    """Uniform-ish values in [-0.5, 0.5) from (tensor index t, element index i);
    the same integer arithmetic as pattern() in tests/check_model.c."""
    i = np.arange(n, dtype=np.uint64)
    m32 = np.uint64(0xFFFFFFFF)
    h = (i * np.uint64(2654435761) + np.uint64(t * 40503 + 12345)) & m32
    h = ((h ^ (h >> np.uint64(13))) * np.uint64(1274126177)) & m32
    h = h ^ (h >> np.uint64(16))
    return h.astype(np.float64) / 4294967296.0 - 0.5


class ResNet(nn.Module):
    """torchvision's ResNet structure (same module names) with any number of stages."""

    def __init__(self, block, blocks, widths, in_ch, cifar_stem):
        super().__init__()
        self.inplanes = widths[0]
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_ch, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        for s, (n, w) in enumerate(zip(blocks, widths)):
            setattr(self, "layer%d" % (s + 1), self._stage(block, w, n, 1 if s == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def _stage(self, block, width, n, stride):
        down = None
        if stride != 1 or self.inplanes != width * block.expansion:
            down = nn.Sequential(nn.Conv2d(self.inplanes, width * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(width * block.expansion))
        layers = [block(self.inplanes, width, stride, down)]
        self.inplanes = width * block.expansion
        layers += [block(self.inplanes, width) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        s = 1
        while hasattr(self, "layer%d" % s):
            x = getattr(self, "layer%d" % s)(x)
            s += 1
        return torch.flatten(self.avgpool(x), 1)


def projector(sizes, bias, bn):
    layers = []
    for i in range(len(sizes) - 2):
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias))
        if bn:
            layers.append(nn.BatchNorm1d(sizes[i + 1]))
        layers.append(nn.ReLU(True))
    layers.append(nn.Linear(sizes[-2], sizes[-1], bias=bias))
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self, block, blocks, widths, in_ch, cifar_stem, proj):
        super().__init__()
        self.backbone = ResNet(block, blocks, widths, in_ch, cifar_stem)
        feat = widths[-1] * block.expansion
        self.projector = projector([feat] + proj, False, True)

    def forward(self, x):
        f = self.backbone(x)
        return f, self.projector(f)


def fill(net):
    """Deterministic weights: tensor t of the state_dict gets pattern(t, numel)."""
    with torch.no_grad():
        for t, (name, v) in enumerate(net.state_dict().items()):
            p = torch.from_numpy(pattern(t, v.numel())).reshape(v.shape)
            if name.endswith("num_batches_tracked"):
                v.zero_()
            elif name.endswith("running_mean"):
                v.copy_(0.2 * p)
            elif name.endswith("running_var"):
                v.copy_(1.0 + p)
            elif v.dim() == 1:  # BN weight / bias
                v.copy_((1.0 if name.endswith("weight") else 0.0) + 0.4 * p)
            else:
                fan_in = v[0].numel()
                v.copy_(p * 2.0 * np.sqrt(6.0 / fan_in))


class Capture:
    """While registered: every call of every ReLU and MaxPool2d of a net, in order, as
    (module name, module, a float64 copy of its input)."""

    def __init__(self, net):
        self.calls = []
        self.handles = [m.register_forward_pre_hook(self._hook(name))
                        for name, m in net.named_modules() if isinstance(m, (nn.ReLU, nn.MaxPool2d))]

    def _hook(self, name):
        def hook(module, args):  # before the module runs: ReLU(inplace) has not changed it yet
            self.calls.append((name, module, args[0].detach().double().clone()))
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def pool_lead(module, x):
    """Per window whose largest value is positive: largest minus runner-up. (A window
    whose largest is 0 sends its gradient into a ReLU that is off either way.)"""
    k, s, p = module.kernel_size, module.stride, module.padding
    assert all(isinstance(a, int) for a in (k, s, p)) and module.dilation == 1 and not module.ceil_mode
    cols = F.unfold(F.pad(x, (p, p, p, p), value=float("-inf")), k, stride=s)
    top = cols.reshape(x.shape[0], x.shape[1], k * k, -1).topk(2, dim=2).values
    return (top[:, :, 0] - top[:, :, 1])[top[:, :, 0] > 0]


def conditioning(calls64, calls32):
    """(smallest distance / float32 difference, smallest distance / RMS, where) over
    the calls: distance of the input nearest the decision, float32 difference the
    largest |float32 - float64| of that input (twice that for a max-pool lead)."""
    worst, seen = (float("inf"), float("inf"), None), {}
    for (name, module, a), (_, _, b) in zip(calls64, calls32):
        seen[name] = seen.get(name, 0) + 1
        rms = a.pow(2).mean().sqrt().item()
        dev = (a - b).abs().max().item()
        if isinstance(module, nn.ReLU):
            dist = a.abs().min().item()
        else:
            lead = pool_lead(module, a)
            dist, dev = (lead.min().item() if lead.numel() else float("inf")), 2 * dev
        ratio = dist / max(dev, 1e-300)
        if ratio < worst[0]:
            worst = (ratio, dist / rms, "%s, call %d" % (name, seen[name]))
    return worst


def build(block, blocks, widths, in_ch, cifar_stem, proj, n, hw, seed):
    """The network (filled, float64, training mode), the two views and their upstream
    gradients. View v is 2 * pattern(1000 + 2 * seed + v); check_model.c reads
    x_id = 1000 + 2 * seed from the golden file."""
    torch.manual_seed(0)
    net = Net(block, blocks, widths, in_ch, cifar_stem, proj).double()
    fill(net)
    net.train()
    xs = [torch.from_numpy(2.0 * pattern(1000 + 2 * seed + v, n * in_ch * hw * hw))
          .reshape(n, in_ch, hw, hw) for v in range(2)]
    dzs = [torch.from_numpy(0.01 * pattern(2000 + v, n * proj[-1])).reshape(n, proj[-1])
           for v in range(2)]
    return net, xs, dzs


def run(net, xs, dzs, dtype, backward=True):
    """The two-view step of the golden files in dtype on a copy of net: (ReLU and
    max-pool calls, per view (features, z), {parameter: gradient})."""
    net = copy.deepcopy(net).to(dtype)
    cap = Capture(net)
    outs, total = [], 0
    with torch.set_grad_enabled(backward):
        for x, dz in zip(xs, dzs):
            f, z = net(x.to(dtype))
            outs.append((f, z))
            total = total + (z * dz.to(dtype)).sum()
        if backward:
            total.backward()
    cap.close()
    grads = {k: p.grad.double().reshape(-1) for k, p in net.named_parameters()} if backward else {}
    return cap.calls, outs, grads, net


def case(out, name, block, blocks, widths, in_ch, cifar_stem, proj, n, hw, seed):
    net, xs, dzs = build(block, blocks, widths, in_ch, cifar_stem, proj, n, hw, seed)
    names = list(net.state_dict().keys())
    calls64, outs, grads, trained = run(net, xs, dzs, torch.float64)
    calls32, _, grads32, _ = run(net, xs, dzs, torch.float32)
    ratio, margin, where = conditioning(calls64, calls32)
    f32 = max((grads32[k] - grads[k]).abs().max().item() / max(grads[k].abs().max().item(), 1e-30)
              for k in grads)
    print("golden: model_%s: nearest ReLU/max-pool decision %.3g float32 differences, %.3g RMS "
          "(%s); float32 gradient error %.3g" % (name, ratio, margin, where, f32))
    assert ratio >= SAFETY, ("model_%s is ill-conditioned: an input is %.3g float32 differences "
                             "from a ReLU/max-pool decision (%s); pick another seed" % (name, ratio, where))
    assert f32 <= F32_GRAD, ("model_%s is ill-conditioned: float32 gradients are %.3g off "
                             "(limit %g)" % (name, f32, F32_GRAD))
    net = trained  # running statistics after the two views
    g = {"n": n, "hw": hw, "x_id": 1000 + 2 * seed}
    for v in range(2):
        g["z%d" % v] = outs[v][1]
        g["features%d" % v] = outs[v][0]
    params = dict(net.named_parameters())
    for t, key in enumerate(names):
        if key in params:
            grad = grads[key]
            g["grad.scale." + key] = grad.abs().max()
            if grad.numel() <= 4096:
                g["grad." + key] = grad
            else:
                idx = (np.arange(SAMPLES, dtype=np.int64) * 104729) % grad.numel()
                g["grad.sample." + key] = grad[torch.from_numpy(idx)]
        elif key.endswith("running_mean") or key.endswith("running_var"):
            g["buffer." + key] = net.state_dict()[key]
    g["tensor_count"] = len(names)
    if name == "bottleneck":
        # A checkpoint written from PyTorch (model tensors only, no metadata, float32 with
        # int64 num_batches_tracked) and the eval-mode features it must give for the input
        # check_checkpoint.c makes: 2 * pattern(1000), n images of 33x33.
        import gen_safetensors
        state = {k: (v if v.dtype == torch.int64 else v.float()) for k, v in net.state_dict().items()}
        gen_safetensors.save(os.path.join(out, "model_bottleneck_torch.safetensors"), state)
        assert hw == 33
        x = torch.from_numpy(2.0 * pattern(1000, n * in_ch * hw * hw)).reshape(n, in_ch, hw, hw)
        net.eval()
        with torch.no_grad():
            g["eval_features"] = net.backbone(x)
    golden_io.write(os.path.join(out, "model_%s.bin" % name), g)
    with open(os.path.join(out, "model_%s.names" % name), "w") as f:
        f.write("\n".join(names) + "\n")


def search(name, first, last):
    """Print the conditioning of seeds first..last of case `name` (forward only)."""
    spec = CASES[name][:-1]
    net, _, dzs = build(*spec, 0)  # the weights do not depend on the seed
    in_ch, n, hw = spec[3], spec[6], spec[7]
    for seed in range(first, last + 1):
        xs = [torch.from_numpy(2.0 * pattern(1000 + 2 * seed + v, n * in_ch * hw * hw))
              .reshape(n, in_ch, hw, hw) for v in range(2)]
        c64, _, _, _ = run(net, xs, dzs, torch.float64, backward=False)
        c32, _, _, _ = run(net, xs, dzs, torch.float32, backward=False)
        ratio, margin, where = conditioning(c64, c32)
        print("%s seed %d: %.3g float32 differences, %.3g RMS (%s)%s" % (
            name, seed, ratio, margin, where, "  ok" if ratio >= SAFETY else ""), flush=True)


def main(out):
    for name, spec in CASES.items():
        case(out, name, *spec)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if sys.argv[1:2] == ["search"] and len(sys.argv) == 5:
        search(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) == 1:  # as tests/golden/gen.py model
        main(os.path.dirname(os.path.abspath(__file__)))
    else:
        sys.exit("usage: gen_model.py [search NAME FIRST_SEED LAST_SEED]")
