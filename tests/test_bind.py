"""fastopt.bind: an update checked once, then run with no argument parsing.

A BoundUpdate must give exactly the functional kernel's bits, reject what
the kernel rejects, and refuse to write through a buffer that changed
since it was bound."""
import gc
import warnings

import numpy as np
import pytest

import fastopt

N = 257  # not a multiple of any vector width

# (kernel, state buffer names: positional then keyword, hyperparameters)
CONFIGS = [
    (fastopt.sgd_, [], [], dict(lr=0.1)),
    (fastopt.sgd_, ["momentum_buf"], [], dict(lr=0.1, momentum=0.9, dampening=0.1)),
    (fastopt.sgd_, ["momentum_buf"], [], dict(lr=0.1, momentum=0.9, nesterov=True,
                                              weight_decay=0.01)),
    (fastopt.sgd_, ["momentum_buf"], [], dict(lr=0.1, momentum=0.9, convention="keras")),
    (fastopt.adagrad_, ["state_sum"], [], dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)),
    (fastopt.adagrad_, ["state_sum"], [], dict(lr=0.1, convention="keras", maximize=True)),
    (fastopt.rmsprop_, ["square_avg"], [], dict(lr=0.01)),
    (fastopt.rmsprop_, ["square_avg"], ["momentum_buf", "grad_avg"],
     dict(lr=0.01, momentum=0.9, centered=True, decoupled_weight_decay=True,
          weight_decay=0.1)),
    (fastopt.rmsprop_, ["square_avg"], ["momentum_buf"], dict(lr=0.01, momentum=0.5,
                                                             convention="keras")),
    (fastopt.adam_, ["exp_avg", "exp_avg_sq"], [], dict(lr=0.01)),
    (fastopt.adam_, ["exp_avg", "exp_avg_sq"], ["max_exp_avg_sq"],
     dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    (fastopt.adam_, ["exp_avg", "exp_avg_sq"], [], dict(lr=0.01, convention="keras")),
    (fastopt.adamw_, ["exp_avg", "exp_avg_sq"], [], dict(lr=0.01, weight_decay=0.1)),
]
IDS = [f"{fn.__name__}-{i}" for i, (fn, *_) in enumerate(CONFIGS)]
STEPPED = (fastopt.sgd_, fastopt.adagrad_, fastopt.adam_, fastopt.adamw_)


def _buffers(seed, names):
    rng = np.random.default_rng(seed)
    bufs = {"param": rng.standard_normal(N).astype(np.float32),
            "grad": np.zeros(N, np.float32)}
    for name in names:
        bufs[name] = np.zeros(N, np.float32)
    return bufs


def _args(fn, positional, keyword, bufs):
    pos = [bufs["param"], bufs["grad"]] + [bufs[k] for k in positional]
    kw = {k: bufs[k] for k in keyword}
    return pos, kw


@pytest.mark.parametrize("fn,positional,keyword,hyper", CONFIGS, ids=IDS)
def test_bound_update_is_bit_identical_to_the_kernel(fn, positional, keyword, hyper):
    ours = _buffers(0, positional + keyword)
    ref = _buffers(0, positional + keyword)
    pos, kw = _args(fn, positional, keyword, ours)
    update = fastopt.bind(fn, *pos, **kw, **hyper)
    assert isinstance(update, fastopt.BoundUpdate) and fn.__name__.rstrip("w_") in repr(update)
    rng = np.random.default_rng(1)
    for step in range(1, 7):
        g = rng.standard_normal(N).astype(np.float32)
        ours["grad"][...] = g
        ref["grad"][...] = g
        scale = 1.0 if step % 2 else 0.25  # a clipping factor on some steps
        stepped = fn in STEPPED
        assert update(step if stepped else None, scale) is None
        rpos, rkw = _args(fn, positional, keyword, ref)
        extra = {"step": step} if stepped else {}
        assert fn(*rpos, **rkw, **hyper, **extra, grad_scale=scale) is None
        for name in ours:
            np.testing.assert_array_equal(ours[name], ref[name], err_msg=f"{name}, step {step}")


def test_bind_writes_nothing_until_called():
    bufs = _buffers(0, ["exp_avg", "exp_avg_sq"])
    bufs["grad"][...] = 1
    before = {k: v.copy() for k, v in bufs.items()}
    update = fastopt.bind(fastopt.adam_, bufs["param"], bufs["grad"], bufs["exp_avg"],
                          bufs["exp_avg_sq"])
    for name, arr in bufs.items():
        np.testing.assert_array_equal(arr, before[name])
    update(1)
    assert not np.array_equal(bufs["param"], before["param"])


def test_bind_rejects_what_the_kernel_rejects():
    bufs = _buffers(0, ["exp_avg", "exp_avg_sq"])
    pos = [bufs[k] for k in ("param", "grad", "exp_avg", "exp_avg_sq")]
    with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
        fastopt.bind(fastopt.adam_, *pos, lr=-1.0)
    with pytest.raises(ValueError, match="param and exp_avg share memory"):
        fastopt.bind(fastopt.adam_, pos[0], pos[1], pos[0], pos[3])
    with pytest.raises(TypeError, match="grad must have dtype float32"):
        fastopt.bind(fastopt.adam_, pos[0], pos[1].astype(np.float64), pos[2], pos[3])
    with pytest.raises(TypeError, match=r"bind\(adam_, \.\.\.\): .*'exp_avg_sq'"):
        fastopt.bind(fastopt.adam_, *pos[:3])
    with pytest.raises(TypeError, match=r"bind\(sgd_, \.\.\.\): .*'betas'"):
        fastopt.bind(fastopt.sgd_, pos[0], pos[1], lr=0.1, betas=(0.9, 0.99))
    with pytest.raises(TypeError, match="kernel must be one of fastopt.sgd_"):
        fastopt.bind(np.add, *pos)
    with pytest.raises(ValueError, match="step must be >= 1"):
        fastopt.bind(fastopt.adam_, *pos, step=0)


def test_call_checks_step_and_grad_scale():
    bufs = _buffers(0, ["exp_avg", "exp_avg_sq"])
    update = fastopt.bind(fastopt.adam_, *[bufs[k] for k in ("param", "grad", "exp_avg",
                                                               "exp_avg_sq")])
    before = bufs["param"].copy()
    with pytest.raises(TypeError, match="step is required"):
        update()
    with pytest.raises(ValueError, match="step must be >= 1"):
        update(0)
    with pytest.raises(TypeError, match="step must be an int"):
        update(1.5)
    with pytest.raises(ValueError, match="grad_scale must be finite"):
        update(1, float("nan"))
    np.testing.assert_array_equal(bufs["param"], before)
    with pytest.raises(TypeError, match="made by fastopt.bind"):
        fastopt.BoundUpdate()(1)


def test_a_changed_buffer_is_refused_not_written():
    bufs = _buffers(0, ["exp_avg", "exp_avg_sq"])
    names = ("param", "grad", "exp_avg", "exp_avg_sq")
    update = fastopt.bind(fastopt.adam_, *[bufs[k] for k in names])
    update(1)
    bufs["exp_avg"].flags.writeable = False
    with pytest.raises(ValueError, match="buffer 2 of this BoundUpdate .* made read-only"):
        update(2)
    bufs["exp_avg"].flags.writeable = True
    # resizing moves the data: the stale pointer must never be written
    bufs["exp_avg_sq"].resize(2 * N, refcheck=False)
    before = bufs["param"].copy()
    with pytest.raises(ValueError, match="buffer 3 of this BoundUpdate .* bind again"):
        update(2)
    np.testing.assert_array_equal(bufs["param"], before)


def test_a_buffer_retyped_to_swapped_bytes_is_refused():
    """Setting ``dtype`` in place keeps the pointer, size and type number;
    native floats written into a big-endian view would be garbage."""
    bufs = _buffers(0, ["exp_avg", "exp_avg_sq"])
    update = fastopt.bind(fastopt.adam_, *[bufs[k] for k in ("param", "grad", "exp_avg",
                                                              "exp_avg_sq")])
    before = {k: v.copy() for k, v in bufs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # assigning .dtype
        bufs["exp_avg"].dtype = bufs["exp_avg"].dtype.newbyteorder()
    with pytest.raises(ValueError, match="buffer 2 of this BoundUpdate is no longer the native"):
        update(1)
    for k in ("param", "exp_avg_sq"):
        np.testing.assert_array_equal(bufs[k], before[k])


def test_skip_nonfinite_is_kept():
    bufs = _buffers(0, ["exp_avg", "exp_avg_sq"])
    update = fastopt.bind(fastopt.adam_, *[bufs[k] for k in ("param", "grad", "exp_avg",
                                                               "exp_avg_sq")],
                          skip_nonfinite=True)
    assert update(1) is False
    before = {k: v.copy() for k, v in bufs.items()}
    bufs["grad"][5] = np.nan
    assert update(2) is True
    np.testing.assert_array_equal(bufs["param"], before["param"])


def test_bound_update_keeps_its_buffers_alive():
    def make():
        p = np.ones(N, np.float32)
        g = np.full(N, 0.5, np.float32)
        return fastopt.bind(fastopt.sgd_, p, g, lr=0.1)

    update = make()
    gc.collect()
    for step in range(1, 4):
        update(step)  # writes into the only remaining reference, via the object
