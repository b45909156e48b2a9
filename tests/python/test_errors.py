"""Bad input raises barlow.Error (the library's message where the library
refuses) and changes nothing; closed handles; context managers; lookup order."""
import ctypes
import ctypes.util
import os
import subprocess
import sys

import numpy as np
import pytest

import barlow
from barlow import _lib

TINY = {"model.arch": "resnet", "model.blocks": "1", "model.widths": "4", "model.stem": "cifar",
        "model.in_channels": 1, "model.projector": "8-8", "threads": 1}


def raw_message(fname, *args):
    """What the C function itself says for these arguments (through the declared library)."""
    st = getattr(_lib.lib(), fname)(*args)
    return st, _lib.lib().bt_last_error().decode()


def embeddings(n=6, d=5, seed=0):
    rng = np.random.default_rng(seed)
    za = rng.standard_normal((n, d)).astype(np.float32)
    return za, (za + np.float32(0.3) * rng.standard_normal((n, d))).astype(np.float32)


def test_error_attributes():
    c = barlow.Config()
    with pytest.raises(barlow.Error) as e:
        c["loss.lambda"] = "lots"
    err = e.value
    assert isinstance(err, Exception) and err.status == 1 and err.status_name == "BT_E_INVALID_ARG"
    assert "loss.lambda" in err.message and "lots" in err.message
    assert err.message == _lib.lib().bt_last_error().decode()
    assert err.status_name in str(err) and err.message in str(err)
    assert c["loss.lambda"] == "0.0051"  # unchanged
    assert not c.is_set("loss.lambda")


def test_unknown_option_is_error_and_keyerror():
    c = barlow.Config()
    with pytest.raises(barlow.UnknownOptionError) as e:
        c["no.such"] = 1
    assert isinstance(e.value, KeyError) and isinstance(e.value, barlow.Error)
    assert e.value.status_name == "BT_E_UNSUPPORTED" and "no.such" in e.value.message
    assert c.get("no.such", "x") == "x" and "no.such" not in c
    with pytest.raises(barlow.Error) as e:
        c["build.blas"] = "x"
    assert e.value.status_name == "BT_E_INVALID_ARG"


def test_loss_wrong_shape_changes_nothing():
    za, zb = embeddings()
    with barlow.Loss() as loss:
        v = loss.forward(za, zb)
        terms = loss.terms()
        grads = loss.backward()
        bad = np.zeros((6, 4), np.float32)
        with pytest.raises(barlow.Error) as e:
            loss.forward(za, bad)
        # the library's own message for the same call
        ta, tb = barlow.Tensor.from_numpy(za), barlow.Tensor.from_numpy(bad)
        st, msg = raw_message("bt_loss_forward", loss._p, ta._p, tb._p, ctypes.byref(ctypes.c_double()))
        assert e.value.status == st == 3 and e.value.status_name == "BT_E_SHAPE"
        assert e.value.message == msg and msg.startswith("bt_loss_forward:")
        assert loss.terms() == terms  # still the last successful forward
        g2 = loss.backward()
        assert np.array_equal(g2[0], grads[0]) and np.array_equal(g2[1], grads[1])
        # wrong output shape for backward: refused, out untouched
        out = (np.full((6, 4), 7, np.float32), np.full((6, 5), 7, np.float32))
        with pytest.raises(barlow.Error) as e:
            loss.backward(out=out)
        assert e.value.status_name == "BT_E_SHAPE" and "bt_loss_backward" in e.value.message
        assert (out[0] == 7).all() and (out[1] == 7).all()
        assert loss.forward(za, zb) == v


@pytest.mark.parametrize("bad,cls,base", [
    (lambda a: a.astype(np.float64), barlow.ArgumentTypeError, TypeError),
    (lambda a: a.astype(np.int32), barlow.ArgumentTypeError, TypeError),
    (lambda a: np.asfortranarray(a), barlow.ArgumentValueError, ValueError),
    (lambda a: np.repeat(a, 2, axis=1)[:, ::2], barlow.ArgumentValueError, ValueError),
    (lambda a: a.tolist(), barlow.ArgumentTypeError, TypeError),
])
def test_loss_bad_arrays_change_nothing(bad, cls, base):
    za, zb = embeddings()
    with barlow.Loss() as loss:
        loss.forward(za, zb)
        terms = loss.terms()
        with pytest.raises(cls) as e:
            loss.forward(bad(za), zb)
        assert isinstance(e.value, barlow.Error) and isinstance(e.value, base)
        assert "Loss.forward za" in e.value.message
        assert loss.terms() == terms


def test_numeric_error_from_library():
    za, zb = embeddings()
    za[2, 3] = np.nan
    with barlow.Loss() as loss:
        with pytest.raises(barlow.Error) as e:
            loss.forward(za, zb)
        assert e.value.status_name == "BT_E_NUMERIC"
        with pytest.raises(barlow.Error) as e:  # no successful forward yet
            loss.backward()
        assert e.value.status_name == "BT_E_STATE"


def test_model_bad_views_change_nothing():
    with barlow.Model(barlow.Config(TINY)) as m:
        before = m.state_dict()
        x = np.zeros((4, 3, 8, 8), np.float32)  # 3 channels, the model takes 1
        with pytest.raises(barlow.Error) as e:
            m.forward([x, x])
        assert e.value.status_name == "BT_E_SHAPE" and "bt_model_forward" in e.value.message
        with pytest.raises(barlow.Error) as e:
            m.backward([np.zeros((4, 8), np.float32)] * 2)
        assert e.value.status_name == "BT_E_STATE"
        with pytest.raises(barlow.ArgumentTypeError):
            m.forward(np.zeros((4, 1, 8, 8), np.float32))  # one array, not a list of views
        after = m.state_dict()
        assert all(np.array_equal(before[k], after[k]) for k in before)


def test_augment_bad_images_change_nothing():
    with barlow.Augment(aug__preset="fmnist", aug__size=8) as aug:
        imgs = np.zeros((3, 10, 10), np.uint8)
        out = [np.full((3, 1, 8, 8), 5, np.float32) for _ in range(2)]
        for bad, cls in [(imgs.astype(np.float32), barlow.ArgumentTypeError),
                         (imgs[:, ::2], barlow.ArgumentValueError),
                         (imgs.reshape(3, 100), barlow.ArgumentValueError)]:
            with pytest.raises(cls):
                aug.views(bad, out=out)
        with pytest.raises(barlow.Error) as e:  # 2 channels: the library refuses
            aug.views(np.zeros((3, 10, 10, 2), np.uint8))
        assert e.value.status_name == "BT_E_INVALID_ARG" and "channels" in e.value.message
        with pytest.raises(barlow.Error) as e:  # outputs of the wrong size
            aug.views(imgs, out=[np.zeros((3, 1, 9, 9), np.float32)] * 2)
        assert e.value.status_name in ("BT_E_SHAPE", "BT_E_INVALID_ARG")
        assert all((o == 5).all() for o in out) and aug.state == (0, 0)
        aug.views(imgs, out=out)
        assert aug.state == (0, 1)


def test_optim_refuses_non_finite_gradients():
    value = np.ones((3, 3), np.float32)
    grad = np.full((3, 3), np.inf, np.float32)
    with barlow.Optim(optim__kind="sgd") as opt:
        opt.add_tensor(value, grad, "w")
        with pytest.raises(barlow.Error) as e:
            opt.step()
        assert e.value.status_name == "BT_E_NUMERIC"
        assert opt.step_count == 0 and (value == 1).all()
        grad[:] = 1
        opt.step()
        assert opt.step_count == 1 and (value < 1).all()


def test_tensor_errors_from_library():
    with pytest.raises(barlow.Error) as e:
        barlow.Tensor((2, 0))
    assert e.value.status_name == "BT_E_INVALID_ARG" and "bt_tensor_create" in e.value.message
    with pytest.raises(barlow.Error) as e:
        barlow.Tensor.from_numpy(np.zeros((1, 1, 1, 1, 2), np.float32))
    assert "bt_tensor_wrap" in e.value.message


@pytest.mark.parametrize("make,use,fname", [
    (lambda: barlow.Loss(), lambda o: o.forward(*embeddings()), "bt_loss_forward"),
    (lambda: barlow.Model(barlow.Config(TINY)), lambda o: o.embed_dim, "bt_model_embed_dim"),
    (lambda: barlow.Augment(), lambda o: o.state, "bt_augment_get_state"),
    (lambda: barlow.Optim(), lambda o: o.step(), "bt_optim_step"),
    (lambda: barlow.Config(), lambda o: o.__setitem__("seed", 1), "bt_config_set"),
    (lambda: barlow.Tensor((2,)), lambda o: o.shape, "bt_tensor_shape"),
    (lambda: barlow.Layer.relu(), lambda o: o.zero_grad(), "bt_layer_zero_grad"),
    (lambda: barlow.CrossEntropy(), lambda o: o.backward(), "bt_xent_backward"),
])
def test_closed_handles_raise_misuse(make, use, fname):
    with make() as obj:
        assert not obj.closed
    assert obj.closed and "closed" in repr(obj)
    with pytest.raises(barlow.Error) as e:
        use(obj)
    assert e.value.status_name == "BT_E_MISUSE"
    assert e.value.message.startswith(fname + ":")  # the library's message
    obj.close()  # closing twice is fine


def test_close_and_del_are_safe():
    m = barlow.Model(barlow.Config(TINY))
    o = barlow.Optim()
    o.add_model(m)
    m.close()  # the optimizer still uses the model: its memory stays
    x = np.zeros((2, 1, 8, 8), np.float32)
    o.step()
    assert o.step_count == 1
    del m, o, x


def test_library_not_found_lists_every_place(monkeypatch):
    monkeypatch.setenv("BARLOW_LIBRARY", "/nonexistent/libbarlow.so.0")
    monkeypatch.setattr(_lib, "_install_libdir", lambda: "/nonexistent/lib")
    monkeypatch.setattr(_lib.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(_lib, "LIBRARY_NAME", "libbarlow-missing.so.0")
    monkeypatch.setattr(_lib, "_explicit", None)
    with pytest.raises(barlow.LibraryNotFoundError) as e:
        _lib._open()
    msg = e.value.message
    for place in ("$BARLOW_LIBRARY: /nonexistent/libbarlow.so.0: no such file",
                  "install prefix LIBDIR: /nonexistent/lib/libbarlow-missing.so.0: no such file",
                  "ctypes.util.find_library('barlow'): not set", "system loader: libbarlow-missing.so.0"):
        assert place in msg, msg
    assert isinstance(e.value, OSError) and isinstance(e.value, barlow.Error)


def run_python(code, **env):
    e = dict(os.environ)
    for k, v in env.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    p = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout.strip(), p.stderr


def test_lookup_order():
    so = os.path.realpath(barlow.library_path())
    alias = os.path.join(os.path.dirname(so), "libbarlow.so.0")
    if not os.path.exists(alias) or os.path.realpath(alias) != so or alias == so:
        alias = so
    show = "import barlow; barlow.version(); print(barlow.library_path())"
    # explicit path beats $BARLOW_LIBRARY
    rc, out, err = run_python("import barlow; barlow.load_library(%r); print(barlow.library_path()); "
                              "barlow.Config()" % so, BARLOW_LIBRARY=alias)
    assert rc == 0 and out == so, err
    # $BARLOW_LIBRARY is used when given
    rc, out, err = run_python(show, BARLOW_LIBRARY=so)
    assert rc == 0 and out == so, err
    # an explicit path that fails is an error, not replaced by another library
    rc, out, err = run_python("import barlow; barlow.load_library('/nonexistent/x.so')", BARLOW_LIBRARY=so)
    assert rc != 0 and "LibraryNotFoundError" in err and "/nonexistent/x.so" in err
    # a broken $BARLOW_LIBRARY falls through to the install prefix's LIBDIR (when recorded)
    libdir = _lib._install_libdir()
    if libdir:
        rc, out, err = run_python("import barlow; barlow.version(); print(barlow.library_path())",
                                  BARLOW_LIBRARY="/nonexistent/libbarlow.so.0")
        assert rc == 0 and out == os.path.join(libdir, "libbarlow.so.0"), err
    # loading another library once one is loaded is refused
    with pytest.raises(barlow.Error) as e:
        barlow.load_library("/elsewhere/libbarlow.so.0")
    assert e.value.status_name == "BT_E_STATE"
    assert barlow.load_library() is _lib.lib()


def test_closed_config_is_refused():
    c = barlow.Config(loss__lambda=0.5)
    c.close()
    with pytest.raises(barlow.Error) as e:
        barlow.Loss(c)  # not silently the defaults
    assert e.value.status_name == "BT_E_MISUSE"


def test_read_only_arrays():
    za = np.ones((4, 3), np.float32)
    za[0, 0] = 2
    za.flags.writeable = False
    with barlow.Loss() as loss:
        loss.forward(za, za[::-1].copy())  # inputs may be read-only
        with pytest.raises(barlow.ArgumentValueError):
            loss.backward(out=(za, np.zeros_like(za)))
    with pytest.raises(barlow.ArgumentValueError):
        barlow.Tensor.from_numpy(za)


def test_library_without_the_api_is_skipped(monkeypatch):
    libm = ctypes.util.find_library("m") or "libm.so.6"
    monkeypatch.setenv("BARLOW_LIBRARY", libm)
    monkeypatch.setattr(_lib, "_install_libdir", lambda: None)
    monkeypatch.setattr(_lib.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(_lib, "LIBRARY_NAME", "libbarlow-missing.so.0")
    monkeypatch.setattr(_lib, "_explicit", None)
    with pytest.raises(barlow.LibraryNotFoundError) as e:
        _lib._open()
    assert "$BARLOW_LIBRARY: %s: the loaded library lacks bt_version_number" % libm in e.value.message
