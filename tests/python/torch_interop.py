"""A checkpoint written by libbarlow loads into the matching PyTorch module with
strict=True and gives the same eval-mode features, and a seeded torchvision
resnet18's weights go into a libbarlow model and come back out with the same
names, dtypes and bytes (run by make check when /usr/bin/python3 has PyTorch;
skipped otherwise).
Usage: /usr/bin/python3 tests/python/torch_interop.py build/libbarlow.so.X.Y.Z"""
import ctypes
import os
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "golden"))
sys.path.insert(0, os.path.join(here, "..", "..", "examples"))
try:
    import numpy as np
    import torch
    import torchvision
    from torchvision.models.resnet import BasicBlock
except ImportError:
    print("torch-interop: skipped (no PyTorch for this interpreter)")
    sys.exit(0)
import gen_safetensors  # noqa: E402
import torch_to_safetensors  # noqa: E402
from gen_model import Net  # noqa: E402

lib = ctypes.CDLL(sys.argv[1])
lib.bt_last_error.restype = ctypes.c_char_p
lib.bt_tensor_data.restype = ctypes.POINTER(ctypes.c_float)
lib.bt_tensor_data.argtypes = [ctypes.c_void_p]
P = ctypes.c_void_p


def ok(status, what):
    if status != 0:
        print("torch-interop: FAIL", what, lib.bt_last_error().decode())
        sys.exit(1)


def tensor(*shape):
    t = P()
    ok(lib.bt_tensor_create(ctypes.byref(t), len(shape), (ctypes.c_int64 * len(shape))(*shape)), "tensor")
    return t


def fill(t, a):
    a = np.ascontiguousarray(a, dtype=np.float32).ravel()
    ctypes.memmove(lib.bt_tensor_data(t), a.ctypes.data, a.nbytes)


def read(t, shape):
    n = int(np.prod(shape))
    return np.ctypeslib.as_array(lib.bt_tensor_data(t), shape=(n,)).reshape(shape).copy()


cfg = P()
ok(lib.bt_config_create(ctypes.byref(cfg)), "config")
for k, v in [("model.arch", "resnet"), ("model.blocks", "1-1-1"), ("model.widths", "16-32-64"),
             ("model.stem", "cifar"), ("model.in_channels", "1"), ("model.projector", "512-512-512"),
             ("seed", "3")]:
    ok(lib.bt_config_set(cfg, k.encode(), v.encode()), k)
model = P()
ok(lib.bt_model_create(ctypes.byref(model), cfg), "model")
rng = np.random.default_rng(0)
n = 6
xs = [tensor(n, 1, 28, 28) for _ in range(2)]
zs = [tensor(n, 512) for _ in range(2)]
for x in xs:
    fill(x, rng.standard_normal((n, 1, 28, 28)))
ok(lib.bt_model_forward(model, 2, (P * 2)(*xs), (P * 2)(*zs)), "forward")  # moves running stats
feat = tensor(n, 64)
ok(lib.bt_model_encode(model, xs[0], feat), "encode")
ours = read(feat, (n, 64))

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "m.safetensors")
    ok(lib.bt_checkpoint_save(path.encode(), model, None, None), "save")
    state, meta = gen_safetensors.load(path)
net = Net(BasicBlock, [1, 1, 1], [16, 32, 64], 1, True, [512, 512, 512])
net.load_state_dict(state, strict=True)
net.eval()
with torch.no_grad():
    theirs = net.backbone(torch.from_numpy(read(xs[0], (n, 1, 28, 28)))).numpy()
err = np.abs(ours - theirs).max() / np.abs(theirs).max()
if not err <= 1e-4:
    print("torch-interop: FAIL eval features differ, relative error %g" % err)
    sys.exit(1)

# torchvision's resnet18 in (a bare state dict, fc included) and out again
torch.manual_seed(5)
tv = torchvision.models.resnet18()
with torch.no_grad():
    for name, b in tv.named_buffers():  # running statistics other than the defaults
        if name.endswith("num_batches_tracked"):
            b.fill_(7)
        else:
            b.uniform_(0.5, 1.5)
state_in = tv.state_dict()
cfg18, model18 = P(), P()
ok(lib.bt_config_create(ctypes.byref(cfg18)), "config")
for k, v in [("model.arch", "resnet18"), ("model.projector", "64-32")]:
    ok(lib.bt_config_set(cfg18, k.encode(), v.encode()), k)
ok(lib.bt_model_create(ctypes.byref(model18), cfg18), "resnet18 model")
report = ctypes.create_string_buffer(4096)
with tempfile.TemporaryDirectory() as d:
    src, out = os.path.join(d, "tv.safetensors"), os.path.join(d, "out.safetensors")
    torch.save(state_in, src + ".pth")  # in as a user brings it: a .pth, converted
    torch_to_safetensors.write(src, torch_to_safetensors.state_dict_of(src + ".pth"))
    ok(lib.bt_checkpoint_load_ex(src.encode(), model18, None, None, b"=backbone.", 3, report,
                                 ctypes.c_size_t(4096)), "load_ex torchvision")
    ok(lib.bt_checkpoint_save_ex(out.encode(), model18, None, None, b"backbone.=", 1), "save_ex")
    state_out, _ = gen_safetensors.load(out)
want = {k: v for k, v in state_in.items() if not k.startswith("fc.")}
bad = [k for k in want if k not in state_out or state_out[k].dtype != want[k].dtype
       or not torch.equal(state_out[k], want[k])]
if sorted(state_out) != sorted(want) or bad:
    print("torch-interop: FAIL torchvision round trip: names or bytes differ", bad[:3])
    sys.exit(1)
if b"skipped fc.weight" not in report.value or b"kept projector.0.weight" not in report.value:
    print("torch-interop: FAIL load_ex report:", report.value.decode()[:200])
    sys.exit(1)
tv.fc = torch.nn.Identity()
tv.load_state_dict(state_out, strict=True)
print("torch-interop: 2 passed, 0 failed (strict=True load, eval features within %.1e; metadata %s;"
      " torchvision resnet18 in and out bit-identical)" % (err, meta.get("libbarlow.version")))
