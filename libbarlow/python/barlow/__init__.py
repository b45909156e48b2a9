"""barlow - Barlow Twins self-supervised training in Python, over libbarlow.

Pure Python over ctypes (no compiled extension) and numpy::

    import numpy as np, barlow

    cfg = barlow.Config({"model.arch": "resnet", "model.blocks": "1-1", "model.widths": "8-16",
                         "model.stem": "cifar", "model.in_channels": 1,
                         "model.projector": [128, 128], "aug.preset": "fmnist"})
    with barlow.Model(cfg) as model, barlow.Loss(cfg) as loss, \\
            barlow.Augment(cfg) as aug, barlow.Optim(cfg) as opt:
        opt.add_model(model)
        images = np.zeros((32, 28, 28), np.uint8)       # uint8 [N, H, W] or [N, H, W, C]
        views = aug.views(images)                        # 2 x float32 [N, 1, 28, 28]
        model.zero_grad()
        za, zb = model.forward(views)
        value = loss.forward(za, zb)
        model.backward(loss.backward())
        opt.step()
        barlow.save_checkpoint("run.safetensors", model, opt, aug)

Library lookup (first that loads wins): ``barlow.load_library(path)`` called
before any other use; ``$BARLOW_LIBRARY``; the install prefix's
``LIBDIR/libbarlow.so.0`` recorded by ``install.sh``; then the system loader
(``ctypes.util.find_library("barlow")``, ``libbarlow.so.0``). Failure raises
:class:`LibraryNotFoundError` listing every place tried and why.

Errors: every failing call raises :class:`Error` (``.status``,
``.status_name`` such as ``"BT_E_SHAPE"``, ``.message`` = the library's
``bt_last_error()`` text). Checks made in Python before the library is called
(dtype, contiguity, list-vs-array) raise :class:`ArgumentTypeError` /
:class:`ArgumentValueError`, subclasses of both Error and TypeError /
ValueError; unknown option names raise :class:`UnknownOptionError` (also a
KeyError). A failed call changes nothing.

Memory: float32 C-contiguous arrays pass to the library without a copy
(``bt_tensor_wrap``; the wrapper keeps the array alive while the tensor lives).
Results (embeddings, gradients, views) are new numpy arrays the library wrote
in place, or the ``out=`` arrays you give. ``Tensor.numpy()`` and the
tensors of ``Model.named_tensors()`` are views of library memory that keep it
alive. Borrowed results that the library may overwrite or free
(``Model.features()``, ``Model.state_dict()``) are copies.

Objects: ``close()`` or a ``with`` block releases a handle; later calls raise
Error (BT_E_MISUSE). Memory still referenced by views, borrowed tensors or an
optimizer is freed when the last of them goes. Garbage collection frees
everything else.

Threads and processes: a handle is used by one thread at a time; ctypes
releases the GIL during calls. libgomp (GCC's OpenMP, which libbarlow uses)
does not support fork(): once the library has run an OpenMP region (any
model, loss, augmentation or optimizer call with more than one thread), a
child created by fork() that calls into it can hang for ever. Use
``multiprocessing.get_context("spawn")`` or ``"forkserver"`` (and
``torch.utils.data.DataLoader(multiprocessing_context="spawn")``) for worker
processes that use barlow; forked workers that never call barlow are fine.
"""
from __future__ import annotations

from ._lib import (STATUS_CODES, STATUS_NAMES, ArgumentTypeError, ArgumentValueError, Error,
                   LibraryNotFoundError, UnknownOptionError, library_path, load_library)
from ._core import (Augment, Config, CrossEntropy, Layer, Loss, Model, OptionInfo, Optim, Tensor,
                    build_info, checkpoint_metadata, cpu_info, cpu_level, load_checkpoint, options,
                    read_checkpoint_config, save_checkpoint, status_string, version,
                    version_number)

__version__ = "0.1.0"

for _cls in (Augment, Config, CrossEntropy, Layer, Loss, Model, OptionInfo, Optim, Tensor, Error,
             ArgumentTypeError, ArgumentValueError, LibraryNotFoundError, UnknownOptionError):
    _cls.__module__ = "barlow"
del _cls

__all__ = [
    "Augment", "Config", "CrossEntropy", "Error", "ArgumentTypeError", "ArgumentValueError",
    "LibraryNotFoundError", "UnknownOptionError", "Layer", "Loss", "Model", "OptionInfo", "Optim",
    "Tensor", "STATUS_CODES", "STATUS_NAMES", "build_info", "checkpoint_metadata", "cpu_info",
    "cpu_level", "library_path", "load_checkpoint", "load_library", "options",
    "read_checkpoint_config", "save_checkpoint", "status_string", "version", "version_number",
]
