"""Property-based tests (Hypothesis) of every public kernel and loss.

Each example draws a valid call: float32 C-contiguous buffers of one size
(any shapes, empty and size 1 included) and in-range hyperparameters.  Then
it may inject exactly one defect known to be invalid (wrong dtype, strides,
memory order, read-only, wrong size, byte order, overlap, None, a list, or
an out-of-range / wrongly typed hyperparameter).  A defective call must
raise TypeError or ValueError and leave every buffer bit-identical; a clean
call must match the float64 reference.  The number of examples comes from
the Hypothesis profile: HYPOTHESIS_PROFILE=ci runs 10,000 per test group.
"""
import math
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastopt  # noqa: E402
import reference  # noqa: E402
from rules import SGD, Adadelta, Adagrad, Adam, Adamax, Lion, NAdam, RMSprop  # noqa: E402

settings.register_profile("default", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=10000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# rule -> (positional buffers, keyword buffers, valid hyperparameter strategies)
unit_open = st.floats(0, 0.999)
small = st.floats(0, 1)
RULES = {
    "sgd_": (["param", "grad", "momentum_buf"], [],
             {"lr": small, "momentum": st.floats(0.01, 0.99), "dampening": st.floats(0, 1),
              "weight_decay": st.floats(0, 0.1), "maximize": st.booleans(),
              "step": st.integers(1, 5)}),
    "adagrad_": (["param", "grad", "state_sum"], [],
                 {"lr": small, "lr_decay": st.floats(0, 0.1), "weight_decay": st.floats(0, 0.1),
                  "eps": st.floats(1e-8, 1e-2), "step": st.integers(1, 5),
                  "maximize": st.booleans()}),
    "rmsprop_": (["param", "grad", "square_avg"], ["momentum_buf", "grad_avg"],
                 {"lr": small, "alpha": st.floats(0, 1), "eps": st.floats(1e-8, 1e-2),
                  "momentum": st.floats(0.01, 0.9), "centered": st.booleans(),
                  "weight_decay": st.floats(0, 0.1)}),
    "adam_": (["param", "grad", "exp_avg", "exp_avg_sq"], ["max_exp_avg_sq"],
              {"lr": small, "beta1": unit_open, "beta2": unit_open, "eps": st.floats(1e-8, 1e-2),
               "weight_decay": st.floats(0, 0.1), "amsgrad": st.booleans(),
               "decoupled_weight_decay": st.booleans(), "step": st.integers(1, 5),
               "maximize": st.booleans()}),
    "nadam_": (["param", "grad", "exp_avg", "exp_avg_sq"], [],
               {"lr": small, "beta1": unit_open, "beta2": unit_open, "eps": st.floats(1e-8, 1e-2),
                "weight_decay": st.floats(0, 0.1), "momentum_decay": st.floats(0, 0.1),
                "decoupled_weight_decay": st.booleans(), "step": st.integers(1, 5),
                "maximize": st.booleans(), "convention": st.sampled_from(["torch", "keras"])}),
    "adamax_": (["param", "grad", "exp_avg", "exp_inf"], [],
                {"lr": small, "beta1": unit_open, "beta2": unit_open,
                 "eps": st.floats(1e-8, 1e-2), "weight_decay": st.floats(0, 0.1),
                 "decoupled_weight_decay": st.booleans(), "step": st.integers(1, 5),
                 "maximize": st.booleans(), "convention": st.sampled_from(["torch", "keras"])}),
    "adadelta_": (["param", "grad", "square_avg", "acc_delta"], [],
                  {"lr": small, "rho": st.floats(0, 1), "eps": st.floats(1e-8, 1e-2),
                   "weight_decay": st.floats(0, 0.1), "decoupled_weight_decay": st.booleans(),
                   "maximize": st.booleans()}),
    "lion_": (["param", "grad", "exp_avg"], [],
              {"lr": small, "beta1": small, "beta2": small, "weight_decay": st.floats(0, 0.1),
               "decoupled_weight_decay": st.booleans(), "maximize": st.booleans()}),
}
# a value of each hyperparameter that is always invalid, and the exception
BAD_HYPER = {
    "lr": [(-0.1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
           ("0.1", TypeError), (None, TypeError), (True, TypeError)],
    "momentum": [(-0.5, ValueError), (math.nan, ValueError)],
    "dampening": [(1.5, ValueError), (-0.1, ValueError)],
    "weight_decay": [(-1.0, ValueError), (math.inf, ValueError)],
    "lr_decay": [(-0.1, ValueError)],
    "eps": [(-1e-8, ValueError), (math.inf, ValueError), (math.nan, ValueError)],
    "alpha": [(1.5, ValueError), (-0.1, ValueError)],
    "beta1": [(1.0, ValueError), (-0.1, ValueError), (math.nan, ValueError)],
    "beta2": [(1.0, ValueError), (2.0, ValueError)],
    "step": [(0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError)],
    "maximize": [(1, TypeError), ("yes", TypeError)],
    "amsgrad": [(None, TypeError)],
    "centered": [(0, TypeError)],
    "decoupled_weight_decay": [("no", TypeError)],
    "rho": [(1.5, ValueError), (-0.1, ValueError), ("0.9", TypeError)],
    "momentum_decay": [(-0.1, ValueError), (math.nan, ValueError)],
    "convention": [("tf", ValueError), (1, TypeError)],
}
# Lion's betas may be 1 (Keras allows beta_1 = 1): its own invalid values
BAD_HYPER_OF = {"lion_": {"beta1": [(1.5, ValueError), (-0.1, ValueError)],
                          "beta2": [(math.nan, ValueError), (2.0, ValueError)]}}
RULE_BY_KERNEL = {"sgd_": SGD(), "adagrad_": Adagrad(), "rmsprop_": RMSprop(), "adam_": Adam(),
                  "nadam_": NAdam(), "adamax_": Adamax(), "adadelta_": Adadelta(),
                  "lion_": Lion()}
STATE_NONNEG = {"state_sum", "square_avg", "exp_avg_sq", "max_exp_avg_sq", "exp_inf",
                "acc_delta"}


@st.composite
def calls(draw):
    rule = draw(st.sampled_from(sorted(RULES)))
    positional, keyword, hyper_st = RULES[rule]
    hyper = {k: draw(s) for k, s in hyper_st.items()}
    if rule == "sgd_" and draw(st.booleans()):
        hyper["nesterov"], hyper["dampening"] = True, 0.0
    if rule == "rmsprop_" and draw(st.booleans()):
        hyper["momentum"] = 0.0
    if rule == "rmsprop_" and hyper["centered"]:
        # the centred variance v - avg^2 ~ alpha (v0 + g^2) cancels two terms of
        # size g^2: float32 rounding is amplified by 1/alpha, in any framework;
        # keep the amplification (<= 100) within the comparison's tolerance
        hyper["alpha"] = max(hyper["alpha"], 0.01)
    size = draw(st.integers(0, 40))
    names = list(positional)
    if rule == "rmsprop_":
        names += (["momentum_buf"] if hyper["momentum"] else []) + \
            (["grad_avg"] if hyper["centered"] else [])
    if rule == "adam_" and hyper["amsgrad"]:
        names.append("max_exp_avg_sq")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrays = {}
    for name in names:
        shape = draw(st.sampled_from(_shapes(size)))
        values = rng.standard_normal(size)
        if name in STATE_NONNEG:
            values = np.abs(values)
        if rule == "sgd_" and name == "momentum_buf" and hyper["step"] == 1:
            values[:] = 0  # irrelevant on the first step; keep the reference simple
        arrays[name] = values.astype(np.float32).reshape(shape)
    defect = draw(st.sampled_from(["none"] * 3 + ["dtype", "list", "none_buffer", "strided",
                                                  "fortran", "readonly", "size", "byteswap",
                                                  "overlap", "hyper"]))
    target = draw(st.sampled_from(names))
    return rule, hyper, arrays, names, defect, target, draw(st.integers(0, 5))


def _shapes(size):
    """Some shapes holding ``size`` elements."""
    shapes = [(size,)]
    for a in range(2, size + 1):
        if size % a == 0:
            shapes.append((a, size // a))
    if size == 1:
        shapes.append(())
    if size == 0:
        shapes += [(0, 3), (2, 0, 1)]
    return shapes


def _inject(rule, hyper, arrays, defect, target, pick):
    """Apply one defect; returns the expected exception type(s), or None if
    the defect does not apply to this draw (the call stays valid)."""
    a = arrays[target]
    n = a.size
    written = target != "grad"
    if defect == "dtype":
        arrays[target] = a.astype(np.float64 if pick % 2 else np.int32)
        return TypeError
    if defect == "list":
        arrays[target] = a.tolist()
        return TypeError
    if defect == "none_buffer":
        arrays[target] = None
        return (TypeError, ValueError)
    if defect == "strided" and n >= 2:
        wide = np.zeros(2 * n, np.float32)
        wide[::2] = a.reshape(-1)
        arrays[target] = wide[::2]
        return ValueError
    if defect == "fortran" and a.ndim == 2 and min(a.shape) > 1:
        arrays[target] = np.asfortranarray(a)
        return ValueError
    if defect == "readonly" and written:
        a.flags.writeable = False
        return ValueError
    if defect == "size":
        arrays[target] = np.zeros(n + 1 + pick, np.float32)
        return ValueError
    if defect == "byteswap":
        arrays[target] = a.astype(a.dtype.newbyteorder())
        return TypeError
    if defect == "overlap" and target != "param" and n > 0:
        shift = pick % n
        base = np.zeros(n + shift, np.float32)
        base[:n] = arrays["param"].reshape(-1)
        arrays["param"] = base[:n]
        arrays[target] = base[shift:shift + n]
        return ValueError
    if defect == "hyper":
        bad = {**BAD_HYPER, **BAD_HYPER_OF.get(rule, {})}
        name = sorted(k for k in hyper if k in bad)[pick % len([k for k in hyper if k in bad])]
        value, exc = bad[name][pick % len(bad[name])]
        hyper[name] = value
        return exc
    return None


def _call(rule, hyper, arrays):
    positional, keyword, _ = RULES[rule]
    args = [arrays.get(name) for name in positional]
    kwargs = {name: arrays[name] for name in keyword if name in arrays}
    if rule == "sgd_" and not hyper["momentum"]:
        args = args[:2]
    return getattr(fastopt, rule)(*args, **hyper, **kwargs)


def _expected(rule, hyper, arrays):
    """The float64 reference's new state, through the shared rule descriptions."""
    state = {k: np.asarray(v, np.float64).reshape(-1) for k, v in arrays.items()}
    grad = state.pop("grad")
    h = dict(hyper)
    step = h.pop("step", 1)
    return RULE_BY_KERNEL[rule].reference(state, grad, h, step)


@given(calls())
def test_kernels_match_reference_or_reject_cleanly(case):
    rule, hyper, arrays, names, defect, target, pick = case
    expected_exc = None if defect == "none" else _inject(rule, hyper, arrays, defect, target,
                                                         pick)
    snapshot = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in arrays.items()}
    if expected_exc is not None:
        with pytest.raises(expected_exc):
            _call(rule, hyper, arrays)
        for k, v in arrays.items():
            if isinstance(v, np.ndarray):
                np.testing.assert_array_equal(v, snapshot[k], err_msg=f"{k} was written")
        return
    # a valid call: the centred variance must not go negative for the reference
    if rule == "rmsprop_" and hyper["centered"]:
        arrays["grad_avg"][...] = 0
        arrays["square_avg"][...] = np.abs(arrays["square_avg"])
    before = {k: v.copy() for k, v in arrays.items()}
    want = _expected(rule, hyper, before)
    assert _call(rule, hyper, arrays) is None
    for name, w in want.items():
        got = arrays[name].reshape(-1)
        scale = 1 + np.abs(w) + np.abs(before[name].reshape(-1))
        assert np.all(np.abs(got - w) <= 2e-5 * scale), (name, got, w)


@st.composite
def ce_calls(draw):
    n, c = draw(st.integers(0, 6)), draw(st.integers(1, 5))
    logits = draw(hnp.arrays(np.float32, (n, c), elements=st.floats(-30, 30, width=32)))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-101, c + 1)))
    return logits, labels, draw(st.floats(0, 1)), draw(st.sampled_from(["mean", "sum", "none"]))


@given(ce_calls())
def test_softmax_cross_entropy_matches_reference_or_rejects_labels(case):
    logits, labels, smoothing, reduction = case
    n, c = logits.shape
    grad = np.full_like(logits, 7.0)
    bad = [(i, y) for i, y in enumerate(labels) if y != -100 and not 0 <= y < c]
    if bad:
        with pytest.raises(ValueError, match=f"labels\\[{bad[0][0]}\\] = {bad[0][1]}"):
            fastopt.softmax_cross_entropy(logits, labels, grad, reduction=reduction,
                                          label_smoothing=smoothing)
        assert np.all(grad == 7.0)
        return
    loss = fastopt.softmax_cross_entropy(logits, labels, grad, reduction=reduction,
                                         label_smoothing=smoothing)
    per, want, keep = reference.softmax_cross_entropy(logits, labels, smoothing)
    if reduction == "none":
        np.testing.assert_allclose(loss, per, rtol=1e-5, atol=1e-5)
    elif reduction == "sum":
        assert loss == pytest.approx(per.sum(), rel=1e-5, abs=1e-5)
    elif keep.sum():
        assert loss == pytest.approx(per.sum() / keep.sum(), rel=1e-5, abs=1e-5)
    else:
        assert math.isnan(loss)
    if reduction == "mean" and keep.sum():
        want = want / keep.sum()
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)


@given(st.sampled_from(["mse", "bce"]), hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
       st.sampled_from(["none", "shape", "dtype", "nan_target"]), st.integers(0, 2**32 - 1))
def test_elementwise_losses_match_or_reject(kind, shape, defect, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.random(shape).astype(np.float32)
    grad = np.full(shape, 7.0, np.float32)
    fn = fastopt.mean_squared_error if kind == "mse" else fastopt.binary_cross_entropy
    if defect != "none" and not (defect == "nan_target" and y.size == 0):
        if defect == "shape":
            y = np.zeros(tuple(shape) + (2,), np.float32)
        elif defect == "dtype":
            y = y.astype(np.float64)
        else:
            y.reshape(-1)[0] = np.nan
        with pytest.raises((TypeError, ValueError)):
            fn(x, y, grad)
        assert np.all(grad == 7.0)
        return
    loss = fn(x, y, grad)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    n = max(x.size, 1)
    if kind == "mse":
        want, want_grad = ((x64 - y64) ** 2).sum() / n, 2 * (x64 - y64) / n
    else:
        want = (np.maximum(x64, 0) - x64 * y64 + np.log1p(np.exp(-np.abs(x64)))).sum() / n
        want_grad = (1 / (1 + np.exp(-x64)) - y64) / n
    if x.size:
        assert loss == pytest.approx(want, rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


@given(st.binary(min_size=0, max_size=64), st.sampled_from([b"", b"\x00" * 10, b"\xff" * 100]))
def test_idx_reader_never_crashes_on_corrupt_headers(header, tail):
    """Random headers and payloads: an array or a DataFileError, never a
    crash or an absurd allocation (the header's size is checked first)."""
    import tempfile

    from fastopt.datasets import DataFileError, read_idx

    with tempfile.NamedTemporaryFile(suffix="-idx", delete=False) as f:
        f.write(header + tail)
    try:
        out = read_idx(f.name)
    except DataFileError:
        return
    finally:
        os.unlink(f.name)
    assert isinstance(out, np.ndarray) and out.nbytes <= len(header + tail)
