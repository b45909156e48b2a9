"""Golden forward/backward data for the layers (tests/check_layer.c).

Inputs and parameters are drawn in float32; PyTorch then computes in float64
from exactly those values, so the files hold the exact answers the C layers
(float32) are compared with. Each case is one small file layers_<case>.bin."""
import os

import torch
import torch.nn as nn

import golden_io


def f32(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def grads_of(module, x, dy):
    """Run forward and backward in float64; returns y, dx and named grads."""
    x = x.double().clone().requires_grad_(True)
    y = module(x)
    y.backward(dy.double())
    return y, x.grad


def conv_cases(outdir):
    # name, N, Cin, H, W, Cout, k, stride, pad, bias
    cases = [
        ("conv_7x7s2p3", 2, 3, 13, 11, 4, 7, 2, 3, True),   # ImageNet stem, odd sizes
        ("conv_3x3s1p1_b1", 1, 5, 9, 7, 6, 3, 1, 1, False),  # batch 1
        ("conv_3x3s2p1", 3, 4, 10, 9, 8, 3, 2, 1, True),
        ("conv_1x1s2", 2, 6, 9, 9, 7, 1, 2, 0, False),      # ResNet downsample
        ("conv_1x1s1", 2, 8, 6, 5, 5, 1, 1, 0, True),
        ("conv_1x1s1_wide", 2, 3, 24, 24, 4, 1, 1, 0, False),  # straight-to-GEMM path
        ("conv_3x3s1p0_odd", 3, 2, 7, 5, 3, 3, 1, 0, True),
        ("conv_5x5s3p2", 2, 3, 11, 12, 4, 5, 3, 2, True),
        ("conv_3x3s1p1_c16", 5, 16, 8, 8, 16, 3, 1, 1, False),  # several GEMM chunks in the test
    ]
    for name, n, cin, h, w, cout, k, s, p, bias in cases:
        m = nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=bias)
        x = f32(n, cin, h, w)
        with torch.no_grad():
            m.weight.copy_(f32(*m.weight.shape) * 0.3)
            if bias:
                m.bias.copy_(f32(cout) * 0.3)
        md = m.double()
        ho = (h + 2 * p - k) // s + 1
        wo = (w + 2 * p - k) // s + 1
        dy = f32(n, cout, ho, wo)
        y, dx = grads_of(md, x, dy)
        t = {"cfg": [cin, cout, k, s, p, int(bias)], "x": x, "weight": md.weight, "y": y,
             "dy": dy, "dx": dx, "dweight": md.weight.grad}
        if bias:
            t["bias"] = md.bias
            t["dbias"] = md.bias.grad
        golden_io.write(os.path.join(outdir, "layers_%s.bin" % name), t)


def linear_cases(outdir):
    for name, n, fin, fout, bias in [("linear_4x7x5", 4, 7, 5, True),
                                     ("linear_b1_nobias", 1, 3, 2, False),
                                     ("linear_16x64x10", 16, 64, 10, True)]:
        m = nn.Linear(fin, fout, bias=bias).double()
        with torch.no_grad():
            m.weight.copy_(f32(fout, fin).double() * 0.3)
            if bias:
                m.bias.copy_(f32(fout).double())
        x = f32(n, fin)
        dy = f32(n, fout)
        y, dx = grads_of(m, x, dy)
        t = {"cfg": [fin, fout, int(bias)], "x": x, "weight": m.weight, "y": y, "dy": dy,
             "dx": dx, "dweight": m.weight.grad}
        if bias:
            t["bias"] = m.bias
            t["dbias"] = m.bias.grad
        golden_io.write(os.path.join(outdir, "layers_%s.bin" % name), t)


# name, shape, eps, momentum, affine, training steps, groups
BN_CASES = [
    ("bn2d", (4, 3, 5, 5), 1e-3, 0.3, True, 3, 1),
    ("bn1d", (8, 5), 1e-5, 0.1, True, 3, 1),
    ("bn1d_ncl", (3, 4, 6), 1e-5, 0.1, True, 2, 1),
    ("bn2d_noaffine", (6, 4, 3, 3), 1e-5, 0.2, False, 2, 1),
    ("bn2d_b1", (1, 3, 4, 4), 1e-5, 0.1, True, 2, 1),
    ("bn1d_groups3", (12, 5), 1e-5, 0.1, True, 2, 3),
    ("bn2d_groups2", (4, 3, 3, 2), 1e-5, 0.25, True, 2, 2),
]
# Many channels of small planes: the C code takes them in blocks of channels,
# with a partial last block (drawn after the other cases, which keep their values).
BN_WIDE_CASES = [
    ("bn2d_wide", (2, 140, 1, 3), 1e-5, 0.1, True, 2, 1),
    ("bn2d_wide_groups2", (4, 70, 2, 2), 1e-5, 0.1, True, 2, 2),
]


def bn_cases(outdir, cases):
    for name, shape, eps, mom, affine, steps, groups in cases:
        c = shape[1]
        m = (nn.BatchNorm1d if len(shape) < 4 else nn.BatchNorm2d)(
            c, eps=eps, momentum=mom, affine=affine).double()
        t = {"cfg": [c, eps, mom, int(affine), steps, groups]}
        if affine:
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.5 * f32(c).double())
                m.bias.copy_(f32(c).double())
            t["weight"] = m.weight.detach().clone()
            t["bias"] = m.bias.detach().clone()
        m.train()
        for step in range(steps):
            x = f32(*shape) * 2.0 + 0.5
            dy = f32(*shape)
            xd = x.double().clone().requires_grad_(True)
            # Each group is its own batch, in order, through the same module.
            ys = [m(part) for part in xd.chunk(groups, 0)]
            y = torch.cat(ys, 0)
            y.backward(dy.double())
            t["x%d" % step] = x
            t["dy%d" % step] = dy
            t["y%d" % step] = y
            t["dx%d" % step] = xd.grad
            t["running_mean%d" % step] = m.running_mean.clone()
            t["running_var%d" % step] = m.running_var.clone()
        t["num_batches_tracked"] = [float(m.num_batches_tracked)]
        if affine:  # accumulated over all steps
            t["dweight"] = m.weight.grad
            t["dbias"] = m.bias.grad
            m.weight.grad = None
            m.bias.grad = None
        m.eval()
        x = f32(*shape)
        dy = f32(*shape)
        y, dx = grads_of(m, x, dy)
        t["xe"] = x
        t["dye"] = dy
        t["ye"] = y
        t["dxe"] = dx
        if affine:
            t["dweight_e"] = m.weight.grad
            t["dbias_e"] = m.bias.grad
        golden_io.write(os.path.join(outdir, "layers_%s.bin" % name), t)


def pool_cases(outdir):
    x = f32(2, 3, 4, 5)
    x[0, 0, 0, :3] = 0.0  # exact zeros: the gradient there is 0
    dy = f32(2, 3, 4, 5)
    y, dx = grads_of(nn.ReLU(), x, dy)
    golden_io.write(os.path.join(outdir, "layers_relu.bin"), {"x": x, "y": y, "dy": dy, "dx": dx})

    # name, shape, k, s, p, ties (integer-valued input)
    for name, shape, k, s, p, ties in [("maxpool_k3s2p1", (2, 3, 9, 9), 3, 2, 1, False),
                                       ("maxpool_k2s2_b1", (1, 2, 7, 6), 2, 2, 0, False),
                                       ("maxpool_k3s1p1", (2, 2, 5, 5), 3, 1, 1, False),
                                       ("maxpool_ties", (1, 2, 6, 6), 2, 1, 0, True)]:
        x = f32(*shape)
        if ties:
            x = torch.floor(x.clamp(-1, 1.5))
        m = nn.MaxPool2d(k, stride=s, padding=p)
        ho = (shape[2] + 2 * p - k) // s + 1
        wo = (shape[3] + 2 * p - k) // s + 1
        dy = f32(shape[0], shape[1], ho, wo)
        y, dx = grads_of(m, x, dy)
        golden_io.write(os.path.join(outdir, "layers_%s.bin" % name),
                        {"cfg": [k, s, p], "x": x, "y": y, "dy": dy, "dx": dx})

    x = f32(3, 4, 5, 7)
    dy = f32(3, 4)
    y, dx = grads_of(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), x, dy)
    golden_io.write(os.path.join(outdir, "layers_avgpool.bin"), {"x": x, "y": y, "dy": dy, "dx": dx})


def main(outdir):
    torch.manual_seed(20240601)
    conv_cases(outdir)
    linear_cases(outdir)
    bn_cases(outdir, BN_CASES)
    pool_cases(outdir)
    bn_cases(outdir, BN_WIDE_CASES)


if __name__ == "__main__":
    main(os.path.dirname(os.path.abspath(__file__)))
