"""Golden data for the augmentation ops: every operation of the official
pipeline run by Pillow / torchvision (PIL path) with its random parameters
fixed, on small fixtures (29 x 37 RGB and gray images, plus a 3 x 5 one).

Layout of augment.bin: "img.<k>" input images [H, W, C] (uint8 values as
float32); for each case "<op>.<k>.src" (image index), "<op>.<k>.p" (the
parameters) and "<op>.<k>.out" (the uint8 result, or the float tensor for
"eval" and "pipe"). Run: /usr/bin/python3 tests/golden/gen.py augment"""
import os

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageFilter, ImageOps

import golden_io

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
FMNIST = ([0.2860], [0.3530])


def fixtures():
    rng = np.random.RandomState(1234)
    h, w = 29, 37
    y, x = np.mgrid[0:h, 0:w]
    # smooth colours + noise, with a saturated band, a black and a white corner
    # and a few grey pixels (max == min in HSV)
    base = np.stack([x * 255.0 / (w - 1), y * 255.0 / (h - 1), 128 + 100 * np.sin(x / 4.0 + y / 3.0)], -1)
    img0 = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
    img0[3:7, :, :] = [250, 10, 30]
    img0[:5, :5] = 0
    img0[-4:, -4:] = 255
    img0[10, 10:20] = 77
    img1 = rng.randint(0, 256, size=(h, w, 3)).astype(np.uint8)
    gray = np.clip(0.6 * base[..., 0] + 0.4 * base[..., 1] + rng.normal(0, 25, (h, w)), 0, 255)
    gray = gray.astype(np.uint8)[..., None]
    tiny = rng.randint(0, 256, size=(3, 5, 3)).astype(np.uint8)
    tall = np.ascontiguousarray(img1.transpose(1, 0, 2))  # 37 x 29
    return [img0, img1, gray, tiny, tall]


def pil(a):
    return Image.fromarray(a[..., 0], "L") if a.shape[2] == 1 else Image.fromarray(a, "RGB")


def arr(im):
    a = np.asarray(im, dtype=np.float32)
    return a[..., None] if a.ndim == 2 else a


def f32(v):
    return float(np.float32(v))


def main(outdir):
    imgs = fixtures()
    out = {}
    for k, a in enumerate(imgs):
        out["img.%d" % k] = a.astype(np.float32)
    count = {}

    def add(op, src, params, result):
        k = count.get(op, 0)
        count[op] = k + 1
        out["%s.%d.src" % (op, k)] = np.float32(src)
        out["%s.%d.p" % (op, k)] = np.asarray(params, dtype=np.float32)
        out["%s.%d.out" % (op, k)] = result

    # colour operations (uint8 results)
    for src, fs in ((0, [0.3, 0.95, 1.0, 1.4, 2.7]), (2, [0.6, 1.3])):
        for f in fs:
            add("brightness", src, [f32(f)], arr(F.adjust_brightness(pil(imgs[src]), f32(f))))
    for src, fs in ((0, [0.3, 0.61, 1.0, 1.37, 2.7]), (2, [0.6, 1.3])):
        for f in fs:
            add("contrast", src, [f32(f)], arr(F.adjust_contrast(pil(imgs[src]), f32(f))))
    for src, fs in ((0, [0.0, 0.5, 1.2, 1.7]), (1, [0.83])):
        for f in fs:
            add("saturation", src, [f32(f)], arr(F.adjust_saturation(pil(imgs[src]), f32(f))))
    for src, hs in ((1, [-0.5, -0.1, -0.0531, -0.001, 0.05, 0.1, 0.37]), (0, [0.1, -0.07])):
        for h in hs:
            add("hue", src, [f32(h)], arr(F.adjust_hue(pil(imgs[src]), f32(h))))
    for src in (0, 1):
        add("gray", src, [0], arr(F.to_grayscale(pil(imgs[src]), num_output_channels=3)))
    for src in (0, 2):
        add("solarize", src, [128], arr(ImageOps.solarize(pil(imgs[src]), 128)))
        add("flip", src, [0], arr(F.hflip(pil(imgs[src]))))
    for src, ss in ((0, [0.1, 0.5, 1.0, 1.37, 2.0]), (2, [0.77, 2.0]), (3, [1.5])):
        for s in ss:
            add("blur", src, [f32(s)], arr(pil(imgs[src]).filter(ImageFilter.GaussianBlur(f32(s)))))

    # RandomResizedCrop's resize: [top, left, h, w, S, bicubic]
    resize_cases = [
        (0, [0, 0, 29, 37, 16, 1]), (0, [3, 5, 20, 11, 16, 1]), (0, [1, 2, 9, 7, 24, 1]),
        (0, [2, 4, 27, 16, 16, 1]), (0, [0, 0, 29, 37, 40, 1]), (0, [5, 6, 13, 13, 5, 1]),
        (0, [0, 0, 29, 37, 16, 0]), (0, [3, 5, 20, 11, 16, 0]), (0, [1, 2, 9, 7, 24, 0]),
        (0, [4, 1, 16, 21, 16, 1]),  # crop height == S: no vertical pass
        (0, [4, 1, 25, 16, 16, 0]),  # crop width == S: no horizontal pass
        (1, [7, 3, 22, 30, 12, 1]), (2, [0, 3, 28, 28, 20, 1]), (2, [2, 2, 17, 23, 9, 0]),
        (3, [0, 0, 3, 5, 8, 1]), (4, [6, 2, 30, 20, 14, 1]),
    ]
    for src, (top, left, h, w, s, bic) in resize_cases:
        interp = T.InterpolationMode.BICUBIC if bic else T.InterpolationMode.BILINEAR
        r = F.resized_crop(pil(imgs[src]), top, left, h, w, [s, s], interpolation=interp)
        add("resize", src, [top, left, h, w, s, bic], arr(r))

    # RandomResizedCrop.get_params when every attempt fails (deterministic fallback):
    # [H, W, scale_lo, scale_hi, ratio_lo, ratio_hi] -> [top, left, h, w]
    for hh, ww, slo, shi, rlo, rhi in ((10, 200, 0.9, 1.0, 3 / 4, 4 / 3), (200, 10, 0.9, 1.0, 3 / 4, 4 / 3),
                                       (7, 9, 0.99, 1.0, 2.0, 3.0), (5, 12, 0.95, 1.0, 0.2, 0.4),
                                       (8, 8, 0.99, 1.0, 1.5, 2.5), (4, 5, 0.99, 1.0, 2.0, 3.0)):
        # float32 values, as the golden file stores them (ties of round() depend on it)
        slo, shi, rlo, rhi = f32(slo), f32(shi), f32(rlo), f32(rhi)
        torch.manual_seed(0)
        i, j, h, w = T.RandomResizedCrop.get_params(Image.new("L", (ww, hh)), [slo, shi], [rlo, rhi])
        add("fallback", 0, [hh, ww, slo, shi, rlo, rhi], np.float32([i, j, h, w]))

    # the evaluation transform: Resize(round(S*256/224)), CenterCrop(S), ToTensor, Normalize
    for src, s in ((0, 16), (0, 28), (2, 20), (4, 16), (3, 3), (1, 29)):
        mean, std = FMNIST if imgs[src].shape[2] == 1 else IMAGENET
        r = (s * 256 + 112) // 224
        t = T.Compose([T.Resize(r), T.CenterCrop(s), T.ToTensor(), T.Normalize(mean, std)])
        add("eval", src, [s], t(pil(imgs[src])).numpy())

    # the whole pipeline with fixed parameters:
    # [top, left, h, w, S, bicubic, flip, jitter, order x4, has x4, factor x4, gray, blur, sigma, solarize]
    rng = np.random.RandomState(99)
    for k in range(10):
        src = [0, 1, 2, 4][k % 4]
        hh, ww = imgs[src].shape[:2]
        h = int(rng.randint(4, hh + 1))
        w = int(rng.randint(4, ww + 1))
        top = int(rng.randint(0, hh - h + 1))
        left = int(rng.randint(0, ww - w + 1))
        s = [24, 16, 20][k % 3]
        bic = int(k % 5 != 2)
        flip = int(rng.rand() < 0.5)
        jitter = int(k != 3)
        order = [int(v) for v in rng.permutation(4)]
        has = [1, 1, int(k != 5), int(k != 6)]
        factor = [f32(rng.uniform(0.6, 1.4)), f32(rng.uniform(0.6, 1.4)), f32(rng.uniform(0.8, 1.2)),
                  f32(rng.uniform(-0.1, 0.1))]
        gray = int(k in (2, 7))
        blur = int(k % 2 == 0)
        sigma = f32(rng.uniform(0.1, 2.0))
        sol = int(k in (1, 4, 8))
        img = F.resized_crop(pil(imgs[src]), top, left, h, w, [s, s],
                             interpolation=T.InterpolationMode.BICUBIC if bic else T.InterpolationMode.BILINEAR)
        if flip:
            img = F.hflip(img)
        if jitter:
            fns = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
            for op in order:
                if has[op]:
                    img = fns[op](img, factor[op])
        if gray:
            img = F.to_grayscale(img, num_output_channels=imgs[src].shape[2])
        if blur:
            img = img.filter(ImageFilter.GaussianBlur(radius=sigma))
        if sol:
            img = ImageOps.solarize(img, 128)
        mean, std = FMNIST if imgs[src].shape[2] == 1 else IMAGENET
        t = F.normalize(F.to_tensor(img), mean, std)
        add("pipe", src, [top, left, h, w, s, bic, flip, jitter] + order + has + factor + [gray, blur, sigma, sol],
            t.numpy())

    golden_io.write(os.path.join(outdir, "augment.bin"), out)
