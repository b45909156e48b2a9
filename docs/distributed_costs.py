"""Communication per training step of data-parallel Barlow Twins (docs/distributed.md).

Counts every collective libbarlow makes per step (model forward and backward, loss forward
and backward) for ResNet-50 + an 8192-8192-8192 projector, the paper's setting, and times
them on a 25 Gb/s network with 5 us latency; compute time from a per-image cost.
    python3 docs/distributed_costs.py
"""
import math

ALPHA = 5e-6        # s per message
BETA = 25e9 / 8     # bytes/s
N, D, V = 2048, 8192, 2           # global batch, embedding width, views
# ResNet-50: 53 BatchNorms over 26,560 channels; the projector adds 2 of 8,192.
BN_LAYERS, BN_CHANNELS = 53 + 2, 26560 + 2 * 8192
GRAD_TENSORS = 53 + 2 * BN_LAYERS + 3        # conv weights, BN weight+bias, 3 linears
PARAMS = 23_508_032 + 2048 * 8192 + 2 * 8192 * 8192 + 2 * 2 * 8192  # backbone, projector
SLOT = 10                                    # doubles per rank in an agreement
FLOP_PER_IMAGE = 2 * 3 * 4.1e9               # 2 views, forward + backward of ResNet-50 at 224 px
FLOPS = 120e9                                # one 2-core node, sustained


def allreduce(nbytes, w):
    """Latency-bound tree part plus bandwidth-optimal part (Rabenseifner)."""
    if w == 1:
        return 0.0
    return 2 * math.ceil(math.log2(w)) * ALPHA + 2 * (w - 1) / w * nbytes / BETA


def allgather(total, w):
    if w == 1:
        return 0.0
    return math.ceil(math.log2(w)) * ALPHA + (w - 1) / w * total / BETA


def step(w):
    """(messages, bytes sent per rank, seconds) per part."""
    parts = {}
    parts["agreements"] = (9, 9 * 8 * SLOT * w, 9 * allreduce(8 * SLOT * w, w))
    bn_fwd = 2 * BN_LAYERS, 8 * (2 * V * BN_CHANNELS + BN_LAYERS)
    bn_bwd = BN_LAYERS, 8 * 2 * V * BN_CHANNELS
    parts["BatchNorm statistics"] = (
        bn_fwd[0] + bn_bwd[0], bn_fwd[1] + bn_bwd[1],
        bn_fwd[0] * allreduce(bn_fwd[1] / bn_fwd[0], w) + bn_bwd[0] * allreduce(bn_bwd[1] / bn_bwd[0], w))
    parts["gradients"] = (GRAD_TENSORS, 4 * PARAMS, GRAD_TENSORS * allreduce(4 * PARAMS / GRAD_TENSORS, w))
    # loss: reduce the D x D matrix (plus 2 column sums per view, 1 backward sum per view)
    # or gather both views' N x D embeddings; libbarlow takes the fewer bytes.
    red = (1 + 3 * V, 4 * D * D + 8 * 3 * V * D,
           allreduce(4 * D * D, w) + 3 * V * allreduce(8 * D, w))
    gat = (V, 4 * V * N * D, V * allgather(4 * N * D, w))
    parts["loss (reduce D x D)"] = red
    parts["loss (gather N x D)"] = gat
    return parts


def main():
    print("| W | images/rank | agreements | BatchNorm | gradients | loss: reduce | loss: gather |"
          " comm s/step | compute s/step | comm share |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w in (8, 64, 512):
        p = step(w)
        loss = min(p["loss (reduce D x D)"], p["loss (gather N x D)"], key=lambda t: t[1])
        comm = p["agreements"][2] + p["BatchNorm statistics"][2] + p["gradients"][2] + loss[2]
        compute = N / w * FLOP_PER_IMAGE / FLOPS
        cells = [f"{p[k][0]} msg, {p[k][1] / 1e6:.1f} MB, {p[k][2] * 1e3:.1f} ms"
                 for k in ("agreements", "BatchNorm statistics", "gradients",
                           "loss (reduce D x D)", "loss (gather N x D)")]
        print(f"| {w} | {N // w} | " + " | ".join(cells) +
              f" | {comm:.3f} | {compute:.2f} | {comm / (comm + compute):.1%} |")


if __name__ == "__main__":
    main()
