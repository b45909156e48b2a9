"""The Python classes over libbarlow's handles (see the package docstring)."""
from __future__ import annotations

import ctypes
import os
from ctypes import (POINTER, byref, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t,
                    c_uint8, c_uint64)
from typing import (Any, Dict, Iterable, Iterator, List, MutableMapping, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import numpy as np

from . import _lib as L
from ._lib import (BT_E_INVALID_ARG, BT_E_MISUSE, BT_E_SHAPE, ArgumentTypeError,
                   ArgumentValueError, Error, UnknownOptionError)

ArrayLike = Union[np.ndarray, "Tensor"]
PathLike = Union[str, "os.PathLike[str]"]


def _enc(s: Union[str, bytes, "os.PathLike[str]", None]) -> Optional[bytes]:
    if s is None:
        return None
    if isinstance(s, bytes):
        return s
    return os.fsencode(s) if not isinstance(s, str) else s.encode("utf-8")


def _dec(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""


# ---------------------------------------------------------------------------
# Ownership
# ---------------------------------------------------------------------------

class _Owner:
    """Owns one C handle and frees it when the last Python reference goes.

    Public objects hold an _Owner; so do the numpy views and borrowed
    tensors they hand out, and the optimizer for the tensors and models it
    updates. ``close()`` on a public object only drops its own reference:
    the C handle is freed once nothing that could still touch its memory is
    alive, so no view ever dangles. ``keep`` holds what the handle borrows
    (a wrapped numpy array, the owner of a borrowed tensor).
    """

    __slots__ = ("ptr", "free", "keep", "__weakref__")

    def __init__(self, ptr: Any, free: Any, keep: Any = None):
        self.ptr = ptr
        self.free = free  # the ctypes function itself: usable during interpreter shutdown
        self.keep = keep

    def __del__(self) -> None:
        ptr, free = self.ptr, self.free
        self.ptr = None
        if ptr and free is not None:
            try:
                free(ptr)
            except Exception:  # pragma: no cover - interpreter shutdown
                pass


class _Handle:
    """Base of every class that wraps a libbarlow handle."""

    _ptype: Any = None
    _free_name = ""
    _own: Optional[_Owner] = None

    def _adopt(self, ptr: Any, keep: Any = None) -> None:
        self._own = _Owner(ptr, getattr(L.lib(), self._free_name), keep)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or creation failed)."""
        return self._own is None

    def close(self) -> None:
        """Release the handle. Further calls on this object raise
        :class:`barlow.Error` (``BT_E_MISUSE``, the library's message). The C
        memory is freed at once unless a numpy view, a borrowed tensor or an
        optimizer still refers to it; then it is freed when they go."""
        self._own = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._own = None
        except Exception:  # pragma: no cover
            pass

    @property
    def _p(self) -> Any:
        own = self._own
        return own.ptr if own is not None else self._ptype()

    def _call(self, fname: str, *args: Any) -> None:
        """Call fname(handle, *args); raise Error with bt_last_error() on failure."""
        st = getattr(L.lib(), fname)(self._p, *args)
        if st != 0:
            raise self._error(st, fname)

    def _error(self, st: int, fname: str) -> Error:
        msg = L.last_error()
        if self._own is None:
            msg += " (this barlow.%s was closed)" % type(self).__name__
        return Error(st, msg, fname)

    def _getter(self, fname: str, *args: Any, status: int = BT_E_MISUSE) -> Any:
        """Call a function that returns -1 (or NULL) on failure."""
        v = getattr(L.lib(), fname)(self._p, *args)
        if v == -1 or v is None:
            raise self._error(status, fname)
        return v


# ---------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------

def _shape_arg(shape: Sequence[int]) -> Tuple[int, Any]:
    dims = [int(d) for d in shape]
    return len(dims), (c_int64 * max(1, len(dims)))(*dims)


def _check_float32(arr: Any, what: str, writable: bool = False) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise ArgumentTypeError(BT_E_INVALID_ARG, "%s: expected a numpy.ndarray of float32 or a "
                                "barlow.Tensor, got %s" % (what, type(arr).__name__), what)
    if arr.dtype != np.float32:
        raise ArgumentTypeError(BT_E_INVALID_ARG, "%s: dtype is %s; libbarlow tensors are float32 "
                                "(use arr.astype(np.float32))" % (what, arr.dtype), what)
    if not arr.flags.c_contiguous:
        raise ArgumentValueError(BT_E_INVALID_ARG, "%s: the array is not C-contiguous (strides "
                                 "%s); zero-copy needs row-major memory (use np.ascontiguousarray)"
                                 % (what, arr.strides), what)
    if writable and not arr.flags.writeable:
        raise ArgumentValueError(BT_E_INVALID_ARG, "%s: the array is read-only and the library "
                                 "writes into it" % what, what)
    return arr


class Tensor(_Handle):
    """A float32, row-major tensor of 1 to 4 dimensions (``bt_tensor``).

    ``Tensor(shape)`` allocates zero-filled library memory;
    :meth:`Tensor.from_numpy` wraps a C-contiguous float32 array without
    copying (the tensor keeps the array alive). :meth:`numpy` returns a
    *view* of the tensor's memory (no copy) that stays valid for as long as
    the view exists - it keeps the memory alive even after :meth:`close`.
    Tensors obtained from a model or layer (``named_tensors()``) are
    borrowed: their memory belongs to the model, which they keep alive.
    """

    _ptype = L.TensorP
    _free_name = "bt_tensor_free"

    def __init__(self, shape: Sequence[int]):
        ndim, dims = _shape_arg(shape)
        out = L.TensorP()
        L.check(L.lib().bt_tensor_create(byref(out), ndim, dims), "bt_tensor_create")
        self._adopt(out)
        self._kind = "library"
        self._shape = tuple(int(d) for d in shape)

    @classmethod
    def from_numpy(cls, arr: np.ndarray) -> "Tensor":
        """Wrap ``arr`` (C-contiguous float32, 1-4 dims) with ``bt_tensor_wrap``:
        zero-copy, the library reads and writes ``arr``'s memory. The tensor
        holds a reference to ``arr``. Raises :class:`Error` for another
        dtype, a non-contiguous or read-only array, or a shape the library
        refuses."""
        arr = _check_float32(arr, "Tensor.from_numpy", writable=True)
        return cls._wrap(arr)

    @classmethod
    def _wrap(cls, arr: np.ndarray) -> "Tensor":
        self = cls.__new__(cls)
        ndim, dims = _shape_arg(arr.shape)
        out = L.TensorP()
        L.check(L.lib().bt_tensor_wrap(byref(out), _float_ptr(arr), ndim, dims), "bt_tensor_wrap")
        self._adopt(out, keep=arr)
        self._kind = "numpy"
        self._shape = tuple(arr.shape)
        return self

    @classmethod
    def _borrowed(cls, ptr: Any, owner: _Owner, what: str) -> "Tensor":
        self = cls.__new__(cls)
        self._own = _Owner(ptr, None, keep=owner)  # never freed by us: the owner frees it
        self._kind = what
        nd = c_int32()
        dims = (c_int64 * L.BT_TENSOR_MAX_DIMS)()
        L.check(L.lib().bt_tensor_shape(ptr, byref(nd), dims, L.BT_TENSOR_MAX_DIMS),
                "bt_tensor_shape")
        self._shape = tuple(dims[i] for i in range(nd.value))
        return self

    @property
    def shape(self) -> Tuple[int, ...]:
        """The shape (raises :class:`Error` once closed)."""
        if self._own is None:
            self._call("bt_tensor_shape", byref(c_int32()), (c_int64 * 4)(), 4)
        return self._shape

    @property
    def ndim(self) -> int:
        return int(self._getter("bt_tensor_ndim"))

    @property
    def numel(self) -> int:
        return int(self._getter("bt_tensor_numel"))

    @property
    def data_ptr(self) -> int:
        """Address of the first element (``bt_tensor_data``)."""
        p = L.lib().bt_tensor_data(self._p)
        if not p:
            raise self._error(BT_E_MISUSE, "bt_tensor_data")
        return ctypes.cast(p, ctypes.c_void_p).value or 0

    def numpy(self) -> np.ndarray:
        """A writable numpy view of the tensor's memory (no copy). The view
        keeps the memory alive; for a wrapped array it is that array."""
        if self._own is not None and self._kind == "numpy":
            return self._own.keep
        addr = self.data_ptr
        own = self._own
        buf = (c_float * int(np.prod(self._shape))).from_address(addr)
        buf._barlow_owner = own  # type: ignore[attr-defined]  # the view keeps the handle alive
        return np.frombuffer(buf, dtype=np.float32).reshape(self._shape)

    def __array__(self, dtype: Any = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def copy(self) -> np.ndarray:
        """A copy of the values as a new numpy array."""
        return self.numpy().copy()

    def __repr__(self) -> str:
        if self._own is None:
            return "<barlow.Tensor closed>"
        return "<barlow.Tensor shape=%s float32 memory=%s>" % (self._shape, self._kind)


def _float_ptr(arr: np.ndarray) -> Any:
    """float* to arr's first element without a copy (from_buffer is the fast
    path; read-only or empty arrays take the address)."""
    try:
        return byref(c_float.from_buffer(arr))
    except (TypeError, ValueError, BufferError):
        return ctypes.cast(arr.ctypes.data, POINTER(c_float))


class _Args:
    """Converts numpy arrays / Tensors to bt_tensor pointers for one call.
    numpy arrays are wrapped zero-copy (bt_tensor_wrap) into temporary
    tensors that are freed, with the references to the arrays, when this
    object goes (at the end of the calling method)."""

    __slots__ = ("ptrs", "arrays", "free")

    def __init__(self) -> None:
        self.ptrs: List[Any] = []
        self.arrays: List[Any] = []
        self.free = None

    def __del__(self) -> None:
        free = self.free
        if free is not None:
            for p in self.ptrs:
                free(p)
        self.ptrs = []

    def tensor(self, x: ArrayLike, what: str, writable: bool = False) -> Any:
        if isinstance(x, Tensor):
            return x._p
        arr = _check_float32(x, what, writable)
        lib = L.lib()
        out = L.TensorP()
        ndim = arr.ndim
        st = lib.bt_tensor_wrap(byref(out), _float_ptr(arr), ndim,
                                (c_int64 * max(1, ndim))(*arr.shape))
        if st != 0:
            raise L.error(st, "bt_tensor_wrap")
        if self.free is None:
            self.free = lib.bt_tensor_free
        self.ptrs.append(out)
        self.arrays.append(arr)
        return out

    def tensors(self, xs: Sequence[ArrayLike], what: str, writable: bool = False) -> Any:
        if isinstance(xs, (np.ndarray, Tensor)):
            raise ArgumentTypeError(BT_E_INVALID_ARG, "%s: expected a list of arrays (one per "
                                    "view), got a single %s" % (what, type(xs).__name__), what)
        ptrs = [self.tensor(x, "%s[%d]" % (what, i), writable) for i, x in enumerate(xs)]
        return (L.TensorP * max(1, len(ptrs)))(*ptrs), len(ptrs)


def _empty(shape: Sequence[int]) -> np.ndarray:
    return np.empty(tuple(int(s) for s in shape), dtype=np.float32)


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------

class OptionInfo(NamedTuple):
    """One registered option (``bt_config_option``)."""
    name: str
    type: str
    default: str
    range: str
    description: str


_OPTIONS: Optional[List[OptionInfo]] = None


def options() -> List[OptionInfo]:
    """Every registered option, in the library's order."""
    global _OPTIONS
    if _OPTIONS is None:
        lib = L.lib()
        out = []
        for i in range(lib.bt_config_option_count()):
            f = [c_char_p() for _ in range(5)]
            L.check(lib.bt_config_option(i, *[byref(x) for x in f]), "bt_config_option")
            out.append(OptionInfo(*[_dec(x.value) for x in f]))
        _OPTIONS = out
    return _OPTIONS


def _option_type(name: str) -> str:
    base = name
    for v in ("aug.view1.", "aug.view2."):
        if name.startswith(v):
            base = "aug." + name[len(v):]
    for o in options():
        if o.name == base:
            return o.type
    return ""


def _format_value(name: str, value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        sep = "-" if _option_type(name) == "int-list" else ","
        return sep.join(_format_value(name, v) or "" for v in items)
    return str(value)


def _key(name: str) -> str:
    return name.replace("__", ".")


class Config(_Handle, MutableMapping):
    """A configuration (``bt_config``): a mutable mapping of option names to
    their values as text, over the options ``bt_config_option`` lists.

    ``Config({"model.arch": "resnet"}, seed=1, optim__batch_size=64)``: keys
    with ``__`` stand for dots. Values may be given as str, int, float, bool
    or lists (joined with ``-`` for int lists, ``,`` for real lists); they
    read back as the library's text. ``del cfg[name]`` restores the default.
    Iteration and ``len`` cover the registered options (not the per-view
    ``aug.viewK.*`` forms or the read-only ``build.*`` keys, which
    ``cfg[name]`` still reads). A failed set raises :class:`Error` with the
    library's message and leaves the value unchanged.
    """

    _ptype = L.ConfigP
    _free_name = "bt_config_free"

    def __init__(self, options: Optional[Union[Dict[str, Any], Iterable[Tuple[str, Any]]]] = None,
                 **kwargs: Any):
        out = L.ConfigP()
        L.check(L.lib().bt_config_create(byref(out)), "bt_config_create")
        self._adopt(out)
        if isinstance(options, Config):
            options = options._explicit_items()
        if options:
            self.update(options)
        for k, v in kwargs.items():
            self[_key(k)] = v

    @classmethod
    def from_checkpoint(cls, path: PathLike, **overrides: Any) -> "Config":
        """A configuration whose model (and evaluation view) options are those
        of the model saved in ``path`` (``bt_config_read_checkpoint``), then
        ``overrides``."""
        c = cls()
        c.read_checkpoint(path)
        for k, v in overrides.items():
            c[_key(k)] = v
        return c

    def read_checkpoint(self, path: PathLike) -> None:
        """Set the model.* (and evaluation-view aug.view1.*) options from a
        checkpoint's metadata; all or nothing."""
        self._call("bt_config_read_checkpoint", _enc(path))

    def _option_error(self, st: int, fname: str) -> Error:
        e = self._error(st, fname)
        if st == L.BT_E_UNSUPPORTED and self._own is not None and "unknown" in e.message:
            return UnknownOptionError(st, e.message, fname)
        return e

    def __setitem__(self, name: str, value: Any) -> None:
        st = L.lib().bt_config_set(self._p, _enc(name), _enc(_format_value(name, value)))
        if st != 0:
            raise self._option_error(st, "bt_config_set")

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        cap = 256
        while True:
            buf = ctypes.create_string_buffer(cap)
            st = L.lib().bt_config_get(self._p, _enc(name), buf, cap)
            if st == 0:
                return _dec(buf.value)
            if st == BT_E_INVALID_ARG and cap < 1 << 20 and "too small" in L.last_error():
                cap *= 16
                continue
            raise self._option_error(st, "bt_config_get")

    def __delitem__(self, name: str) -> None:
        self._call("bt_config_set", _enc(name), None)

    def __iter__(self) -> Iterator[str]:
        return iter([o.name for o in options()])

    def __len__(self) -> int:
        return int(L.lib().bt_config_option_count())

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def is_set(self, name: str) -> bool:
        """Whether ``name`` was set explicitly (``bt_config_is_set``)."""
        v = L.lib().bt_config_is_set(self._p, _enc(name))
        if v < 0:
            raise self._error(L.BT_E_UNSUPPORTED if self._own is not None else BT_E_MISUSE,
                              "bt_config_is_set")
        return bool(v)

    def explicit(self) -> Dict[str, str]:
        """The options set explicitly, with their values."""
        return {k: self[k] for k in self if self.is_set(k)}

    def _explicit_items(self) -> List[Tuple[str, str]]:
        """Every explicit setting, per-view aug.viewK.* ones included, in an
        order that reproduces them (shared before per-view)."""
        items = list(self.explicit().items())
        for k in self:
            if k.startswith("aug.") and k != "aug.preset":
                for v in ("aug.view1.", "aug.view2."):
                    if self.is_set(v + k[4:]):
                        items.append((v + k[4:], self[v + k[4:]]))
        return items

    def copy(self) -> "Config":
        """A new Config with the same explicit settings (per-view ones included)."""
        return Config(self)

    def __repr__(self) -> str:
        if self._own is None:
            return "<barlow.Config closed>"
        return "barlow.Config(%r)" % (self.explicit(),)


def _config_arg(cfg: Optional[Config], options: Dict[str, Any]) -> Tuple[Any, Optional[Config]]:
    """The config pointer for a create call: cfg, cfg + options, or options alone."""
    if cfg is not None and not isinstance(cfg, Config):
        if isinstance(cfg, dict):
            cfg = Config(cfg)
        else:
            raise ArgumentTypeError(BT_E_INVALID_ARG, "expected a barlow.Config or a dict of "
                                    "options, got %s" % type(cfg).__name__)
    if cfg is not None and cfg.closed:
        # NULL means "every default" to most create calls: refuse rather than ignore cfg
        raise Error(BT_E_MISUSE, "the barlow.Config passed was closed", "create")
    if options:
        merged = cfg.copy() if cfg is not None else Config()
        for k, v in options.items():
            merged[_key(k)] = v
        cfg = merged
    return (cfg._p if cfg is not None else L.ConfigP()), cfg


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

class Model(_Handle):
    """The Barlow Twins network (``bt_model``): ResNet encoder + projector.

    ``Model(cfg, **options)`` (cfg required by the library; ``None`` means
    every default: a ResNet-50 with a 8192-8192-8192 projector). Inputs are
    float32 [N, C, H, W] numpy arrays (zero-copy) or :class:`Tensor`;
    outputs are new numpy arrays unless ``out=`` gives them.
    """

    _ptype = L.ModelP
    _free_name = "bt_model_free"

    def __init__(self, cfg: Optional[Config] = None, **options: Any):
        if cfg is None and not options:
            cfg = Config()
        p, keep_cfg = _config_arg(cfg, options)
        out = L.ModelP()
        L.check(L.lib().bt_model_create(byref(out), p), "bt_model_create")
        self._adopt(out)
        self._arch = keep_cfg["model.arch"] if keep_cfg is not None else ""

    @property
    def feature_dim(self) -> int:
        """Width of the backbone's output."""
        return int(self._getter("bt_model_feature_dim"))

    @property
    def embed_dim(self) -> int:
        """Width of the projector's output."""
        return int(self._getter("bt_model_embed_dim"))

    def forward(self, views: Sequence[ArrayLike], out: Optional[Sequence[ArrayLike]] = None
                ) -> List[Any]:
        """Training-mode forward of 1-8 views (each its own BatchNorm batch).
        Returns the embeddings z[v] [N, embed_dim]: ``out`` when given, else
        new float32 arrays (written in place by the library, no copy)."""
        a = _Args()
        xs, n = a.tensors(views, "Model.forward views")
        if out is None:
            first = views[0] if len(views) else None
            rows = first.shape[0] if first is not None and len(first.shape) else 1
            out = [_empty((rows, self.embed_dim)) for _ in range(n)]
        zs, nz = a.tensors(out, "Model.forward out", writable=True)
        if nz != n:
            raise ArgumentValueError(BT_E_INVALID_ARG, "Model.forward: %d views but %d outputs"
                                     % (n, nz), "Model.forward")
        self._call("bt_model_forward", n, xs, zs)
        return list(out)

    def backward(self, dz: Sequence[ArrayLike]) -> None:
        """Backward of the last forward; parameter gradients ACCUMULATE."""
        a = _Args()
        ds, n = a.tensors(dz, "Model.backward dz")
        self._call("bt_model_backward", n, ds)

    def forward_backbone(self, views: Sequence[ArrayLike],
                         out: Optional[Sequence[ArrayLike]] = None) -> List[Any]:
        """Training-mode forward of the backbone alone (no projector), for a
        host's own head. Returns features[v] [N, feature_dim]: ``out`` when
        given, else new float32 arrays."""
        a = _Args()
        xs, n = a.tensors(views, "Model.forward_backbone views")
        if out is None:
            first = views[0] if len(views) else None
            rows = first.shape[0] if first is not None and len(first.shape) else 1
            out = [_empty((rows, self.feature_dim)) for _ in range(n)]
        fs, nf = a.tensors(out, "Model.forward_backbone out", writable=True)
        if nf != n:
            raise ArgumentValueError(BT_E_INVALID_ARG, "Model.forward_backbone: %d views but %d "
                                     "outputs" % (n, nf), "Model.forward_backbone")
        self._call("bt_model_forward_backbone", n, xs, fs)
        return list(out)

    def backward_backbone(self, dfeatures: Sequence[ArrayLike],
                          dx: Optional[Sequence[ArrayLike]] = None) -> Optional[List[Any]]:
        """Backward of the last forward_backbone; parameter gradients
        ACCUMULATE. With ``dx`` (arrays shaped like the views) fills and returns
        the input gradients; without, computes none and returns None."""
        a = _Args()
        ds, n = a.tensors(dfeatures, "Model.backward_backbone dfeatures")
        if dx is None:
            self._call("bt_model_backward_backbone", n, ds, None)
            return None
        xs, nx = a.tensors(dx, "Model.backward_backbone dx", writable=True)
        if nx != n:
            raise ArgumentValueError(BT_E_INVALID_ARG, "Model.backward_backbone: %d dfeatures but "
                                     "%d dx" % (n, nx), "Model.backward_backbone")
        self._call("bt_model_backward_backbone", n, ds, xs)
        return list(dx)

    def input_grad(self, view: int = 0, out: Optional[ArrayLike] = None) -> Any:
        """After backward of a model.arch none model: the gradient with
        respect to view ``view``'s input [N, feature_dim] (``out`` or a new array)."""
        a = _Args()
        if out is None:
            f = self.features(view)
            out = _empty(f.shape)
        self._call("bt_model_input_grad", int(view), a.tensor(out, "Model.input_grad out",
                                                               writable=True))
        return out

    def zero_grad(self) -> None:
        self._call("bt_model_zero_grad")

    def features(self, view: int = 0) -> np.ndarray:
        """The backbone output [N, feature_dim] of ``view`` in the last
        training forward, as a COPY (the library's buffer is only valid until
        the next forward, so a view of it could dangle)."""
        t = L.TensorP()
        self._call("bt_model_features", int(view), byref(t))
        return Tensor._borrowed(t, self._own, "borrowed").numpy().copy()  # type: ignore[arg-type]

    def encode(self, x: ArrayLike, out: Optional[ArrayLike] = None) -> Any:
        """Eval-mode backbone features of x [N, C, H, W] -> [N, feature_dim]
        (``out`` or a new array)."""
        a = _Args()
        px = a.tensor(x, "Model.encode x")
        if out is None:
            out = _empty((x.shape[0] if len(x.shape) else 1, self.feature_dim))
        self._call("bt_model_encode", px, a.tensor(out, "Model.encode out", writable=True))
        return out

    def set_threads(self, threads: int) -> None:
        self._call("bt_model_set_threads", int(threads))

    def workspace_bytes(self, shape: Sequence[int], nviews: int = 2) -> int:
        """Bytes of workspace a training step at view shape [N, C, H, W] reserves."""
        ndim, dims = _shape_arg(shape)
        b = c_size_t()
        self._call("bt_model_workspace_bytes", int(nviews), ndim, dims, byref(b))
        return int(b.value)

    def named_tensors(self) -> List[Tuple[str, Tensor, Optional[Tensor]]]:
        """(name, value, grad) of every parameter and buffer in state_dict
        order; value and grad are borrowed Tensors (views of the model's
        memory, valid as long as they exist: they keep the model's memory
        alive); grad is None for buffers."""
        count = self._getter("bt_model_tensor_count")
        res = []
        for i in range(count):
            name, v, g = c_char_p(), L.TensorP(), L.TensorP()
            self._call("bt_model_tensor", i, byref(name), byref(v), byref(g))
            res.append((_dec(name.value), Tensor._borrowed(v, self._own, "borrowed from Model"),
                        Tensor._borrowed(g, self._own, "borrowed from Model") if g else None))
        return res

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of every tensor's values, by checkpoint name."""
        return {n: v.numpy().copy() for n, v, _ in self.named_tensors()}

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        """Copy values into the model's tensors (every name must exist and
        shapes must match; checked before anything is written)."""
        mine = {n: v for n, v, _ in self.named_tensors()}
        for n, a in state.items():
            if n not in mine:
                raise ArgumentValueError(BT_E_INVALID_ARG, "Model.load_state_dict: no tensor "
                                         "named %r" % n, "Model.load_state_dict")
            if tuple(np.shape(a)) != mine[n].shape:
                raise ArgumentValueError(BT_E_SHAPE, "Model.load_state_dict: %s is %s, not %s"
                                         % (n, tuple(np.shape(a)), mine[n].shape),
                                         "Model.load_state_dict")
        for n, a in state.items():
            np.copyto(mine[n].numpy(), np.asarray(a, dtype=np.float32))

    def __repr__(self) -> str:
        if self._own is None:
            return "<barlow.Model closed>"
        return "<barlow.Model arch=%s feature_dim=%d embed_dim=%d tensors=%d>" % (
            self._arch, self.feature_dim, self.embed_dim, self._getter("bt_model_tensor_count"))


# ---------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------

_PATHS = {"auto": L.BT_LOSS_PATH_AUTO, "dxd": L.BT_LOSS_PATH_DXD, "gram": L.BT_LOSS_PATH_GRAM}


class Loss(_Handle):
    """The Barlow Twins loss (``bt_loss``) from the ``loss.*`` options.

    ``loss.forward(za, zb) -> float`` (za, zb float32 [N, D], read in place),
    ``loss.backward() -> (dza, dzb)`` (new arrays, or ``out=``).
    """

    _ptype = L.LossP
    _free_name = "bt_loss_free"

    def __init__(self, cfg: Optional[Config] = None, **options: Any):
        p, keep_cfg = _config_arg(cfg, options)
        out = L.LossP()
        L.check(L.lib().bt_loss_create(byref(out), p), "bt_loss_create")
        self._adopt(out)
        self._shape: Optional[Tuple[int, int]] = None
        self._opts = ({k: keep_cfg[k] for k in ("loss.mode", "loss.lambda", "loss.scale")}
                      if keep_cfg is not None else {"loss.mode": "barlow", "loss.lambda": "0.0051",
                                                    "loss.scale": "1"})
        self._value = c_double()

    def forward(self, za: ArrayLike, zb: ArrayLike) -> float:
        """The loss of embeddings za, zb; keeps what backward needs. On error
        the handle still refers to the last successful forward."""
        a = _Args()
        pa, pb = a.tensor(za, "Loss.forward za"), a.tensor(zb, "Loss.forward zb")
        self._call("bt_loss_forward", pa, pb, byref(self._value))
        self._shape = tuple(za.shape)  # type: ignore[assignment]
        return self._value.value

    __call__ = forward

    def backward(self, out: Optional[Tuple[ArrayLike, ArrayLike]] = None) -> Tuple[Any, Any]:
        """(dloss/dza, dloss/dzb) of the last forward: new float32 arrays, or
        ``out`` (overwritten)."""
        if out is None:
            shape = self._shape or (1, 1)
            out = (_empty(shape), _empty(shape))
        a = _Args()
        self._call("bt_loss_backward", a.tensor(out[0], "Loss.backward dza", True),
                   a.tensor(out[1], "Loss.backward dzb", True))
        return out[0], out[1]

    def terms(self) -> Tuple[float, float]:
        """(on_diag, off_diag) raw terms of the last forward, before lambda and scale."""
        on, off = c_double(), c_double()
        self._call("bt_loss_terms", byref(on), byref(off))
        return on.value, off.value

    def correlation(self, k: Optional[int] = None) -> np.ndarray:
        """The leading k x k block of the cross-correlation matrix C (k
        defaults to D: the full D x D matrix)."""
        if k is None:
            k = self._shape[1] if self._shape else 1
        out = _empty((k, k))
        a = _Args()
        self._call("bt_loss_correlation", a.tensor(out, "Loss.correlation"))
        return out

    @property
    def path(self) -> str:
        """The path the last forward used: 'dxd', 'gram' or 'auto' (none yet).
        Assign 'auto', 'dxd' or 'gram' to choose the following forwards'."""
        v = self._getter("bt_loss_path")
        return {0: "auto", 1: "dxd", 2: "gram"}.get(v, str(v))

    @path.setter
    def path(self, value: Union[str, int]) -> None:
        path = _PATHS.get(value.lower(), -1) if isinstance(value, str) else int(value)
        self._call("bt_loss_set_path", path)

    def __repr__(self) -> str:
        if self._own is None:
            return "<barlow.Loss closed>"
        return "<barlow.Loss mode=%s lambda=%s scale=%s last_shape=%s>" % (
            self._opts["loss.mode"], self._opts["loss.lambda"], self._opts["loss.scale"],
            self._shape)


# ---------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------

def _images(images: Any, what: str) -> Tuple[int, Any, Any, Any, int, Any]:
    """(n, pointer array, heights, widths, channels, keep) for uint8 HWC images:
    an ndarray [N, H, W] or [N, H, W, C], or a list of [H, W] / [H, W, C] arrays."""
    U8PP = POINTER(POINTER(c_uint8))

    def check(a: Any, name: str) -> np.ndarray:
        if not isinstance(a, np.ndarray):
            raise ArgumentTypeError(BT_E_INVALID_ARG, "%s: expected a numpy uint8 array, got %s"
                                    % (name, type(a).__name__), what)
        if a.dtype != np.uint8:
            raise ArgumentTypeError(BT_E_INVALID_ARG, "%s: dtype is %s; images are uint8 HWC"
                                    % (name, a.dtype), what)
        if not a.flags.c_contiguous:
            raise ArgumentValueError(BT_E_INVALID_ARG, "%s: the array is not C-contiguous "
                                     "(images are read in place: packed rows)" % name, what)
        return a

    if isinstance(images, np.ndarray):
        a = check(images, what)
        if a.ndim not in (3, 4):
            raise ArgumentValueError(BT_E_SHAPE, "%s: a batch is [N, H, W] or [N, H, W, C], got "
                                     "shape %s" % (what, a.shape), what)
        n, h, w = a.shape[:3]
        c = a.shape[3] if a.ndim == 4 else 1
        stride = h * w * c
        addrs = a.ctypes.data + np.arange(n, dtype=np.uintp) * np.uintp(stride)
        hs = np.full(n, h, dtype=np.int32)
        ws = np.full(n, w, dtype=np.int32)
        keep = (a, addrs, hs, ws)
    else:
        arrs = [check(x, "%s[%d]" % (what, i)) for i, x in enumerate(images)]
        if not arrs:
            raise ArgumentValueError(BT_E_INVALID_ARG, "%s: no images" % what, what)
        for i, x in enumerate(arrs):
            if x.ndim not in (2, 3):
                raise ArgumentValueError(BT_E_SHAPE, "%s[%d]: an image is [H, W] or [H, W, C], "
                                         "got shape %s" % (what, i, x.shape), what)
        n = len(arrs)
        c = arrs[0].shape[2] if arrs[0].ndim == 3 else 1
        for i, x in enumerate(arrs):
            if (x.shape[2] if x.ndim == 3 else 1) != c:
                raise ArgumentValueError(BT_E_SHAPE, "%s[%d]: %d channels, image 0 has %d"
                                         % (what, i, x.shape[2] if x.ndim == 3 else 1, c), what)
        addrs = np.array([x.ctypes.data for x in arrs], dtype=np.uintp)
        hs = np.array([x.shape[0] for x in arrs], dtype=np.int32)
        ws = np.array([x.shape[1] for x in arrs], dtype=np.int32)
        keep = (arrs, addrs, hs, ws)
    I32P = POINTER(c_int32)
    return (n, ctypes.cast(addrs.ctypes.data, U8PP), ctypes.cast(hs.ctypes.data, I32P),
            ctypes.cast(ws.ctypes.data, I32P), c, keep)


class Augment(_Handle):
    """The Barlow Twins augmentation (``bt_augment``) from the ``aug.*``,
    ``seed`` and ``threads`` options.

    Images are uint8, HWC, read in place: a C-contiguous batch
    ``[N, H, W]`` (grey) or ``[N, H, W, C]``, or a list of ``[H, W]`` /
    ``[H, W, C]`` arrays of different sizes. Outputs are float32
    ``[N, C, S, S]`` arrays (new, or ``out=``).
    """

    _ptype = L.AugmentP
    _free_name = "bt_augment_free"

    def __init__(self, cfg: Optional[Config] = None, **options: Any):
        p, keep_cfg = _config_arg(cfg, options)
        out = L.AugmentP()
        L.check(L.lib().bt_augment_create(byref(out), p), "bt_augment_create")
        self._adopt(out)
        self._preset = keep_cfg["aug.preset"] if keep_cfg is not None else "imagenet"

    def output_size(self, view: int = 0) -> int:
        """Output side S of view ``view`` (0: aug.view1.size, 1..7: aug.view2.size)."""
        return int(self._getter("bt_augment_output_size", int(view), status=BT_E_INVALID_ARG
                                if self._own is not None else BT_E_MISUSE))

    def views(self, images: Any, nviews: int = 2, out: Optional[Sequence[ArrayLike]] = None,
              first_index: Optional[int] = None) -> List[Any]:
        """``nviews`` augmented views of the images: view 0 with the
        aug.view1.* settings, the others with aug.view2.*. With ``out`` (a
        list of float32 [N, C, S, S] arrays or Tensors) one view per entry is
        written there and nviews is ignored. With ``first_index`` the views
        are keyed by the images' global indices first_index, first_index + 1,
        ... (bt_augment_views_at: a data-parallel rank passes the index of its
        first image). The random stream advances by one call on success; on
        error nothing is written and it stays."""
        n, ptrs, hs, ws, c, keep = _images(images, "Augment.views images")
        if out is None:
            out = [_empty((n, c, s, s)) for s in
                   (self.output_size(min(v, 1)) for v in range(int(nviews)))]
        a = _Args()
        ts, nt = a.tensors(out, "Augment.views out", writable=True)
        if first_index is None:
            self._call("bt_augment_views", n, ptrs, hs, ws, c, nt, ts)
        else:
            fmt = L.BT_PIXELS_GRAY if c == 1 else L.BT_PIXELS_RGB
            self._call("bt_augment_views_at", int(first_index), n, ptrs, hs, ws, None, fmt, nt, ts)
        del keep
        return list(out)

    def eval(self, images: Any, out: Optional[ArrayLike] = None) -> Any:
        """The deterministic evaluation transform (resize, centre crop, normalise)."""
        n, ptrs, hs, ws, c, keep = _images(images, "Augment.eval images")
        if out is None:
            s = self.output_size(0)
            out = _empty((n, c, s, s))
        a = _Args()
        self._call("bt_augment_eval", n, ptrs, hs, ws, c, a.tensor(out, "Augment.eval out", True))
        del keep
        return out

    @property
    def state(self) -> Tuple[int, int]:
        """(seed, calls) of the random stream; assign a pair to set it."""
        s, k = c_uint64(), c_uint64()
        self._call("bt_augment_get_state", byref(s), byref(k))
        return int(s.value), int(k.value)

    @state.setter
    def state(self, value: Tuple[int, int]) -> None:
        self._call("bt_augment_set_state", int(value[0]), int(value[1]))

    def __repr__(self) -> str:
        if self._own is None:
            return "<barlow.Augment closed>"
        return "<barlow.Augment preset=%s sizes=(%d, %d) state=%s>" % (
            self._preset, self.output_size(0), self.output_size(1), self.state)


# ---------------------------------------------------------------------------
# Optimizer
# ---------------------------------------------------------------------------

class Optim(_Handle):
    """An optimizer (``bt_optim``: lars, sgd or adamw with warm-up and cosine
    schedule) from the ``optim.*`` options. It keeps the models, layers and
    tensors it updates alive."""

    _ptype = L.OptimP
    _free_name = "bt_optim_free"

    def __init__(self, cfg: Optional[Config] = None, **options: Any):
        p, keep_cfg = _config_arg(cfg, options)
        out = L.OptimP()
        L.check(L.lib().bt_optim_create(byref(out), p), "bt_optim_create")
        self._adopt(out, keep=[])
        self._kind = keep_cfg["optim.kind"] if keep_cfg is not None else "lars"
        self._count = 0

    def _keep(self, obj: Any) -> None:
        if self._own is not None:
            self._own.keep.append(obj)

    def add_model(self, model: "Model") -> None:
        """Add every trainable tensor of ``model`` (named as in checkpoints)."""
        self._call("bt_optim_add_model", model._p)
        self._keep(model._own)
        self._count += int(sum(1 for _, _, g in model.named_tensors() if g is not None))

    def add_layer(self, layer: "Layer") -> None:
        """Add every trainable tensor of ``layer`` ("weight", "bias")."""
        self._call("bt_optim_add_layer", layer._p)
        self._keep(layer._own)

    def add_tensor(self, value: ArrayLike, grad: ArrayLike, name: Optional[str] = None) -> None:
        """Add one parameter (value updated in place from grad). numpy arrays
        are wrapped zero-copy and kept alive by the optimizer."""
        a = _Args()
        pv = a.tensor(value, "Optim.add_tensor value", True)
        pg = a.tensor(grad, "Optim.add_tensor grad")
        self._call("bt_optim_add_tensor", pv, pg, _enc(name))
        for t in (value, grad):
            self._keep(t._own if isinstance(t, Tensor) else None)
        self._keep(a)  # the temporary wraps of numpy arrays live as long as the optimizer
        self._count += 1

    def step(self) -> None:
        """One update of every added tensor, then the step count + 1."""
        self._call("bt_optim_step")

    @property
    def step_count(self) -> int:
        return int(self._getter("bt_optim_step_count"))

    def lr(self, group: int = 0) -> float:
        """The rate the NEXT step applies to group 0 (weights) or 1 (biases, BN)."""
        v = L.lib().bt_optim_lr(self._p, int(group))
        if v == -1.0:
            raise self._error(BT_E_INVALID_ARG if self._own is not None else BT_E_MISUSE,
                              "bt_optim_lr")
        return float(v)

    def __repr__(self) -> str:
        if self._own is None:
            return "<barlow.Optim closed>"
        return "<barlow.Optim kind=%s tensors=%d step=%d lr=%g>" % (
            self._kind, self._count, self.step_count, self.lr(0))


# ---------------------------------------------------------------------------
# Layers and cross-entropy
# ---------------------------------------------------------------------------

class Layer(_Handle):
    """A standalone layer (``bt_layer``) with PyTorch semantics. Create with
    :meth:`conv2d`, :meth:`linear`, :meth:`batchnorm`, :meth:`relu`,
    :meth:`maxpool2d` or :meth:`avgpool`."""

    _ptype = L.LayerP
    _free_name = "bt_layer_free"

    def __init__(self, kind: str, *args: Any):
        out = L.LayerP()
        fname = "bt_layer_%s_create" % kind
        L.check(getattr(L.lib(), fname)(byref(out), *args), fname)
        self._adopt(out)
        self._desc = "%s%s" % (kind, args)
        self._out_shape: Optional[Tuple[int, ...]] = None
        self._in_shape: Optional[Tuple[int, ...]] = None

    @classmethod
    def conv2d(cls, in_ch: int, out_ch: int, kernel: int, stride: int = 1, pad: int = 0,
               bias: bool = True) -> "Layer":
        return cls("conv2d", in_ch, out_ch, kernel, stride, pad, int(bias))

    @classmethod
    def linear(cls, in_features: int, out_features: int, bias: bool = True) -> "Layer":
        return cls("linear", in_features, out_features, int(bias))

    @classmethod
    def batchnorm(cls, channels: int, eps: float = 1e-5, momentum: float = 0.1,
                  affine: bool = True) -> "Layer":
        return cls("batchnorm", channels, float(eps), float(momentum), int(affine))

    @classmethod
    def relu(cls) -> "Layer":
        return cls("relu")

    @classmethod
    def maxpool2d(cls, kernel: int, stride: int, pad: int = 0) -> "Layer":
        return cls("maxpool2d", kernel, stride, pad)

    @classmethod
    def avgpool(cls) -> "Layer":
        return cls("avgpool")

    def output_shape(self, in_shape: Sequence[int]) -> Tuple[int, ...]:
        ndim, dims = _shape_arg(in_shape)
        on = c_int32()
        od = (c_int64 * L.BT_TENSOR_MAX_DIMS)()
        self._call("bt_layer_output_shape", ndim, dims, byref(on), od)
        return tuple(od[i] for i in range(on.value))

    def forward(self, x: ArrayLike, training: bool = True, out: Optional[ArrayLike] = None) -> Any:
        a = _Args()
        px = a.tensor(x, "Layer.forward x")
        if out is None:
            out = _empty(self.output_shape(x.shape))
        self._call("bt_layer_forward", px, a.tensor(out, "Layer.forward out", True), int(training))
        self._in_shape = tuple(x.shape)
        return out

    def backward(self, dy: ArrayLike, out: Optional[ArrayLike] = None, need_dx: bool = True
                 ) -> Any:
        """Input gradient of the last forward (None with need_dx=False);
        parameter gradients ACCUMULATE."""
        a = _Args()
        pdy = a.tensor(dy, "Layer.backward dy")
        if out is None and need_dx:
            out = _empty(self._in_shape or (1,))
        pdx = a.tensor(out, "Layer.backward dx", True) if out is not None else L.TensorP()
        self._call("bt_layer_backward", pdy, pdx)
        return out

    def named_tensors(self) -> List[Tuple[str, Tensor, Optional[Tensor]]]:
        """(name, value, grad) borrowed from the layer (see Model.named_tensors)."""
        res = []
        for i in range(self._getter("bt_layer_tensor_count")):
            name, v, g = c_char_p(), L.TensorP(), L.TensorP()
            self._call("bt_layer_tensor", i, byref(name), byref(v), byref(g))
            res.append((_dec(name.value), Tensor._borrowed(v, self._own, "borrowed from Layer"),
                        Tensor._borrowed(g, self._own, "borrowed from Layer") if g else None))
        return res

    def zero_grad(self) -> None:
        self._call("bt_layer_zero_grad")

    def set_threads(self, n: int) -> None:
        self._call("bt_layer_set_threads", int(n))

    def reset_parameters(self, seed: int) -> None:
        self._call("bt_layer_reset_parameters", int(seed))

    def __repr__(self) -> str:
        if self._own is None:
            return "<barlow.Layer closed>"
        return "<barlow.Layer %s>" % self._desc


class CrossEntropy(_Handle):
    """Softmax cross-entropy with mean reduction (``bt_xent``) for probes."""

    _ptype = L.XentP
    _free_name = "bt_xent_free"

    def __init__(self, cfg: Optional[Config] = None, **options: Any):
        p, _ = _config_arg(cfg, options)
        out = L.XentP()
        L.check(L.lib().bt_xent_create(byref(out), p), "bt_xent_create")
        self._adopt(out)
        self._shape: Optional[Tuple[int, ...]] = None

    def forward(self, logits: ArrayLike, labels: Any) -> Tuple[float, int, int]:
        """(mean loss, top-1 correct, top-5 correct) for logits [N, K] and N labels."""
        lab = np.asarray(labels)
        if lab.dtype != np.int32:
            if not np.issubdtype(lab.dtype, np.integer):
                raise ArgumentTypeError(BT_E_INVALID_ARG, "CrossEntropy.forward: labels dtype "
                                        "is %s; need integers" % lab.dtype, "CrossEntropy.forward")
            lab = lab.astype(np.int32)
        lab = np.ascontiguousarray(lab)
        a = _Args()
        pl = a.tensor(logits, "CrossEntropy.forward logits")
        if lab.size != (logits.shape[0] if len(logits.shape) else 0):
            raise ArgumentValueError(BT_E_SHAPE, "CrossEntropy.forward: %d labels for %s logits"
                                     % (lab.size, tuple(logits.shape)), "CrossEntropy.forward")
        m, t1, t5 = c_double(), c_int64(), c_int64()
        self._call("bt_xent_forward", pl, ctypes.cast(lab.ctypes.data, POINTER(c_int32)),
                   byref(m), byref(t1), byref(t5))
        self._shape = tuple(logits.shape)
        return m.value, int(t1.value), int(t5.value)

    def backward(self, out: Optional[ArrayLike] = None) -> Any:
        """d(mean loss)/d logits of the last forward (new array, or ``out``)."""
        if out is None:
            out = _empty(self._shape or (1, 1))
        a = _Args()
        self._call("bt_xent_backward", a.tensor(out, "CrossEntropy.backward out", True))
        return out

    def __repr__(self) -> str:
        if self._own is None:
            return "<barlow.CrossEntropy closed>"
        return "<barlow.CrossEntropy last_shape=%s>" % (self._shape,)


# ---------------------------------------------------------------------------
# Checkpoints and library facts
# ---------------------------------------------------------------------------

def _p_or_null(h: Optional[_Handle], ptype: Any) -> Any:
    return h._p if h is not None else ptype()


def save_checkpoint(path: PathLike, model: Model, optim: Optional[Optim] = None,
                    augment: Optional[Augment] = None, prefix_map: Optional[str] = None,
                    mapped_only: bool = False) -> None:
    """Write model (and optimizer state, augmentation RNG state) to one
    safetensors file, atomically (``bt_checkpoint_save``; with prefix_map or
    mapped_only, ``bt_checkpoint_save_ex``)."""
    lib = L.lib()
    args = (_enc(path), _p_or_null(model, L.ModelP), _p_or_null(optim, L.OptimP),
            _p_or_null(augment, L.AugmentP))
    if prefix_map is None and not mapped_only:
        L.check(lib.bt_checkpoint_save(*args), "bt_checkpoint_save")
    else:
        L.check(lib.bt_checkpoint_save_ex(*args, _enc(prefix_map),
                                          L.BT_SAVE_MAPPED_ONLY if mapped_only else 0),
                "bt_checkpoint_save_ex")


def load_checkpoint(path: PathLike, model: Model, optim: Optional[Optim] = None,
                    augment: Optional[Augment] = None, prefix_map: Optional[str] = None,
                    partial: bool = False, ignore_extra: bool = False) -> Optional[str]:
    """Load a checkpoint into model (and optim, augment). Validated first; on
    any error nothing changed. With prefix_map, partial or ignore_extra
    (``bt_checkpoint_load_ex``) returns its report text, else None."""
    lib = L.lib()
    args = (_enc(path), _p_or_null(model, L.ModelP), _p_or_null(optim, L.OptimP),
            _p_or_null(augment, L.AugmentP))
    if prefix_map is None and not partial and not ignore_extra:
        L.check(lib.bt_checkpoint_load(*args), "bt_checkpoint_load")
        return None
    cap = 1 << 16
    buf = ctypes.create_string_buffer(cap)
    flags = (L.BT_LOAD_PARTIAL if partial else 0) | (L.BT_LOAD_IGNORE_EXTRA if ignore_extra else 0)
    L.check(lib.bt_checkpoint_load_ex(*args, _enc(prefix_map), flags, buf, cap),
            "bt_checkpoint_load_ex")
    return _dec(buf.value)


def checkpoint_metadata(path: PathLike, key: str) -> str:
    """The value of a checkpoint's metadata key (``bt_checkpoint_metadata``),
    e.g. "libbarlow.version", "libbarlow.step"."""
    cap = 4096
    while True:
        buf = ctypes.create_string_buffer(cap)
        st = L.lib().bt_checkpoint_metadata(_enc(path), _enc(key), buf, cap)
        if st == 0:
            return _dec(buf.value)
        if st == BT_E_INVALID_ARG and cap < 1 << 26:
            cap *= 16
            continue
        raise L.error(st, "bt_checkpoint_metadata")


def read_checkpoint_config(path: PathLike, cfg: Optional[Config] = None) -> Config:
    """The model options saved in a checkpoint, applied to cfg (or a new
    Config) with ``bt_config_read_checkpoint``; returns the Config."""
    c = cfg if cfg is not None else Config()
    c.read_checkpoint(path)
    return c


def version() -> str:
    """The loaded library's version string, e.g. "0.1.0"."""
    return _dec(L.lib().bt_version_string())


def version_number() -> int:
    """MAJOR*10000 + MINOR*100 + PATCH of the loaded library."""
    return int(L.lib().bt_version_number())


def build_info() -> str:
    """The library's build line (BLAS, its core, threading, cpu levels)."""
    return _dec(L.lib().bt_build_info())


def cpu_level() -> str:
    """The CPU level a handle created now would use ("generic", "avx2", "avx512")."""
    with Config() as c:
        return c["build.cpu_level"]


def cpu_info() -> Dict[str, str]:
    """Facts about the CPU and the BLAS as the library sees them: "cpu_level"
    (what a handle created now uses), "cpu_best" (the best level this CPU
    runs), "blas", "blas_core" (the kernel core OpenBLAS chose), "blas_config",
    "threads" (the threading back end)."""
    info = {}
    for part in build_info().split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == "cpu_best":
            info["cpu_best"] = v
    with Config() as c:
        info["cpu_level"] = c["build.cpu_level"]
        for k in ("blas", "blas_core", "blas_config", "threads"):
            info[k] = c["build." + k]
    return info


def status_string(status: int) -> str:
    """The library's static text for a status code."""
    return _dec(L.lib().bt_status_string(int(status)))
