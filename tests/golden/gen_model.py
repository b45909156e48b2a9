"""Golden data for the model: a two-view training forward/backward in PyTorch
(float64) with weights, inputs and upstream gradients from a formula that
tests/check_model.c reproduces exactly, so no weights are stored.

Each view goes through the network alone, as the official main.py does, so
BatchNorm sees one view per batch and running statistics update once per view."""
import os

import numpy as np
import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck

import golden_io

SAMPLES = 512  # gradient entries stored per large tensor


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


def case(out, name, block, blocks, widths, in_ch, cifar_stem, proj, n, hw):
    torch.manual_seed(0)
    net = Net(block, blocks, widths, in_ch, cifar_stem, proj).double()
    fill(net)
    names = list(net.state_dict().keys())
    xs = [torch.from_numpy(2.0 * pattern(1000 + v, n * in_ch * hw * hw)).reshape(n, in_ch, hw, hw)
          for v in range(2)]
    dzs = [torch.from_numpy(0.01 * pattern(2000 + v, n * proj[-1])).reshape(n, proj[-1]) for v in range(2)]
    net.train()
    total = 0
    g = {"n": n, "hw": hw}
    for v in range(2):
        f, z = net(xs[v])
        g["z%d" % v] = z
        g["features%d" % v] = f
        total = total + (z * dzs[v]).sum()
    total.backward()
    params = dict(net.named_parameters())
    for t, key in enumerate(names):
        if key in params:
            grad = params[key].grad.reshape(-1)
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
        # int64 num_batches_tracked) and the eval-mode features it must give.
        import gen_safetensors
        state = {k: (v if v.dtype == torch.int64 else v.float()) for k, v in net.state_dict().items()}
        gen_safetensors.save(os.path.join(out, "model_bottleneck_torch.safetensors"), state)
        net.eval()
        with torch.no_grad():
            g["eval_features"] = net.backbone(xs[0])
    golden_io.write(os.path.join(out, "model_%s.bin" % name), g)
    with open(os.path.join(out, "model_%s.names" % name), "w") as f:
        f.write("\n".join(names) + "\n")


def main(out):
    # The 28x28 one-channel network of the demo: 16-32-64 basic blocks, 512-512-512 projector.
    case(out, "small", BasicBlock, [1, 1, 1], [16, 32, 64], 1, True, [512, 512, 512], 6, 28)
    # CIFAR ResNet-18 (3x3 stem, no max-pool) with a 2048-2048 projector.
    case(out, "cifar18", BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512], 3, True, [2048, 2048], 8, 32)
    # ImageNet stem and bottleneck blocks (resnet50-style), tiny widths.
    case(out, "bottleneck", Bottleneck, [1, 2], [8, 16], 3, False, [64, 32], 4, 33)
