"""Loading libbarlow and declaring its C API for ctypes.

Every ``BT_API`` function of ``include/barlow.h`` is declared in
:data:`DECLARATIONS` with its exact ``restype`` and ``argtypes``; the tests
parse the header and fail when a function is missing here or its arguments
differ. Handles are pointers to distinct opaque structures, so passing a model
where a tensor is expected is a ``ctypes.ArgumentError``, not a crash.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import (POINTER, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t, c_uint8,
                    c_uint32, c_uint64, c_void_p)
from typing import Dict, List, Optional, Tuple

# ---- statuses (include/barlow.h "Errors"; codes are only ever appended) ----

STATUS_NAMES: Dict[int, str] = {
    0: "BT_OK",
    1: "BT_E_INVALID_ARG",
    2: "BT_E_NOMEM",
    3: "BT_E_SHAPE",
    4: "BT_E_STATE",
    5: "BT_E_UNSUPPORTED",
    6: "BT_E_MISUSE",
    7: "BT_E_IO",
    8: "BT_E_FORMAT",
    9: "BT_E_NUMERIC",
    10: "BT_E_INTERNAL",
    11: "BT_E_COMM",
}
STATUS_CODES: Dict[str, int] = {v: k for k, v in STATUS_NAMES.items()}
BT_OK, BT_E_INVALID_ARG, BT_E_NOMEM, BT_E_SHAPE, BT_E_STATE, BT_E_UNSUPPORTED = 0, 1, 2, 3, 4, 5
BT_E_MISUSE, BT_E_IO, BT_E_FORMAT, BT_E_NUMERIC, BT_E_INTERNAL, BT_E_COMM = 6, 7, 8, 9, 10, 11
BT_PIXELS_GRAY, BT_PIXELS_RGB, BT_PIXELS_BGR, BT_PIXELS_RGBA, BT_PIXELS_BGRA = 1, 3, 19, 4, 20

BT_TENSOR_MAX_DIMS = 4
BT_LOSS_PATH_AUTO, BT_LOSS_PATH_DXD, BT_LOSS_PATH_GRAM = 0, 1, 2
BT_SAVE_MAPPED_ONLY = 1
BT_LOAD_PARTIAL, BT_LOAD_IGNORE_EXTRA = 1, 2

#: Status of errors raised before the library is involved (it could not be loaded).
STATUS_NOT_LOADED = -1


class Error(Exception):
    """Every failure of libbarlow (and of this package's own argument checks).

    Attributes:
        status: the ``bt_status`` code (``int``), e.g. 3.
        status_name: its name in ``barlow.h``, e.g. ``"BT_E_SHAPE"``.
        message: the detail text; for calls the library refused this is
            ``bt_last_error()`` verbatim, which names the argument and shapes.
        function: the C function (or Python method) that failed, when known.
    """

    def __init__(self, status: int, message: str, function: Optional[str] = None):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, "BT_STATUS_%d" % self.status)
        if self.status == STATUS_NOT_LOADED:
            self.status_name = "NOT_LOADED"
        self.message = message
        self.function = function
        super().__init__("%s: %s" % (self.status_name, message))


class ArgumentTypeError(Error, TypeError):
    """A Python-side check refused an argument of the wrong type or dtype
    (status ``BT_E_INVALID_ARG``); nothing was passed to the library."""


class ArgumentValueError(Error, ValueError):
    """A Python-side check refused a value (non-contiguous array, wrong
    number of dimensions, ...): status ``BT_E_INVALID_ARG`` or
    ``BT_E_SHAPE``; nothing was passed to the library."""


class UnknownOptionError(Error, KeyError):
    """An option name the library does not know (``BT_E_UNSUPPORTED``); a
    ``KeyError`` too, so ``Config.get(name, default)`` and ``in`` work."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class LibraryNotFoundError(Error, OSError):
    """libbarlow.so.0 could not be loaded; ``message`` lists every place tried and why."""


# ---- opaque handle types ----

class bt_tensor(ctypes.Structure):
    """Opaque ``bt_tensor``."""


class bt_config(ctypes.Structure):
    """Opaque ``bt_config``."""


class bt_layer(ctypes.Structure):
    """Opaque ``bt_layer``."""


class bt_model(ctypes.Structure):
    """Opaque ``bt_model``."""


class bt_loss(ctypes.Structure):
    """Opaque ``bt_loss``."""


class bt_augment(ctypes.Structure):
    """Opaque ``bt_augment``."""


class bt_optim(ctypes.Structure):
    """Opaque ``bt_optim``."""


class bt_xent(ctypes.Structure):
    """Opaque ``bt_xent``."""


class bt_comm(ctypes.Structure):
    """Opaque ``bt_comm``."""


HANDLE_TYPES = {c.__name__: c for c in (bt_tensor, bt_config, bt_layer, bt_model, bt_loss,
                                         bt_augment, bt_optim, bt_xent, bt_comm)}

P = POINTER
TensorP = P(bt_tensor)
ConfigP = P(bt_config)
LayerP = P(bt_layer)
ModelP = P(bt_model)
LossP = P(bt_loss)
AugmentP = P(bt_augment)
OptimP = P(bt_optim)
CommP = P(bt_comm)
# the communicator's callbacks (include/barlow.h, "Data-parallel training")
CommAllreduceFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_int64, c_int32)
CommAllgatherFn = ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_void_p, c_int64, c_int32)
FUNCTION_TYPES = {"bt_comm_allreduce_fn": CommAllreduceFn, "bt_comm_allgather_fn": CommAllgatherFn}
XentP = P(bt_xent)
status = c_int32  # bt_status

#: name -> (restype, [argtypes]) for every BT_API function of barlow.h.
DECLARATIONS: Dict[str, Tuple[object, List[object]]] = {
    # version
    "bt_version_number": (c_int32, []),
    "bt_version_string": (c_char_p, []),
    "bt_build_info": (c_char_p, []),
    # errors
    "bt_status_string": (c_char_p, [status]),
    "bt_last_error": (c_char_p, []),
    # tensors
    "bt_tensor_create": (status, [P(TensorP), c_int32, P(c_int64)]),
    "bt_tensor_wrap": (status, [P(TensorP), P(c_float), c_int32, P(c_int64)]),
    "bt_tensor_free": (None, [TensorP]),
    "bt_tensor_ndim": (c_int32, [TensorP]),
    "bt_tensor_dim": (c_int64, [TensorP, c_int32]),
    "bt_tensor_numel": (c_int64, [TensorP]),
    "bt_tensor_data": (P(c_float), [TensorP]),
    "bt_tensor_shape": (status, [TensorP, P(c_int32), P(c_int64), c_int32]),
    # options
    "bt_config_create": (status, [P(ConfigP)]),
    "bt_config_free": (None, [ConfigP]),
    "bt_config_set": (status, [ConfigP, c_char_p, c_char_p]),
    "bt_config_get": (status, [ConfigP, c_char_p, c_char_p, c_size_t]),
    "bt_config_option_count": (c_int32, []),
    "bt_config_option": (status, [c_int32, P(c_char_p), P(c_char_p), P(c_char_p), P(c_char_p),
                                  P(c_char_p)]),
    "bt_config_is_set": (c_int32, [ConfigP, c_char_p]),
    # layers
    "bt_layer_conv2d_create": (status, [P(LayerP), c_int32, c_int32, c_int32, c_int32, c_int32,
                                        c_int32]),
    "bt_layer_linear_create": (status, [P(LayerP), c_int32, c_int32, c_int32]),
    "bt_layer_batchnorm_create": (status, [P(LayerP), c_int32, c_double, c_double, c_int32]),
    "bt_layer_relu_create": (status, [P(LayerP)]),
    "bt_layer_maxpool2d_create": (status, [P(LayerP), c_int32, c_int32, c_int32]),
    "bt_layer_avgpool_create": (status, [P(LayerP)]),
    "bt_layer_free": (None, [LayerP]),
    "bt_layer_output_shape": (status, [LayerP, c_int32, P(c_int64), P(c_int32), P(c_int64)]),
    "bt_layer_forward": (status, [LayerP, TensorP, TensorP, c_int32]),
    "bt_layer_backward": (status, [LayerP, TensorP, TensorP]),
    "bt_layer_tensor_count": (c_int32, [LayerP]),
    "bt_layer_tensor": (status, [LayerP, c_int32, P(c_char_p), P(TensorP), P(TensorP)]),
    "bt_layer_zero_grad": (status, [LayerP]),
    "bt_layer_set_threads": (status, [LayerP, c_int32]),
    "bt_layer_reset_parameters": (status, [LayerP, c_uint64]),
    # model
    "bt_model_create": (status, [P(ModelP), ConfigP]),
    "bt_model_free": (None, [ModelP]),
    "bt_model_feature_dim": (c_int64, [ModelP]),
    "bt_model_embed_dim": (c_int64, [ModelP]),
    "bt_model_forward": (status, [ModelP, c_int32, P(TensorP), P(TensorP)]),
    "bt_model_backward": (status, [ModelP, c_int32, P(TensorP)]),
    "bt_model_forward_backbone": (status, [ModelP, c_int32, P(TensorP), P(TensorP)]),
    "bt_model_backward_backbone": (status, [ModelP, c_int32, P(TensorP), P(TensorP)]),
    "bt_model_input_grad": (status, [ModelP, c_int32, TensorP]),
    "bt_model_workspace_bytes": (status, [ModelP, c_int32, c_int32, P(c_int64), P(c_size_t)]),
    "bt_model_features": (status, [ModelP, c_int32, P(TensorP)]),
    "bt_model_encode": (status, [ModelP, TensorP, TensorP]),
    "bt_model_zero_grad": (status, [ModelP]),
    "bt_model_tensor_count": (c_int32, [ModelP]),
    "bt_model_tensor": (status, [ModelP, c_int32, P(c_char_p), P(TensorP), P(TensorP)]),
    "bt_model_set_threads": (status, [ModelP, c_int32]),
    # loss
    "bt_loss_create": (status, [P(LossP), ConfigP]),
    "bt_loss_free": (None, [LossP]),
    "bt_loss_forward": (status, [LossP, TensorP, TensorP, P(c_double)]),
    "bt_loss_backward": (status, [LossP, TensorP, TensorP]),
    "bt_loss_terms": (status, [LossP, P(c_double), P(c_double)]),
    "bt_loss_set_path": (status, [LossP, c_int32]),
    "bt_loss_path": (c_int32, [LossP]),
    "bt_loss_correlation": (status, [LossP, TensorP]),
    # cross-entropy
    "bt_xent_create": (status, [P(XentP), ConfigP]),
    "bt_xent_free": (None, [XentP]),
    "bt_xent_forward": (status, [XentP, TensorP, P(c_int32), P(c_double), P(c_int64),
                                 P(c_int64)]),
    "bt_xent_backward": (status, [XentP, TensorP]),
    # augmentation
    "bt_augment_create": (status, [P(AugmentP), ConfigP]),
    "bt_augment_free": (None, [AugmentP]),
    "bt_augment_views": (status, [AugmentP, c_int32, P(P(c_uint8)), P(c_int32), P(c_int32),
                                  c_int32, c_int32, P(TensorP)]),
    "bt_augment_eval": (status, [AugmentP, c_int32, P(P(c_uint8)), P(c_int32), P(c_int32),
                                 c_int32, TensorP]),
    "bt_augment_views_at": (status, [AugmentP, c_int64, c_int32, P(P(c_uint8)), P(c_int32),
                                     P(c_int32), P(c_int64), c_int32, c_int32, P(TensorP)]),
    "bt_augment_eval_ex": (status, [AugmentP, c_int32, P(P(c_uint8)), P(c_int32), P(c_int32),
                                    P(c_int64), c_int32, TensorP]),
    "bt_augment_output_size": (c_int32, [AugmentP, c_int32]),
    "bt_augment_get_state": (status, [AugmentP, P(c_uint64), P(c_uint64)]),
    "bt_augment_set_state": (status, [AugmentP, c_uint64, c_uint64]),
    # data-parallel training
    "bt_comm_create": (status, [P(CommP), c_int32, c_int32, CommAllreduceFn, CommAllgatherFn,
                                c_void_p]),
    "bt_comm_free": (None, [CommP]),
    "bt_model_set_comm": (status, [ModelP, CommP]),
    "bt_loss_set_comm": (status, [LossP, CommP]),
    # optimizers
    "bt_optim_create": (status, [P(OptimP), ConfigP]),
    "bt_optim_free": (None, [OptimP]),
    "bt_optim_add_tensor": (status, [OptimP, TensorP, TensorP, c_char_p]),
    "bt_optim_step": (status, [OptimP]),
    "bt_optim_step_count": (c_int64, [OptimP]),
    "bt_optim_lr": (c_double, [OptimP, c_int32]),
    "bt_optim_add_layer": (status, [OptimP, LayerP]),
    "bt_optim_add_model": (status, [OptimP, ModelP]),
    # checkpoints
    "bt_checkpoint_save": (status, [c_char_p, ModelP, OptimP, AugmentP]),
    "bt_checkpoint_load": (status, [c_char_p, ModelP, OptimP, AugmentP]),
    "bt_checkpoint_save_ex": (status, [c_char_p, ModelP, OptimP, AugmentP, c_char_p, c_uint32]),
    "bt_checkpoint_load_ex": (status, [c_char_p, ModelP, OptimP, AugmentP, c_char_p, c_uint32,
                                       c_char_p, c_size_t]),
    "bt_config_read_checkpoint": (status, [ConfigP, c_char_p]),
    "bt_checkpoint_metadata": (status, [c_char_p, c_char_p, c_char_p, c_size_t]),
}

LIBRARY_NAME = "libbarlow.so.0"
ENV_LIBRARY = "BARLOW_LIBRARY"

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None
_explicit: Optional[str] = None


def _install_libdir() -> Optional[str]:
    """The library directory recorded at install time (setup.py writes
    ``barlow/_install_paths.py`` from ``BARLOW_LIBDIR``), or None."""
    try:
        from . import _install_paths  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(_install_paths, "LIBDIR", None) or None


def _declare(lib: ctypes.CDLL) -> None:
    missing = []
    for name, (restype, argtypes) in DECLARATIONS.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise LibraryNotFoundError(STATUS_NOT_LOADED, "the loaded library lacks %s (an older "
                                   "libbarlow?)" % ", ".join(missing))


def _candidates() -> List[Tuple[str, Optional[str]]]:
    """(how, path) in lookup order; path None means 'not configured'."""
    out: List[Tuple[str, Optional[str]]] = []
    if _explicit is not None:
        out.append(("barlow.load_library()", _explicit))
    out.append(("$" + ENV_LIBRARY, os.environ.get(ENV_LIBRARY) or None))
    libdir = _install_libdir()
    out.append(("install prefix LIBDIR", os.path.join(libdir, LIBRARY_NAME) if libdir else None))
    found = ctypes.util.find_library("barlow")
    out.append(("ctypes.util.find_library('barlow')", found))
    out.append(("system loader", LIBRARY_NAME))
    return out


def _open() -> ctypes.CDLL:
    global _lib, _lib_path
    tried = []
    for how, path in _candidates():
        if path is None:
            tried.append("%s: not set" % how)
            continue
        if how != "system loader" and os.sep in path and not os.path.exists(path):
            tried.append("%s: %s: no such file" % (how, path))
            if how == "barlow.load_library()":
                break  # an explicit request is not silently replaced by another library
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s: %s: %s" % (how, path, e))
            if how == "barlow.load_library()":
                break
            continue
        try:
            _declare(lib)
        except LibraryNotFoundError as e:
            tried.append("%s: %s: %s" % (how, path, e.message))
            if how == "barlow.load_library()":
                break
            continue
        _lib, _lib_path = lib, path
        return lib
    raise LibraryNotFoundError(STATUS_NOT_LOADED, "cannot load %s; tried, in order:\n  %s"
                               % (LIBRARY_NAME, "\n  ".join(tried)))


def load_library(path: Optional[str] = None) -> ctypes.CDLL:
    """Load libbarlow now and return the ``ctypes.CDLL`` (declared).

    With ``path``, load exactly that file (call it before anything else in
    the package touches the library). Without, search in order:
    ``$BARLOW_LIBRARY``, the install prefix's ``LIBDIR/libbarlow.so.0``
    recorded by ``install.sh``, ``ctypes.util.find_library("barlow")``, then
    the system loader (``libbarlow.so.0`` on the default search path).
    Raises :class:`LibraryNotFoundError` (a :class:`Error`) listing every
    place tried and why it failed, or :class:`Error` when a different
    library is already loaded.
    """
    global _explicit
    with _lock:
        if _lib is not None:
            if path is not None and os.path.realpath(path) != os.path.realpath(_lib_path or ""):
                raise Error(BT_E_STATE, "load_library(%r): %s is already loaded; call "
                            "load_library() before any other use" % (path, _lib_path))
            return _lib
        _explicit = path
        return _open()


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first use)."""
    if _lib is not None:
        return _lib
    return load_library()


def library_path() -> Optional[str]:
    """The path (or name) the loaded library was opened from; None before loading."""
    return _lib_path


def last_error() -> str:
    return lib().bt_last_error().decode("utf-8", "replace")


def error(st: int, function: Optional[str] = None) -> Error:
    """An :class:`Error` for status ``st`` carrying ``bt_last_error()``."""
    return Error(st, last_error(), function)


def check(st: int, function: Optional[str] = None) -> None:
    if st != 0:
        raise error(st, function)
