"""Golden values of the Barlow Twins loss (tests/check_loss.c), from PyTorch in float64.

The inputs are not stored (except for the two smallest cases, to check that
the C and the Python generators agree bit for bit): both sides build them from
the same counter-based formula, see inputs(). The loss follows the official
facebookresearch/barlowtwins main.py (BatchNorm1d(affine=False), c = bn(z1).T @
bn(z2) / N, on + lambda * off); the Table 5 variants are written the same way.
Small cases store the full gradients; large ones a fixed subset of entries,
the L2 norm and a dot product with a third pseudo-random array."""
import os

import numpy as np
import torch

import golden_io

CASES = [(8, 16), (32, 128), (256, 2048), (64, 8192), (512, 256)]
MODES = ["barlow", "invariance_only", "redundancy_only", "feature_norm", "xent"]
LAMBDA = 0.0051
TAU = 0.1
FULL_MAX = 4096  # store full gradients when N * D <= this
NSUB = 512       # else this many entries


def mix64(x):
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniform(stream, count):
    """float32 in [-0.5, 0.5): 24 random bits, exact in float32."""
    k = (np.uint64(stream) << np.uint64(32)) + np.arange(count, dtype=np.uint64)
    return ((mix64(k) >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)
            - np.float32(0.5)).astype(np.float32)


def inputs(n, d):
    """za = u1 * (1 + j % 4) + 0.25 * (j % 3), zb = u1 + 0.5 * u2 (float32 ops)."""
    u1 = uniform(1, n * d).reshape(n, d)
    u2 = uniform(2, n * d).reshape(n, d)
    j = np.arange(d)
    sc = (1 + j % 4).astype(np.float32)
    off = (np.float32(0.25) * (j % 3).astype(np.float32)).astype(np.float32)
    za = (u1 * sc).astype(np.float32) + off
    zb = u1 + (np.float32(0.5) * u2).astype(np.float32)
    return za.astype(np.float32), zb.astype(np.float32)


def subset(n, d):
    i = np.arange(NSUB, dtype=np.uint64)
    return ((i * np.uint64(2654435761)) % np.uint64(n * d)).astype(np.int64)


def off_diagonal(x):
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def loss_terms(z1, z2, mode):
    n, d = z1.shape
    if mode == "feature_norm":
        a = torch.nn.functional.layer_norm(z1, (d,), eps=1e-5)
        b = torch.nn.functional.layer_norm(z2, (d,), eps=1e-5)
    else:
        bn = torch.nn.BatchNorm1d(d, affine=False).double()  # training mode: batch statistics
        a, b = bn(z1), bn(z2)
    c = a.T @ b
    c.div_(n)
    if mode == "xent":
        on = -torch.logsumexp(torch.diagonal(c) / TAU, 0)
        off = torch.logsumexp(off_diagonal(c).clamp(min=0) / TAU, 0)
        return on + LAMBDA * off, on, off, c
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = off_diagonal(c).pow(2).sum()
    loss = {"invariance_only": on, "redundancy_only": LAMBDA * off}.get(mode, on + LAMBDA * off)
    return loss, on, off, c


def main(outdir):
    total = 0
    for n, d in CASES:
        za, zb = inputs(n, d)
        w = uniform(3, n * d).astype(np.float64)
        out = {}
        if n * d <= FULL_MAX:
            out["za"], out["zb"] = za, zb
        for mode in MODES:
            z1 = torch.tensor(za, dtype=torch.float64, requires_grad=True)
            z2 = torch.tensor(zb, dtype=torch.float64, requires_grad=True)
            loss, on, off, c = loss_terms(z1, z2, mode)
            loss.backward()
            ga = z1.grad.numpy().reshape(-1)
            gb = z2.grad.numpy().reshape(-1)
            out[mode + ".loss"] = [loss.item()]
            out[mode + ".on"] = [on.item()]
            out[mode + ".off"] = [off.item()]
            k = min(d, 16)
            out[mode + ".c16"] = c.detach()[:k, :k].numpy()
            if n * d <= FULL_MAX:
                out[mode + ".dza"] = ga.reshape(n, d)
                out[mode + ".dzb"] = gb.reshape(n, d)
            else:
                idx = subset(n, d)
                out[mode + ".dza_sub"] = ga[idx]
                out[mode + ".dzb_sub"] = gb[idx]
            out[mode + ".dza_norm"] = [np.sqrt((ga * ga).sum())]
            out[mode + ".dzb_norm"] = [np.sqrt((gb * gb).sum())]
            out[mode + ".dza_dot"] = [(ga * w).sum()]
            out[mode + ".dzb_dot"] = [(gb * w).sum()]
            del loss, c, z1, z2
        path = os.path.join(outdir, "loss_%dx%d.bin" % (n, d))
        golden_io.write(path, out)
        total += os.path.getsize(path)
        print("  %s" % os.path.basename(path))
    print("  loss golden total: %d bytes" % total)
