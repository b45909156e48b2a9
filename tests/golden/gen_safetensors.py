"""Fixtures for tests/check_safetensors.c: safetensors files made from PyTorch.

The `safetensors` package is not packaged for Debian 12, so save() below is a
faithful re-implementation of its writer (safetensors/src/tensor.rs `prepare`
and `Metadata`'s serialisation, which `safetensors.torch.save_file` calls):
  - tensors sorted by dtype rank DESCENDING (the order of the Dtype enum:
    BOOL U8 I8 F8_E5M2 F8_E4M3 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64), then by
    name; so I64/F64 data comes first and every tensor is aligned to its size;
  - the header is serde_json's compact output: "__metadata__" first (if any),
    then the tensors in that order, each {"dtype","shape","data_offsets"};
    only '"', '\\' and control characters are escaped, other text is raw UTF-8;
  - the header is padded with spaces to a multiple of 8 bytes.
The keys are therefore NOT sorted alphabetically: they are in data order.

Files written (all small):
  st_torch_model.safetensors  state_dict of a tiny model named like the official
                              BarlowTwins module (backbone.*, projector.*), after
                              two training forwards: F32 tensors plus I64 scalars
                              "num_batches_tracked" of shape []; metadata format=pt
  st_torch_model.bin          the same values as float32 (golden_io), to compare
  st_mixed.safetensors        F64/I64/I32/I16/U8/BOOL/F16/BF16/F32 tensors, an empty
                              tensor, a scalar, metadata with quotes, backslashes,
                              control characters and non-ASCII text
  st_mixed.bin                expected float32 values
  st_escaped.safetensors      the same content with every non-ASCII character of
                              the header written as \\uXXXX (surrogate pairs too)
  st_legacy.safetensors       an older layout other writers produce: tensors in
                              name order (F64/I64 data not 8-byte aligned), JSON
                              with spaces, header not padded, no metadata
"""
import json
import os
import struct

import numpy as np

from golden_io import write as golden_write

RANK = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16",
        "I32", "U32", "F32", "F64", "I64", "U64"]
NUMPY = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16",
         "float16": "F16", "int32": "I32", "uint32": "U32", "float32": "F32",
         "float64": "F64", "int64": "I64", "uint64": "U64"}


def _entry(value):
    """(dtype code, shape, little-endian bytes) of a torch tensor or numpy array."""
    if hasattr(value, "detach"):
        import torch
        t = value.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            return "BF16", list(t.shape), t.view(torch.int16).numpy().astype("<i2").tobytes()
        value = t.numpy()
    a = np.asarray(value)  # not ascontiguousarray: it turns shape [] into [1]
    if not a.flags.c_contiguous:
        a = a.copy(order="C")
    return NUMPY[a.dtype.name], list(a.shape), a.astype(a.dtype.newbyteorder("<")).tobytes()


def save(path, tensors, metadata=None, legacy=False):
    """Write tensors (dict name -> tensor/array) as safetensors.save_file does.
    legacy=True: name order only, ", "/": " separators, no padding."""
    items = [(name,) + _entry(v) for name, v in tensors.items()]
    if legacy:
        items.sort(key=lambda x: x[0])
    else:
        items.sort(key=lambda x: (-RANK.index(x[1]), x[0]))
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name, code, shape, raw in items:
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    if legacy:
        hb = json.dumps(header).encode()
    else:
        hb = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for raw in blobs:
            f.write(raw)


def load(path):
    """The loader shown in docs/checkpoint.md (json + numpy + torch only)."""
    import torch
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    state = {}
    for name, h in header.items():
        begin, end = h["data_offsets"]
        a = np.frombuffer(data[begin:end], dtype=dtypes[h["dtype"]]).reshape(h["shape"])
        state[name] = torch.from_numpy(a.copy())
    return state, meta


def tiny_model():
    """A module whose state_dict names follow the official BarlowTwins model."""
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn1(self.conv1(x)).relu() + x

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(4)
            self.layer1 = nn.Sequential(Block())

        def forward(self, x):
            x = self.layer1(self.bn1(self.conv1(x)).relu())
            return x.mean(dim=(2, 3))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = Backbone()
            self.projector = nn.Sequential(nn.Linear(4, 8, bias=False), nn.BatchNorm1d(8),
                                           nn.ReLU(), nn.Linear(8, 6, bias=False))

        def forward(self, x):
            return self.projector(self.backbone(x))

    return Net()


def main(outdir):
    import torch
    torch.manual_seed(0)

    # 1. A PyTorch state_dict, after two training forwards (running stats move,
    #    num_batches_tracked = 2, an int64 tensor of shape []).
    net = tiny_model().train()
    for _ in range(2):
        net(torch.randn(5, 1, 6, 6))
    sd = net.state_dict()
    assert sd["backbone.bn1.num_batches_tracked"].dtype == torch.int64
    assert sd["backbone.bn1.num_batches_tracked"].shape == torch.Size([])
    p = os.path.join(outdir, "st_torch_model.safetensors")
    save(p, sd, {"format": "pt"})
    golden_write(os.path.join(outdir, "st_torch_model.bin"),
                 {k: v.to(torch.float32) for k, v in sd.items()})
    # The documented loader gives the module back with strict=True.
    state, meta = load(p)
    assert meta == {"format": "pt"}
    other = tiny_model()
    other.load_state_dict(state, strict=True)
    for k, v in other.state_dict().items():
        assert torch.equal(v, sd[k]), k
    x = torch.randn(3, 1, 6, 6)
    assert torch.equal(net.eval()(x), other.eval()(x))

    # 2. Every dtype the reader converts, exact values only.
    g = torch.Generator().manual_seed(1)
    f32 = torch.randn(2, 3, generator=g)
    mixed = {
        "a.f64": f32.to(torch.float64),                      # float32 values held as F64
        "a.f64_special": np.array([0.0, -0.0, np.inf, -np.inf, 2.0 ** -149], np.float64),
        "b.i64": np.array([0, -7, 2 ** 24, -(2 ** 24), 123456], np.int64),
        "b.i64_big": np.array([2 ** 40, -(2 ** 62)], np.int64),  # powers of two: exact
        "c.i32": np.array([[1, -2], [3, 2 ** 31 - 128]], np.int32),
        "c.i16": np.array([-32768, 32767], np.int16),
        "c.u8": np.array([0, 1, 255], np.uint8),
        "c.bool": np.array([True, False, True]),
        "d.f16": np.array([1.0, -2.5, 6.1035156e-05, 5.9604645e-08, 65504.0], np.float16),
        "d.bf16": torch.tensor([1.0, -3.0, 1e30], dtype=torch.bfloat16),
        "e.f32": torch.randn(4, generator=g),
        "e.empty": np.zeros((0, 3), np.float32),
        "e.scalar": np.array(2.5, np.float32),
        "\u00e9t\u00e9 \u65e5\u672c \U0001F600": np.array([1.0], np.float32),
    }
    meta = {
        "format": "pt",
        "quote \" back \\ slash": "line1\nline2\ttab \x01 ctrl \x1f / slash",
        "unicode": "caf\u00e9 \u65e5\u672c\u8a9e \U0001F600",
        "empty": "",
    }
    save(os.path.join(outdir, "st_mixed.safetensors"), mixed, meta)
    expect = {}
    for k, v in mixed.items():
        if hasattr(v, "detach"):
            v = v.detach().to(torch.float32).numpy()
        expect[k] = np.asarray(v, np.float32).reshape(-1) if np.asarray(v).size else \
            np.zeros(0, np.float32)
    golden_write(os.path.join(outdir, "st_mixed.bin"),
                 {k: v for k, v in expect.items() if v.size})

    # 3. The same content with an ASCII-only header (\uXXXX escapes).
    p = os.path.join(outdir, "st_escaped.safetensors")
    save(p, mixed, meta)
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    hb = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    hb += b" " * (-len(hb) % 8)
    assert b"\\ud83d\\ude00" in hb
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + data)

    # 4. Legacy layout: name order, misaligned F64/I64 data, spaces, no padding.
    save(os.path.join(outdir, "st_legacy.safetensors"),
         {"a": np.array([1.5, 2.5, 3.5], np.float32),
          "b": np.array([0.25, -8.0], np.float64),
          "c": np.array(41, np.int64)}, legacy=True)
