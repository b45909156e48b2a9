"""examples/train_numpy.py does what examples/train_loop.c does, bit for bit.

Both run in their own directory with the same step count and the same
BT_NUM_THREADS; each prints one line per step (loss, the raw on/off-diagonal
terms, the next rate) and writes a checkpoint holding every model tensor, the
LARS momentum of every parameter, the step count and the augmentation RNG
state. The lines must be equal and the two safetensors files byte-equal
(header, metadata and every tensor's bytes). Whether the run trained is
checked too (losses change, the weights moved from their initial values), so
the comparison cannot pass on two idle programs."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import barlow

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
STEPS = 3


def build_dir():
    d = os.environ.get("BARLOW_BUILD_DIR") or os.path.dirname(os.environ.get("BARLOW_LIBRARY") or "")
    return d or os.path.join(TOP, "build")


def read_safetensors(path):
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = {k: blob[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in header.items()}
    return meta, header, data


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    exe = os.path.join(build_dir(), "examples", "train_loop")
    if not os.path.exists(exe):
        pytest.fail("%s is missing: build it with make BUILD=%s %s" % (exe, build_dir(), exe))
    env = dict(os.environ, BT_NUM_THREADS=os.environ.get("BT_NUM_THREADS", "2"))
    c_dir, py_dir = tmp_path_factory.mktemp("c"), tmp_path_factory.mktemp("py")
    c = subprocess.run([exe, str(STEPS)], cwd=c_dir, env=env, capture_output=True, text=True,
                       timeout=120)
    assert c.returncode == 0, c.stderr
    py = subprocess.run([sys.executable, os.path.join(TOP, "examples", "train_numpy.py"), str(STEPS),
                         "train_loop.safetensors"], cwd=py_dir, env=env, capture_output=True,
                        text=True, timeout=120)
    assert py.returncode == 0, py.stderr
    return (c.stdout.splitlines(), c_dir / "train_loop.safetensors",
            py.stdout.splitlines(), py_dir / "train_loop.safetensors")


def test_same_printed_steps(runs):
    c_lines, _, py_lines, _ = runs
    assert len(c_lines) == STEPS + 1 and c_lines[-1] == "saved train_loop.safetensors"
    assert py_lines == c_lines
    losses = [float(l.split()[3]) for l in c_lines[:STEPS]]
    assert len(set(losses)) == STEPS, "the loss did not change: %s" % losses


def test_checkpoints_byte_equal(runs):
    _, c_file, _, py_file = runs
    c_meta, c_head, c_data = read_safetensors(c_file)
    p_meta, p_head, p_data = read_safetensors(py_file)
    assert p_meta == c_meta and c_meta["libbarlow.step"] == str(STEPS)
    assert c_meta["libbarlow.rng"] == "0 %d" % STEPS
    assert sorted(p_head) == sorted(c_head)
    differ = [k for k in c_head if c_data[k] != p_data[k] or c_head[k] != p_head[k]]
    assert not differ, "tensors that differ: %s" % differ[:10]
    assert any(k.startswith("optim.") for k in c_head)  # the optimizer state is compared too
    assert open(c_file, "rb").read() == open(py_file, "rb").read()


def test_training_moved_the_weights(runs):
    _, c_file, _, _ = runs
    cfg = barlow.Config.from_checkpoint(str(c_file))
    with barlow.Model(cfg) as fresh:
        init = fresh.state_dict()
    _, head, data = read_safetensors(c_file)
    moved = [k for k, v in init.items() if v.dtype == np.float32 and k in head
             and head[k]["dtype"] == "F32" and v.tobytes() != data[k]]
    assert len(moved) > len(init) // 2
