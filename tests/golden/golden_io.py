"""Writer of the golden-file format read by tests/util_golden.c.

Layout (little endian): b"BTGOLD1\\n", uint32 count, then per tensor:
uint16 name length, name (UTF-8), uint8 ndim, int64 dims[ndim], float32 data (C order).
Scalars are stored as 1-element tensors of shape [1]."""
import struct

import numpy as np


def write(path, tensors):
    """tensors: dict name -> array-like (torch tensors are converted)."""
    with open(path, "wb") as f:
        f.write(b"BTGOLD1\n")
        f.write(struct.pack("<I", len(tensors)))
        for name, value in tensors.items():
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            a = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
            if a.ndim == 0:
                a = a.reshape(1)
            raw = name.encode()
            f.write(struct.pack("<H", len(raw)) + raw)
            f.write(struct.pack("<B", a.ndim))
            f.write(struct.pack("<%dq" % a.ndim, *a.shape))
            f.write(a.astype("<f4").tobytes())
