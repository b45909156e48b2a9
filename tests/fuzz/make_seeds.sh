#!/usr/bin/env bash
# tests/fuzz/make_seeds.sh - regenerate the seed corpora tests/fuzz/corpus/<target>/
# (make fuzz-seeds; docs/fuzz.md). Small valid inputs of each format and a few near
# misses; libFuzzer mutates from there. Needs /usr/bin/python3 with numpy and PIL
# (python3-numpy, python3-pil) and the fuzz_checkpoint binary (make fuzz-build), which
# writes the real checkpoints of its tiny model when FUZZ_SEED_OUT names a folder.
# Deterministic: running it twice gives the same bytes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD:-$root/build/fuzz}
out=$here/corpus
rm -rf "$out"
mkdir -p "$out"/{safetensors,checkpoint,config,idx,cifar,folder}

# checkpoint: what bt_checkpoint_save writes for the target's own model (model +
# LARS + augment, model only), and the golden files written by PyTorch
FUZZ_SEED_OUT="$out/checkpoint" OMP_NUM_THREADS=1 "$build/fuzz_checkpoint" > /dev/null
cp "$root/tests/golden/st_torch_model.safetensors" "$out/checkpoint/torch_model.safetensors"
cp "$root/tests/golden/st_legacy.safetensors" "$out/checkpoint/legacy.safetensors"

# safetensors: the golden files, and the target's model-only checkpoint
for f in st_escaped st_legacy st_mixed st_torch_model; do
  cp "$root/tests/golden/$f.safetensors" "$out/safetensors/$f.safetensors"
done
cp "$out/checkpoint/model.safetensors" "$out/safetensors/barlow_model.safetensors"

/usr/bin/python3 - "$out" "$root" <<'PY'
import gzip, io, json, os, struct, sys, zlib
import numpy as np
from PIL import Image

out, root = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(23)

def put(target, name, data):
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)

# ---- safetensors: one file per dtype, edge cases of the header -------------------
def st(tensors, meta=None, pad=True):
    hdr, blobs, off = {}, [], 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)

types = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
         "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "u1"}
for dt, np_t in types.items():
    v = (np.arange(6) - 2).astype(np.float64)
    if dt == "BOOL":
        v = v % 2
    if dt.startswith("U"):
        v = np.abs(v)
    put("safetensors", f"dtype_{dt}.safetensors", st([("t", dt, [2, 3], v.astype(np_t).tobytes())]))
put("safetensors", "dtype_BF16.safetensors", st([("t", "BF16", [2], b"\x80\x3f\x00\xc0")]))
put("safetensors", "dtype_F8.safetensors", st([("a", "F8_E4M3", [2], b"\x38\x40"),
                                               ("b", "F8_E5M2", [1], b"\x3c")]))
put("safetensors", "f64_inexact.safetensors", st([("x", "F64", [1], struct.pack("<d", 0.1))]))
put("safetensors", "i64_big.safetensors", st([("x", "I64", [1], struct.pack("<q", (1 << 24) + 1))]))
put("safetensors", "empty_header.safetensors", st([]))
put("safetensors", "meta_only.safetensors", st([], {"k": "v", "format": "pt"}))
put("safetensors", "scalar_empty.safetensors",
    st([("s", "F32", [], struct.pack("<f", 1.5)), ("e", "F32", [0, 4], b"")], {"a\"b": "c\\d\u00e9"}))
put("safetensors", "rank8.safetensors", st([("r", "U8", [1] * 8, b"\x07")], pad=False))
put("safetensors", "escapes.safetensors",
    struct.pack("<Q", 64) + b'{"\\u00e9\\ud83d\\ude00\\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'[:64].ljust(64) + b"\x01")
put("safetensors", "short.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{}")

# ---- config: bt_config_set (name=value / name NUL value), lines, CLI files ----------
cfgs = {
    "set_arch": b"model.arch=resnet18",
    "set_nul": b"model.widths\x0016-32-64",
    "set_real": b"loss.lambda=0.0051",
    "set_view": b"aug.view2.solarize_p=0.2",
    "set_list": b"aug.view1.mean=0.5,0.4,0.3",
    "set_bad": b"model.blokcs=1-1",
    "lines": b"model.arch=resnet\nmodel.blocks=1-1\nmodel.widths=8-16\nmodel.stem=cifar\n"
             b"model.in_channels=1\nmodel.projector=32-16\n",
    "lines_aug": b"aug.view1.size=32\naug.view1.mean=0.4914,0.4822,0.4465\naug.view1.std=0.247,0.243,0.261\n",
    "cli_file": b"# a barlow config file\n\n  optim.kind = lars \nloss.lambda=0.0051\r\n"
                b"optim.lr=4\n\t# indented comment\naug.preset=fmnist\nseed = 7\n",
    "cli_bad": b"optim.kind=lars\nnot an option line\n",
}
for k, v in cfgs.items():
    put("config", k + ".txt", v)

# ---- idx (fuzz_idx: flags, le16 images length, images file, labels file) -------------
def idx_pair(n, r, c):
    img = struct.pack(">IIII", 0x803, n, r, c) + rng.integers(0, 256, n * r * c, dtype=np.uint8).tobytes()
    lab = struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n))
    return img, lab
def idx_seed(flags, img, lab):
    return bytes([flags]) + struct.pack("<H", len(img)) + img + lab
img, lab = idx_pair(3, 4, 4)
put("idx", "plain_train", idx_seed(0x00, img, lab))
put("idx", "gzip_here_test", idx_seed(0x15, img, lab))
put("idx", "limit", idx_seed(0x20, img, lab))
gz = lambda b: gzip.compress(b, mtime=0)
put("idx", "gzip_raw", idx_seed(0x0a, gz(img), gz(lab)))
img, lab = idx_pair(2, 28, 28)
put("idx", "fmnist_28", idx_seed(0x05, img, lab))
put("idx", "bad_count", idx_seed(0x00, img, struct.pack(">II", 0x801, 3) + b"\x01\x02\x03"))

# ---- cifar (fuzz_cifar: flags, batch file) --------------------------------------------
def cifar(n):
    return b"".join(bytes([i % 10]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for i in range(n))
put("cifar", "single_train", b"\x00" + cifar(2))
put("cifar", "single_test_limit", b"\x03" + cifar(1))
put("cifar", "folder", b"\x04" + cifar(1))
put("cifar", "folder_sub_test", b"\x0d" + cifar(1))
put("cifar", "bad_label", b"\x00" + b"\x0c" + bytes(3072))

# ---- folder (fuzz_folder: flags, copies, image file) ------------------------------------
EXT = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".psd"]
def folder(name, ext, data, rgb=1, labelled=0, test=0, copies=0):
    flags = rgb | labelled << 1 | test << 2 | EXT.index(ext) << 3
    put("folder", name, bytes([flags, copies]) + data)
def pil(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()
px = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
rgb = Image.fromarray(px, "RGB")
gray = rgb.convert("L")
folder("png_rgb", ".png", pil(rgb, "PNG"))
folder("png_gray_1ch", ".png", pil(gray, "PNG"), rgb=0)
folder("png_rgba", ".png", pil(rgb.convert("RGBA"), "PNG"), labelled=1)
folder("png_palette", ".png", pil(rgb.convert("P"), "PNG"))
folder("png_16bit", ".png", pil(Image.fromarray((px[:, :, 0].astype(np.uint16) * 257), "I;16"), "PNG"))
folder("png_class_test", ".png", pil(rgb, "PNG"), labelled=1, test=1, copies=1)
folder("jpeg_base", ".jpg", pil(rgb, "JPEG", quality=90))
folder("jpeg_prog", ".jpeg", pil(rgb, "JPEG", quality=75, progressive=True), rgb=0)
folder("jpeg_gray", ".jpg", pil(gray, "JPEG"))
folder("bmp_24", ".bmp", pil(rgb, "BMP"))
folder("bmp_8", ".bmp", pil(rgb.convert("P"), "BMP"), rgb=0)
folder("gif", ".gif", pil(rgb.convert("P"), "GIF"))
folder("tga", ".tga", pil(rgb, "TGA"))
folder("tga_rle", ".tga", pil(rgb, "TGA", compression="tga_rle"))
folder("ppm", ".ppm", pil(rgb, "PPM"))
folder("pgm", ".pgm", pil(gray, "PPM"), rgb=0)
# PSD: version 1, 3 channels, 8 bits, RGB, raw image data
h, w = 4, 3
psd = (b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3) + struct.pack(">I", 0) * 3
       + struct.pack(">H", 0) + bytes(rng.integers(0, 256, 3 * h * w, dtype=np.uint8)))
folder("psd_raw", ".psd", psd)
PY
# config.dict: every option name of docs/options.md (and its per-view forms), the list
# and value syntax
{
  echo "# tests/fuzz/config.dict - option names and value tokens (make_seeds.sh from docs/options.md)"
  sed -n 's/^| `\([a-z_.0-9]*\)` |.*/\1/p' "$root/docs/options.md" | while read -r n; do
    echo "\"$n=\""
    case $n in aug.preset) ;; aug.*) echo "\"aug.view1.${n#aug.}=\""; echo "\"aug.view2.${n#aug.}=\"" ;; esac
  done
  for t in '=' '\x0a' '\x00' '-' ',' '1e308' '-0' 'nan' 'inf' '0x10' '99999999999999999999' '#' ' ' '\x0d\x0a'; do
    echo "\"$t\""
  done
} > "$here/config.dict"

echo "make_seeds: $(find "$out" -type f | wc -l) seeds, $(du -sh "$out" | cut -f1)"
du -sk "$out"/* | sed 's/^/  /'
