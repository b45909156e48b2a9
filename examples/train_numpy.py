"""train_numpy.py - examples/train_loop.c in Python: the same synthetic data, options and steps.

    python3 examples/train_numpy.py [steps] [checkpoint]   # needs the barlow package (libbarlow/python)
"""
import sys

import numpy as np

import barlow

BATCH, SIDE = 64, 32
yy, xx = np.mgrid[0:SIDE, 0:SIDE]


def next_batch(state):
    """train_loop.c's next_batch(): random discs and squares, grey 30 on 220, as uint8 [N, H, W]."""
    pixels = np.empty((BATCH, SIDE, SIDE), np.uint8)
    for n in range(BATCH):
        state = (state * 1103515245 + 12345) & 0xFFFFFFFF
        cx = 8 + (state >> 16) % 16
        state = (state * 1103515245 + 12345) & 0xFFFFFFFF
        cy, r, square = 8 + (state >> 16) % 16, 3 + (state >> 8) % 6, (state >> 4) & 1
        dx, dy = xx - cx, yy - cy
        inside = (abs(dx) <= r) & (abs(dy) <= r) if square else dx * dx + dy * dy <= r * r
        pixels[n] = np.where(inside, 220, 30)
    return pixels, state


steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
path = sys.argv[2] if len(sys.argv) > 2 else "train_numpy.safetensors"
cfg = barlow.Config({"model.arch": "resnet", "model.blocks": "1-1-1", "model.widths": "16-32-64",
                     "model.stem": "cifar", "model.in_channels": 1, "model.projector": "256-256",
                     "aug.preset": "fmnist", "aug.size": 32, "aug.mean": 0.3, "aug.std": 0.4,
                     "optim.batch_size": BATCH, "optim.total_steps": steps,
                     "optim.warmup_steps": 2})
with barlow.Model(cfg) as model, barlow.Loss(cfg) as loss, barlow.Augment(cfg) as aug, \
        barlow.Optim(cfg) as opt:
    opt.add_model(model)
    state = 1
    for step in range(steps):
        pixels, state = next_batch(state)
        views = aug.views(pixels)          # two float32 [64, 1, 32, 32] views
        model.zero_grad()
        z = model.forward(views)           # two float32 [64, 256] embeddings
        value = loss.forward(*z)
        model.backward(loss.backward())
        opt.step()
        on, off = loss.terms()
        print("step %3d  loss %9.3f  on-diag %8.3f  off-diag %9.3f  lr %.4f"
              % (step, value, on, off, opt.lr(0)))
    barlow.save_checkpoint(path, model, opt, aug)
print("saved", path)
