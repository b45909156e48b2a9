"""Convert a PyTorch weights file (.pth: a state dict, or a dict holding one
under "state_dict" or "model") to safetensors, which libbarlow reads; the
library itself never parses pickle. Needs PyTorch (Debian's python3-torch).

Usage: /usr/bin/python3 examples/torch_to_safetensors.py IN.pth OUT.safetensors
       /usr/bin/python3 examples/torch_to_safetensors.py --torchvision resnet50 OUT.safetensors
The second form writes torchvision's own (random-init, seeded) weights of that
architecture, for trying the load path. Load the result with
bt_checkpoint_load_ex(OUT, m, NULL, NULL, "=backbone.",
BT_LOAD_PARTIAL | BT_LOAD_IGNORE_EXTRA, report, cap) (docs/checkpoint.md)."""
import json
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
          torch.int64: "I64", torch.int32: "I32"}


def state_dict_of(path):
    obj = torch.load(path, map_location="cpu")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return {k: v for k, v in obj.items() if torch.is_tensor(v)}


def write(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in DTYPES:
            sys.exit("%s: dtype %s has no safetensors code here" % (name, t.dtype))
        raw = t.numpy().tobytes()  # x86 and arm64 are little endian, as the format is
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for raw in blobs:
            f.write(raw)


def main(argv):
    if len(argv) == 4 and argv[1] == "--torchvision":
        import torchvision
        torch.manual_seed(0)
        tensors = getattr(torchvision.models, argv[2])().state_dict()
        out = argv[3]
    elif len(argv) == 3:
        tensors, out = state_dict_of(argv[1]), argv[2]
    else:
        sys.exit(__doc__)
    write(out, tensors)
    print("%s: %d tensors" % (out, len(tensors)))


if __name__ == "__main__":
    main(sys.argv)
