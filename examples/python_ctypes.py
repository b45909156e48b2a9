"""Calling libbarlow from Python with ctypes only (no compiled extension): a few
Barlow Twins steps on random images, with errors raised as exceptions.

    python3 examples/python_ctypes.py [path/to/libbarlow.so]
"""
import ctypes
import os
import random
import sys

here = os.path.dirname(os.path.abspath(__file__))
lib = ctypes.CDLL(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "build", "libbarlow.so"))
P = ctypes.c_void_p
lib.bt_last_error.restype = ctypes.c_char_p
lib.bt_status_string.restype = ctypes.c_char_p
lib.bt_model_embed_dim.restype = ctypes.c_int64
lib.bt_model_embed_dim.argtypes = [P]
lib.bt_optim_lr.restype = ctypes.c_double
lib.bt_optim_lr.argtypes = [P, ctypes.c_int32]
for name in ("bt_config_free", "bt_model_free", "bt_loss_free", "bt_augment_free", "bt_optim_free",
             "bt_tensor_free"):
    getattr(lib, name).argtypes = [P]


class BarlowError(RuntimeError):
    pass


def call(fn, *args):
    status = getattr(lib, fn)(*args)
    if status != 0:
        raise BarlowError("%s: %s: %s" % (fn, lib.bt_status_string(status).decode(),
                                          lib.bt_last_error().decode()))


def handle(create, *args):
    h = P()
    call(create, ctypes.byref(h), *args)
    return h


def tensor(*shape):
    return handle("bt_tensor_create", len(shape), (ctypes.c_int64 * len(shape))(*shape))


cfg = handle("bt_config_create")
for k, v in {"model.arch": "resnet", "model.blocks": "1-1", "model.widths": "8-16",
             "model.stem": "cifar", "model.in_channels": "1", "model.projector": "128-128",
             "aug.preset": "fmnist", "optim.batch_size": "32", "optim.warmup_steps": "2",
             "optim.total_steps": "5"}.items():
    call("bt_config_set", cfg, k.encode(), v.encode())
model = handle("bt_model_create", cfg)
loss = handle("bt_loss_create", cfg)
aug = handle("bt_augment_create", cfg)
opt = handle("bt_optim_create", cfg)
call("bt_optim_add_model", opt, model)
lib.bt_config_free(cfg)

n, side, dim = 32, 28, lib.bt_model_embed_dim(model)
rng = random.Random(0)
buffers = [(ctypes.c_uint8 * (side * side))(*[rng.randrange(256) for _ in range(side * side)])
           for _ in range(n)]
images = (ctypes.POINTER(ctypes.c_uint8) * n)(*[ctypes.cast(b, ctypes.POINTER(ctypes.c_uint8)) for b in buffers])
sizes = (ctypes.c_int32 * n)(*([side] * n))
# Keep the handles as c_void_p objects: a bare Python int would be passed as a 32-bit int.
view_list = [tensor(n, 1, side, side), tensor(n, 1, side, side)]
z_list = [tensor(n, dim), tensor(n, dim)]
dz_list = [tensor(n, dim), tensor(n, dim)]
views, z, dz = ((P * 2)(*lst) for lst in (view_list, z_list, dz_list))
value = ctypes.c_double()
for step in range(5):
    call("bt_augment_views", aug, n, images, sizes, sizes, 1, 2, views)
    call("bt_model_zero_grad", model)
    call("bt_model_forward", model, 2, views, z)
    call("bt_loss_forward", loss, z_list[0], z_list[1], ctypes.byref(value))
    call("bt_loss_backward", loss, dz_list[0], dz_list[1])
    call("bt_model_backward", model, 2, dz)
    call("bt_optim_step", opt)
    print("step %d  loss %.3f  next lr %.5f" % (step, value.value, lib.bt_optim_lr(opt, 0)))

try:
    call("bt_config_set", handle("bt_config_create"), b"loss.lambda", b"-1")
except BarlowError as e:
    print("errors arrive as exceptions:", e)
for t in view_list + z_list + dz_list:
    lib.bt_tensor_free(t)
for fn, h in (("bt_optim_free", opt), ("bt_augment_free", aug), ("bt_loss_free", loss),
              ("bt_model_free", model)):
    getattr(lib, fn)(h)
