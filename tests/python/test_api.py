"""The Pythonic surface: Config as a mapping, checkpoints, augmentation,
optimizer, layers, cross-entropy, library facts, reprs."""
import multiprocessing

import numpy as np
import pytest

import barlow

TINY = {"model.arch": "resnet", "model.blocks": "1", "model.widths": "4", "model.stem": "cifar",
        "model.in_channels": 1, "model.projector": "8-8", "threads": 1, "aug.preset": "fmnist",
        "aug.size": 8, "optim.batch_size": 4}


def test_version_and_build_info():
    assert barlow.version().count(".") == 2
    assert barlow.version_number() == sum(int(p) * m for p, m in zip(barlow.version().split("."),
                                                                      (10000, 100, 1)))
    assert barlow.build_info().startswith("libbarlow " + barlow.version())
    assert barlow.cpu_level() in ("generic", "avx2", "avx512")
    assert barlow.__version__ == barlow.version()
    info = barlow.cpu_info()
    assert info["cpu_level"] == barlow.cpu_level() and info["cpu_best"] in ("generic", "avx2", "avx512")
    assert info["blas"] and info["threads"]


def test_config_mapping():
    c = barlow.Config({"model.arch": "resnet"}, seed=7, optim__batch_size=64,
                      **{"model.projector": [16, 16], "aug.mean": [0.5, 0.25, 0.125]})
    assert c["model.arch"] == "resnet" and c["seed"] == "7" and c["optim.batch_size"] == "64"
    assert c["model.projector"] == "16-16" and c["aug.mean"] == "0.5,0.25,0.125"
    names = [o.name for o in barlow.options()]
    assert list(c) == names and len(c) == len(names) and "loss.lambda" in c
    assert dict(c.items())["loss.lambda"] == "0.0051"
    c["loss.lambda"] = 0.004
    c["model.projector_bias"] = True
    assert c["loss.lambda"] == "0.004" and c["model.projector_bias"] == "1"
    assert c.is_set("loss.lambda") and not c.is_set("loss.scale")
    del c["loss.lambda"]
    assert c["loss.lambda"] == "0.0051" and not c.is_set("loss.lambda")
    assert c["aug.view1.size"] == "224" and c["build.version"] == barlow.version()
    c["aug.view2.blur_p"] = 0.5
    assert c["aug.view2.blur_p"] == "0.5"
    r = repr(c)
    assert "model.arch" in r and "'resnet'" in r and "loss.scale" not in r
    info = barlow.options()[0]
    assert info.name == "model.arch" and info.type == "choice" and "resnet50" in info.range
    c.update({"threads": 1})
    c["aug.view1.solarize_p"] = 0.25
    d = c.copy()
    assert d.explicit() == c.explicit() and d["aug.view1.solarize_p"] == "0.25"
    assert barlow.Config(c)["aug.view2.blur_p"] == "0.5"


def test_training_step_and_checkpoint_roundtrip(tmp_path):
    cfg = barlow.Config(TINY)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 12, 12), dtype=np.uint8)
    path = str(tmp_path / "ck.safetensors")
    with barlow.Model(cfg) as m, barlow.Loss(cfg) as loss, barlow.Augment(cfg) as aug, \
            barlow.Optim(cfg) as opt:
        opt.add_model(m)
        assert "arch=resnet" in repr(m) and "embed_dim=8" in repr(m)
        assert "fmnist" in repr(aug) and "lars" in repr(opt) and "barlow" in repr(loss)
        views = aug.views(images)
        assert [v.shape for v in views] == [(4, 1, 8, 8)] * 2 and views[0].dtype == np.float32
        m.zero_grad()
        z = m.forward(views)
        assert [a.shape for a in z] == [(4, 8)] * 2
        value = loss.forward(*z)
        m.backward(loss.backward())
        opt.step()
        assert np.isfinite(value) and opt.step_count == 1 and opt.lr(1) > 0
        grads = [g.copy() for _, _, g in m.named_tensors() if g is not None]
        assert any(np.abs(g).sum() > 0 for g in grads)
        feats = m.encode(aug.eval(images))
        assert feats.shape == (4, m.feature_dim)
        assert m.workspace_bytes((4, 1, 8, 8)) > 0
        barlow.save_checkpoint(path, m, opt, aug)
        state = m.state_dict()
        aug_state = aug.state
    assert barlow.checkpoint_metadata(path, "libbarlow.step") == "1"
    assert barlow.checkpoint_metadata(path, "libbarlow.version") == barlow.version()
    with pytest.raises(barlow.Error) as e:
        barlow.checkpoint_metadata(path, "no.such.key")
    assert e.value.status_name == "BT_E_FORMAT"
    cfg2 = barlow.Config.from_checkpoint(path)
    assert cfg2["model.projector"] == "8-8" and cfg2["model.in_channels"] == "1"
    assert cfg2["aug.view1.size"] == "8"
    cfg3 = barlow.read_checkpoint_config(path, barlow.Config(seed=5))
    assert cfg3["model.widths"] == "4" and cfg3["seed"] == "5"
    with barlow.Model(cfg2) as m2, barlow.Optim(cfg) as o2, barlow.Augment(cfg) as a2:
        o2.add_model(m2)
        barlow.load_checkpoint(path, m2, o2, a2)
        s2 = m2.state_dict()
        assert all(np.array_equal(state[k], s2[k]) for k in state)
        assert o2.step_count == 1 and a2.state == aug_state
        report = barlow.load_checkpoint(path, m2, ignore_extra=True)
        assert report.startswith("loaded")


def test_failed_load_changes_nothing(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with barlow.Model(barlow.Config(TINY)) as m:
        before = m.state_dict()
        with pytest.raises(barlow.Error) as e:
            barlow.load_checkpoint(str(bad), m)
        assert e.value.status_name == "BT_E_FORMAT" and "bad.safetensors" in e.value.message
        with pytest.raises(barlow.Error) as e:
            barlow.load_checkpoint(str(tmp_path / "missing"), m)
        assert e.value.status_name == "BT_E_IO"
        after = m.state_dict()
        assert all(np.array_equal(before[k], after[k]) for k in before)
    with pytest.raises(barlow.Error) as e:
        barlow.Config.from_checkpoint(str(bad))
    assert e.value.status_name == "BT_E_FORMAT"


def test_augment_inputs_and_determinism():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (3, 16, 20, 3), dtype=np.uint8)
    cfg = barlow.Config(aug__size=8, seed=11, threads=1)
    with barlow.Augment(cfg) as a1, barlow.Augment(cfg) as a2:
        v1 = a1.views(rgb)
        v2 = a2.views([rgb[0], rgb[1], rgb[2]])  # a list of HWC arrays, same pixels
        assert v1[0].shape == (3, 3, 8, 8)
        assert all(np.array_equal(x, y) for x, y in zip(v1, v2))
        a1.state = (11, 0)
        again = a1.views(rgb)
        assert all(np.array_equal(x, y) for x, y in zip(v1, again))
        more = a1.views(rgb, nviews=3)
        assert len(more) == 3
        # keyed by global index: two halves at their indices equal the whole batch
        a1.state = a2.state = (11, 5)
        whole = a1.views(rgb)
        head, tail = a2.views(rgb[:1], first_index=0), None
        a2.state = (11, 5)
        tail = a2.views(rgb[1:], first_index=1)
        assert all(np.array_equal(w[:1], h) and np.array_equal(w[1:], t)
                   for w, h, t in zip(whole, head, tail))
        sizes = [rng.integers(0, 256, (h, w), dtype=np.uint8) for h, w in ((9, 12), (30, 10))]
        with barlow.Augment(aug__size=8, aug__mean=0.5, aug__std=0.5) as grey:
            assert grey.views(sizes)[1].shape == (2, 1, 8, 8)
            assert grey.eval(sizes).shape == (2, 1, 8, 8)


def test_layers_and_cross_entropy():
    lin = barlow.Layer.linear(5, 3)
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    y = lin.forward(x)
    names = [n for n, _, _ in lin.named_tensors()]
    assert names == ["weight", "bias"]
    w = lin.named_tensors()[0][1].numpy()
    b = lin.named_tensors()[1][1].numpy()
    assert np.allclose(y, x @ w.T + b, atol=1e-5)
    with barlow.CrossEntropy() as xent:
        loss, top1, top5 = xent.forward(y, [0, 1, 2, 0])
        dy = xent.backward()
        assert np.isfinite(loss) and 0 <= top1 <= 4 and top5 == 4
    dx = lin.backward(dy)
    assert dx.shape == x.shape and np.allclose(dx, dy @ w, atol=1e-5)
    w_before = w.copy()
    with barlow.Optim(optim__kind="sgd", optim__batch_size=256) as opt:
        opt.add_layer(lin)
        opt.step()
    assert not np.array_equal(w, w_before)  # w is a view: the step updated it in place
    assert np.allclose(w, w_before - 0.2 * lin.named_tensors()[0][2].numpy(), atol=1e-6)
    assert lin.output_shape((7, 5)) == (7, 3)
    with pytest.raises(barlow.Error) as e:
        lin.output_shape((7, 6))
    assert e.value.status_name == "BT_E_SHAPE"
    conv = barlow.Layer.conv2d(1, 2, 3, pad=1)
    assert conv.forward(np.zeros((1, 1, 5, 5), np.float32)).shape == (1, 2, 5, 5)
    assert "conv2d" in repr(conv)
    for make in (barlow.Layer.relu, barlow.Layer.avgpool, lambda: barlow.Layer.maxpool2d(2, 2),
                 lambda: barlow.Layer.batchnorm(3)):
        make().close()


def test_tensor_repr_and_array_protocol():
    t = barlow.Tensor((2, 3))
    assert "shape=(2, 3)" in repr(t) and "library" in repr(t)
    assert np.asarray(t).shape == (2, 3)
    w = barlow.Tensor.from_numpy(np.ones(4, np.float32))
    assert "numpy" in repr(w) and w.copy().sum() == 4


def _child_uses_barlow(q):
    import barlow as b
    with b.Loss() as loss:
        za = np.arange(12, dtype=np.float32).reshape(4, 3)
        q.put(loss.forward(za, za[::-1].copy()))


def test_spawned_worker_can_use_barlow():
    """The documented way around libgomp's fork() limitation: spawn workers."""
    za = np.arange(12, dtype=np.float32).reshape(4, 3)
    with barlow.Loss() as loss:
        here = loss.forward(za, za[::-1].copy())  # runs OpenMP regions in this process first
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_uses_barlow, args=(q,))
    p.start()
    got = q.get(timeout=30)
    p.join(30)
    assert p.exitcode == 0 and got == here
    assert "fork" in barlow.__doc__ and "spawn" in barlow.__doc__


def test_backbone_finetune_and_projector_only():
    """forward_backbone / backward_backbone with dx, and model.arch none's input gradient."""
    rng = np.random.default_rng(3)
    with barlow.Model(barlow.Config(TINY)) as m:
        xs = [rng.standard_normal((4, 1, 6, 6)).astype(np.float32) for _ in range(2)]
        fs = m.forward_backbone(xs)
        assert [f.shape for f in fs] == [(4, m.feature_dim)] * 2
        assert np.array_equal(fs[1], m.features(1))
        dx = [np.zeros_like(x) for x in xs]
        assert m.backward_backbone([np.ones_like(f) for f in fs], dx) == dx
        assert all(np.abs(d).sum() > 0 for d in dx)
        with pytest.raises(barlow.Error) as e:  # one backward per forward
            m.backward_backbone([np.ones_like(f) for f in fs])
        assert e.value.status_name == "BT_E_STATE"
        with pytest.raises(barlow.Error) as e:
            m.input_grad(0, np.zeros((4, m.feature_dim), np.float32))
        assert e.value.status_name == "BT_E_UNSUPPORTED"
    cfg = barlow.Config({"model.arch": "none", "model.feature_dim": 6, "model.projector": "8-8",
                         "threads": 1})
    with barlow.Model(cfg) as m:
        assert m.feature_dim == 6
        xs = [rng.standard_normal((5, 6)).astype(np.float32) for _ in range(2)]
        zs = m.forward(xs)
        m.backward([np.ones_like(z) * 0.1 for z in zs])
        g = m.input_grad(1)
        assert g.shape == (5, 6) and np.isfinite(g).all()
        assert np.array_equal(m.encode(xs[0]), xs[0])  # the identity
