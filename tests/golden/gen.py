#!/usr/bin/env python3
"""Regenerate every golden file under tests/golden/ with PyTorch.

Run with Debian's interpreter, which sees Debian's python3-torch:
    bash .ci/deps.sh golden && /usr/bin/python3 tests/golden/gen.py [module ...]
Each tests/golden/gen_<module>.py defines main(outdir); this driver runs them all
(or the ones named). The outputs are committed so the tests never need PyTorch."""
import importlib
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)


def main():
    names = sys.argv[1:] or sorted(f[4:-3] for f in os.listdir(here)
                                   if f.startswith("gen_") and f.endswith(".py"))
    import torch
    torch.set_num_threads(1)
    for name in names:
        print("golden:", name)
        importlib.import_module("gen_" + name).main(here)


if __name__ == "__main__":
    main()
