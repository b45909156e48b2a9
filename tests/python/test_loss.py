"""Loss forward and gradients: the package equals the C API called through raw
ctypes bit for bit, and a float64 numpy reference of the Barlow Twins loss."""
import ctypes
import os

import numpy as np
import pytest

import barlow

N, D = 12, 20


def inputs(n=N, d=D, seed=0):
    rng = np.random.default_rng(seed)
    za = rng.standard_normal((n, d)).astype(np.float32) * np.float32(1.5) + np.float32(0.3)
    zb = (za + np.float32(0.5) * rng.standard_normal((n, d)).astype(np.float32)).astype(np.float32)
    return za, zb


def reference(za, zb, lam=0.0051, scale=1.0, mode="barlow"):
    """float64 Barlow Twins loss (official main.py) and its analytic gradients."""
    za, zb = za.astype(np.float64), zb.astype(np.float64)
    n = za.shape[0]

    def norm(x):
        mu = x.mean(0)
        sd = np.sqrt(((x - mu) ** 2).mean(0) + 1e-5)  # biased variance, eps 1e-5
        return (x - mu) / sd, sd

    a, sa = norm(za)
    b, sb = norm(zb)
    c = a.T @ b / n
    diag = np.diag(c)
    on = ((1 - diag) ** 2).sum()
    off = (c ** 2).sum() - (diag ** 2).sum()
    # dL/dC, per mode
    g_on = np.diag(-2 * (1 - diag))
    g_off = 2 * c - np.diag(2 * diag)
    if mode == "barlow":
        loss, g = on + lam * off, g_on + lam * g_off
    elif mode == "invariance_only":
        loss, g = on, g_on
    else:  # redundancy_only
        loss, g = lam * off, lam * g_off
    loss, g = scale * loss, scale * g
    da, db = b @ g.T / n, a @ g / n

    def norm_back(dxh, xh, sd):
        return (dxh - dxh.mean(0) - xh * (dxh * xh).mean(0)) / sd

    return loss, on, off, c, norm_back(da, a, sa), norm_back(db, b, sb)


class Raw:
    """The C API through ctypes.CDLL alone, independent of the package's declarations."""

    def __init__(self):
        self.lib = lib = ctypes.CDLL(os.environ.get("BARLOW_LIBRARY") or barlow.library_path())
        V = ctypes.c_void_p
        lib.bt_tensor_create.argtypes = [ctypes.POINTER(V), ctypes.c_int32, ctypes.POINTER(ctypes.c_int64)]
        lib.bt_tensor_data.argtypes = [V]
        lib.bt_tensor_data.restype = ctypes.POINTER(ctypes.c_float)
        lib.bt_tensor_free.argtypes = [V]
        lib.bt_config_create.argtypes = [ctypes.POINTER(V)]
        lib.bt_config_set.argtypes = [V, ctypes.c_char_p, ctypes.c_char_p]
        lib.bt_config_free.argtypes = [V]
        lib.bt_loss_create.argtypes = [ctypes.POINTER(V), V]
        lib.bt_loss_forward.argtypes = [V, V, V, ctypes.POINTER(ctypes.c_double)]
        lib.bt_loss_backward.argtypes = [V, V, V]
        lib.bt_loss_terms.argtypes = [V, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double)]
        lib.bt_loss_free.argtypes = [V]
        lib.bt_last_error.restype = ctypes.c_char_p

    def tensor(self, arr):
        t = ctypes.c_void_p()
        assert self.lib.bt_tensor_create(ctypes.byref(t), arr.ndim, (ctypes.c_int64 * arr.ndim)(*arr.shape)) == 0
        ctypes.memmove(self.lib.bt_tensor_data(t), arr.ctypes.data, arr.nbytes)
        return t

    def read(self, t, shape):
        out = np.empty(shape, np.float32)
        ctypes.memmove(out.ctypes.data, self.lib.bt_tensor_data(t), out.nbytes)
        return out

    def loss(self, za, zb, options):
        lib = self.lib
        cfg, loss = ctypes.c_void_p(), ctypes.c_void_p()
        assert lib.bt_config_create(ctypes.byref(cfg)) == 0
        for k, v in options.items():
            assert lib.bt_config_set(cfg, k.encode(), str(v).encode()) == 0
        assert lib.bt_loss_create(ctypes.byref(loss), cfg) == 0
        lib.bt_config_free(cfg)
        ta, tb, ga, gb = self.tensor(za), self.tensor(zb), self.tensor(za * 0), self.tensor(zb * 0)
        value, on, off = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        assert lib.bt_loss_forward(loss, ta, tb, ctypes.byref(value)) == 0
        assert lib.bt_loss_backward(loss, ga, gb) == 0
        assert lib.bt_loss_terms(loss, ctypes.byref(on), ctypes.byref(off)) == 0
        res = value.value, on.value, off.value, self.read(ga, za.shape), self.read(gb, zb.shape)
        for t in (ta, tb, ga, gb):
            lib.bt_tensor_free(t)
        lib.bt_loss_free(loss)
        return res


@pytest.fixture(scope="module")
def raw():
    return Raw()


def close(a, b, rtol):
    scale = max(np.abs(b).max(), 1e-30)
    return np.abs(a - b).max() / scale <= rtol


CASES = [
    ({}, dict()),
    ({"loss.lambda": 0.02}, dict(lam=0.02)),
    ({"loss.scale": 0.025}, dict(scale=0.025)),
    ({"loss.scale": 3.5, "loss.lambda": 0.1}, dict(scale=3.5, lam=0.1)),
    ({"loss.mode": "invariance_only"}, dict(mode="invariance_only")),
    ({"loss.mode": "redundancy_only", "loss.scale": 2}, dict(mode="redundancy_only", scale=2.0)),
]


@pytest.mark.parametrize("options,ref", CASES)
@pytest.mark.parametrize("shape", [(N, D), (24, 8)])  # Gram path (D > N) and D x D path
def test_loss_matches_c_and_reference(raw, options, ref, shape):
    za, zb = inputs(*shape)
    with barlow.Loss(barlow.Config(options)) as loss:
        value = loss.forward(za, zb)
        dza, dzb = loss.backward()
        on, off = loss.terms()
        c16 = loss.correlation(4)
        path = loss.path
    assert path == ("gram" if shape[1] > shape[0] else "dxd")
    # the package is the C API: identical bits
    r_value, r_on, r_off, r_dza, r_dzb = raw.loss(za, zb, options)
    assert value == r_value and on == r_on and off == r_off
    assert np.array_equal(dza, r_dza) and np.array_equal(dzb, r_dzb)
    # and the float64 reference
    f_loss, f_on, f_off, f_c, f_dza, f_dzb = reference(za, zb, **ref)
    assert value == pytest.approx(f_loss, rel=1e-5)
    assert on == pytest.approx(f_on, rel=1e-5) and off == pytest.approx(f_off, rel=1e-5)
    assert close(c16, f_c[:4, :4], 1e-5)
    assert close(dza, f_dza, 1e-4) and close(dzb, f_dzb, 1e-4)
    assert dza.dtype == np.float32 and dza.shape == za.shape


def test_scale_is_linear():
    za, zb = inputs()
    with barlow.Loss(loss__scale=1) as l1, barlow.Loss(loss__scale=4) as l4:
        v1, v4 = l1.forward(za, zb), l4.forward(za, zb)
        (a1, b1), (a4, b4) = l1.backward(), l4.backward()
        assert l1.terms() == l4.terms()  # terms are before lambda and scale
    assert v4 == pytest.approx(4 * v1, rel=1e-12)
    assert close(a4, 4 * a1, 1e-6) and close(b4, 4 * b1, 1e-6)


def test_paths_agree():
    za, zb = inputs(8, 16)
    with barlow.Loss() as loss:
        loss.path = "dxd"
        v1 = loss.forward(za, zb)
        g1 = loss.backward()
        assert loss.path == "dxd"
        loss.path = "gram"
        v2 = loss.forward(za, zb)
        g2 = loss.backward()
        assert loss.path == "gram"
    assert v1 == pytest.approx(v2, rel=1e-7)
    assert close(g1[0], g2[0], 1e-5) and close(g1[1], g2[1], 1e-5)


def read_golden(path):
    """tests/golden/*.bin (the format of tests/golden/golden_io.py)."""
    import struct
    out = {}
    with open(path, "rb") as f:
        assert f.read(8) == b"BTGOLD1\n"
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            (ln,) = struct.unpack("<H", f.read(2))
            name = f.read(ln).decode()
            (nd,) = struct.unpack("<B", f.read(1))
            dims = struct.unpack("<%dq" % nd, f.read(8 * nd))
            out[name] = np.frombuffer(f.read(4 * int(np.prod(dims))), "<f4").reshape(dims)
    return out


def test_pytorch_golden_8x16():
    """The PyTorch float64 golden values of tests/golden/gen_loss.py (case 8 x 16)."""
    g = read_golden(os.path.join(os.path.dirname(__file__), "..", "golden", "loss_8x16.bin"))
    za, zb = np.ascontiguousarray(g["za"]), np.ascontiguousarray(g["zb"])
    with barlow.Loss() as loss:
        value = loss.forward(za, zb)
        dza, dzb = loss.backward()
    assert value == pytest.approx(float(g["barlow.loss"][0]), rel=1e-5)
    assert close(dza, g["barlow.dza"], 1e-4) and close(dzb, g["barlow.dzb"], 1e-4)
    f_loss, _, _, _, f_dza, _ = reference(za, zb)
    assert f_loss == pytest.approx(float(g["barlow.loss"][0]), rel=1e-5)
    assert close(f_dza, g["barlow.dza"], 1e-4)
