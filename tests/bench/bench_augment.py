"""Twin of bench_augment.c: the official Barlow Twins Transform (main.py,
torchvision PIL path) on the same kind of inputs, one process, one thread.
Prints "imagenet <images/s>" and "fmnist <images/s>" (source images, two views each)."""
import random
import sys
import time

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image, ImageFilter, ImageOps


class GaussianBlur:
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            return img.filter(ImageFilter.GaussianBlur(radius=random.random() * 1.9 + 0.1))
        return img


class Solarization:
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        return ImageOps.solarize(img) if random.random() < self.p else img


def official(size, blur, sol, mean, std, gray=True, cj=(0.4, 0.4, 0.2, 0.1), scale=(0.08, 1.0)):
    def one(b, s):
        ops = [T.RandomResizedCrop(size, scale=scale, interpolation=T.InterpolationMode.BICUBIC),
               T.RandomHorizontalFlip(p=0.5),
               T.RandomApply([T.ColorJitter(*cj)], p=0.8)]
        if gray:
            ops.append(T.RandomGrayscale(p=0.2))
        ops += [GaussianBlur(b), Solarization(s), T.ToTensor(), T.Normalize(mean, std)]
        return T.Compose(ops)
    return one(blur[0], sol[0]), one(blur[1], sol[1])


def rate(tf, imgs, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for im in imgs:
            tf[0](im)
            tf[1](im)
        times.append(time.perf_counter() - t0)
    return len(imgs) / float(np.median(times))


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    random.seed(0)
    rng = np.random.RandomState(0)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    big = [Image.fromarray(rng.randint(0, 256, (375, 500, 3), dtype=np.uint8), "RGB") for _ in range(n)]
    tf = official(224, (1.0, 0.1), (0.0, 0.2), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    print("imagenet %.2f" % rate(tf, big, 3))
    small = [Image.fromarray(rng.randint(0, 256, (28, 28), dtype=np.uint8), "L") for _ in range(n * 16)]
    tf = official(28, (0.0, 0.0), (0.0, 0.0), [0.2860], [0.3530], gray=False, cj=(0.4, 0.4, 0, 0),
                  scale=(0.2, 1.0))
    print("fmnist %.2f" % rate(tf, small, 3))


if __name__ == "__main__":
    main()
