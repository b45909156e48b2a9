"""Zero-copy wrapping, view lifetimes, and no leak over many create/free cycles."""
import gc
import os

import numpy as np
import pytest

import barlow

TINY = {"model.arch": "resnet", "model.blocks": "1", "model.widths": "4", "model.stem": "cifar",
        "model.in_channels": 1, "model.projector": "8-8", "threads": 1}


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_wrap_is_zero_copy():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = barlow.Tensor.from_numpy(a)
    assert t.data_ptr == a.ctypes.data
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.numel == 24
    assert t.numpy() is a
    a[1, 2, 3] = -7  # the library sees writes through the array
    assert barlow._lib.lib().bt_tensor_data(t._p)[23] == -7


def test_inputs_and_outputs_are_not_copied():
    """The loss reads za in place and writes into the out= arrays given."""
    za = np.random.default_rng(1).standard_normal((6, 5)).astype(np.float32)
    zb = za + np.float32(0.1)
    dza, dzb = np.zeros_like(za), np.zeros_like(zb)
    with barlow.Loss() as loss:
        loss.forward(za, zb)
        ra, rb = loss.backward(out=(dza, dzb))
        assert ra is dza and rb is dzb and np.abs(dza).sum() > 0
        t = barlow.Tensor.from_numpy(dza)
        ptr = t.data_ptr
        loss.backward(out=(t, dzb))
        assert ptr == dza.ctypes.data


def test_library_tensor_view_and_lifetime():
    t = barlow.Tensor((3, 4))
    v = t.numpy()
    assert v.ctypes.data == t.data_ptr and v.shape == (3, 4) and not v.any()
    v[:] = 2.0
    assert barlow._lib.lib().bt_tensor_data(t._p)[11] == 2.0
    t.close()
    gc.collect()
    assert float(v.sum()) == 24.0  # the view keeps the memory alive past close()
    with pytest.raises(barlow.Error) as e:
        t.numpy()
    assert e.value.status_name == "BT_E_MISUSE"


def test_model_tensors_are_views_and_keep_the_model_alive():
    m = barlow.Model(barlow.Config(TINY))
    name, value, grad = m.named_tensors()[0]
    assert name == "backbone.conv1.weight" and grad is not None
    view = value.numpy()
    before = view.copy()
    view += 1.0  # written straight into the model
    assert np.array_equal(m.state_dict()[name], before + 1.0)
    m.close()
    del value, grad
    gc.collect()
    assert np.array_equal(view, before + 1.0)


def test_features_are_a_copy():
    cfg = barlow.Config(TINY)
    with barlow.Model(cfg) as m:
        x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
        m.forward([x, x])
        f = m.features(0)
        assert f.shape == (4, m.feature_dim)
        keep = f.copy()
        m.forward([x + 1, x + 1])
        assert np.array_equal(f, keep)  # not overwritten by the next forward


def cycle(x):
    cfg = barlow.Config(TINY)
    with barlow.Model(cfg) as m, barlow.Loss(cfg) as loss, barlow.Optim(cfg) as opt:
        opt.add_model(m)
        z = m.forward([x, x])
        loss.forward(*z)
        m.backward(loss.backward())
        opt.step()
        m.named_tensors()
    t = barlow.Tensor((16, 16))
    t.numpy()[:] = 1
    w = barlow.Tensor.from_numpy(np.ones((8, 8), np.float32))
    del t, w, cfg


def test_no_leak_over_1000_cycles():
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    for i in range(1, 1001):
        cycle(x)
        if i == 100:
            gc.collect()
            at100 = rss_bytes()
    gc.collect()
    growth = rss_bytes() - at100
    assert growth < 1 << 20, "RSS grew by %d bytes between cycles 100 and 1000" % growth
