"""Every rejected argument raises TypeError/ValueError naming it, and a
rejected call leaves every buffer exactly as it was."""
import numpy as np
import pytest

import fastopt

N = 8


def _valid_calls():
    """(kernel, positional buffer names, keyword buffer names, hyperparameters)."""
    return {
        "sgd_": (fastopt.sgd_, ["param", "grad", "momentum_buf"], [],
                 dict(lr=0.1, momentum=0.9, step=2)),
        "adagrad_": (fastopt.adagrad_, ["param", "grad", "state_sum"], [], dict(step=1)),
        "rmsprop_": (fastopt.rmsprop_, ["param", "grad", "square_avg"],
                     ["momentum_buf", "grad_avg"], dict(momentum=0.9, centered=True)),
        "adam_": (fastopt.adam_, ["param", "grad", "exp_avg", "exp_avg_sq"],
                  ["max_exp_avg_sq"], dict(step=1, amsgrad=True)),
        "adamw_": (fastopt.adamw_, ["param", "grad", "exp_avg", "exp_avg_sq"],
                   ["max_exp_avg_sq"], dict(step=1, amsgrad=True)),
    }


KERNELS = list(_valid_calls())


def _buffers(names):
    rng = np.random.default_rng(0)
    return {name: rng.random(N).astype(np.float32) + 0.5 for name in names}


def _call(kernel, buffers=None, **changes):
    """Call ``kernel`` with valid arguments except for ``changes``; returns
    the original buffers so the caller can check they were not written."""
    fn, positional, keyword, hyper = _valid_calls()[kernel]
    bufs = buffers if buffers is not None else _buffers(positional + keyword)
    args = {**bufs, **hyper, **changes}
    pos = [args.pop(name) for name in positional]
    fn(*pos, **args)


def _assert_rejected(kernel, exc, match, **changes):
    fn, positional, keyword, hyper = _valid_calls()[kernel]
    bufs = _buffers(positional + keyword)
    snapshot = {k: v.copy() for k, v in bufs.items()}
    with pytest.raises(exc, match=match):
        _call(kernel, bufs, **changes)
    for name, before in snapshot.items():
        np.testing.assert_array_equal(bufs[name], before, err_msg=f"{name} was written")


def _buffer_names(kernel):
    _, positional, keyword, _ = _valid_calls()[kernel]
    return positional + keyword


BUFFER_CASES = [(k, b) for k in KERNELS for b in _buffer_names(k)]
# The buffers that take other dtypes than float32 (low precision, issue 21).
_GRAD, _BF16 = "float32, float16 or bfloat16", "float32 or bfloat16"
_ADAM_LOW = {"grad": _GRAD, "exp_avg": "float32, bfloat16 or uint8",
             "exp_avg_sq": "float32, bfloat16 or uint8"}
_LOW_PRECISION = {"adam_": _ADAM_LOW, "adamw_": _ADAM_LOW,
                  "sgd_": {"grad": _GRAD, "momentum_buf": _BF16},
                  "adagrad_": {"grad": _GRAD, "state_sum": _BF16},
                  "rmsprop_": {"grad": _GRAD, "square_avg": _BF16, "momentum_buf": _BF16,
                               "grad_avg": _BF16}}


def _dtypes(kernel, name):
    """The dtypes the message names for buffer ``name`` of ``kernel``."""
    return _LOW_PRECISION[kernel].get(name, "float32")


def _not_an_array(kernel, name, got):
    dtypes = _dtypes(kernel, name)
    if dtypes == "float32":
        return f"{name} must be a float32 numpy.ndarray, got {got}"
    return f"{name} must be a numpy.ndarray of dtype {dtypes}, got {got}"


@pytest.mark.parametrize("kernel,name", BUFFER_CASES)
def test_wrong_dtype(kernel, name):
    _assert_rejected(kernel, TypeError,
                     f"{name} must have dtype {_dtypes(kernel, name)}, got float64",
                     **{name: np.zeros(N)})


@pytest.mark.parametrize("kernel,name", BUFFER_CASES)
def test_not_an_array(kernel, name):
    _assert_rejected(kernel, TypeError, _not_an_array(kernel, name, "list"),
                     **{name: [0.0] * N})


@pytest.mark.parametrize("kernel,name", BUFFER_CASES)
def test_none_where_a_buffer_is_needed(kernel, name):
    exc = ValueError if name in ("momentum_buf", "grad_avg", "max_exp_avg_sq") else TypeError
    _assert_rejected(kernel, exc, f"({_not_an_array(kernel, name, 'None')}|"
                                  f"{name} is required when)", **{name: None})


@pytest.mark.parametrize("kernel,name", BUFFER_CASES)
def test_not_contiguous(kernel, name):
    _assert_rejected(kernel, ValueError, f"{name} must be C-contiguous",
                     **{name: np.zeros(2 * N, np.float32)[::2]})


@pytest.mark.parametrize("kernel,name", BUFFER_CASES)
def test_wrong_size(kernel, name):
    _assert_rejected(kernel, ValueError, f"({name} has {N + 1} elements|param has {N + 1})",
                     **{name: np.zeros(N + 1, np.float32)})


@pytest.mark.parametrize("kernel,name", BUFFER_CASES)
def test_byteswapped(kernel, name):
    _assert_rejected(kernel, TypeError, f"{name} must be float32 in native byte order",
                     **{name: np.zeros(N, np.dtype(np.float32).newbyteorder())})


@pytest.mark.parametrize("kernel,name", [(k, b) for k, b in BUFFER_CASES if b != "grad"])
def test_read_only_buffer(kernel, name):
    ro = np.zeros(N, np.float32)
    ro.flags.writeable = False
    _assert_rejected(kernel, ValueError, f"{name} is read-only", **{name: ro})


@pytest.mark.parametrize("kernel", KERNELS)
def test_read_only_grad_is_accepted(kernel):
    fn, positional, keyword, hyper = _valid_calls()[kernel]
    bufs = _buffers(positional + keyword)
    bufs["grad"].flags.writeable = False
    before = bufs["param"].copy()
    _call(kernel, bufs)
    assert not np.array_equal(bufs["param"], before)


@pytest.mark.parametrize("kernel,name", [(k, b) for k, b in BUFFER_CASES if b != "param"])
def test_overlapping_buffers(kernel, name):
    fn, positional, keyword, hyper = _valid_calls()[kernel]
    bufs = _buffers(positional + keyword)
    base = np.zeros(N + 4, np.float32)
    bufs["param"] = base[:N]
    bufs[name] = base[4:]  # overlaps param by N - 4 elements
    snapshot = base.copy()
    with pytest.raises(ValueError, match=f"param and {name} share memory"):
        _call(kernel, bufs)
    np.testing.assert_array_equal(base, snapshot)


def test_param_is_grad():
    p = np.ones(N, np.float32)
    with pytest.raises(ValueError, match="param and grad share memory"):
        fastopt.sgd_(p, p, lr=0.1)


def test_unaligned_buffer():
    raw = np.zeros(4 * N + 1, np.uint8)
    unaligned = raw[1:].view(np.float32)
    assert not unaligned.flags.aligned
    with pytest.raises(ValueError, match="param must be aligned"):
        fastopt.sgd_(unaligned, np.zeros(N, np.float32), lr=0.1)


HYPER_CASES = [
    # kernel, argument, bad value, exception, message
    ("sgd_", "lr", -0.1, ValueError, "lr must be a finite number >= 0, got -0.1"),
    ("sgd_", "lr", float("nan"), ValueError, "lr must be a finite number >= 0, got nan"),
    ("sgd_", "lr", None, TypeError, "lr must be a real number, got None"),
    ("sgd_", "lr", "0.1", TypeError, "lr must be a real number, got an object of type str"),
    ("sgd_", "lr", True, TypeError, "lr must be a real number, got True"),
    ("sgd_", "momentum", -0.5, ValueError, "momentum must be a finite number >= 0"),
    ("sgd_", "dampening", 1.5, ValueError, r"dampening must be in \[0, 1\]"),
    ("sgd_", "weight_decay", float("inf"), ValueError, "weight_decay must be a finite number"),
    ("sgd_", "nesterov", 1, TypeError, "nesterov must be a bool"),
    ("sgd_", "step", 0, ValueError, "step must be >= 1"),
    ("sgd_", "convention", "tf", ValueError, "convention must be 'torch' or 'keras'"),
    ("adagrad_", "step", 1.0, TypeError, "step must be an int"),
    ("adagrad_", "step", -3, ValueError, "step must be >= 1"),
    ("adagrad_", "lr_decay", -1.0, ValueError, "lr_decay must be a finite number >= 0"),
    ("adagrad_", "eps", -1e-10, ValueError, "eps must be a finite number >= 0"),
    ("adagrad_", "maximize", "yes", TypeError, "maximize must be a bool"),
    ("rmsprop_", "alpha", 1.01, ValueError, r"alpha must be in \[0, 1\]"),
    ("rmsprop_", "alpha", float("nan"), ValueError, r"alpha must be in \[0, 1\]"),
    ("rmsprop_", "eps", float("inf"), ValueError, "eps must be a finite number >= 0"),
    ("rmsprop_", "centered", None, TypeError, "centered must be a bool"),
    ("adam_", "beta1", 1.0, ValueError, r"beta1 must be in \[0, 1\), got 1.0"),
    ("adam_", "beta2", -0.1, ValueError, r"beta2 must be in \[0, 1\)"),
    ("adam_", "beta2", float("nan"), ValueError, r"beta2 must be in \[0, 1\)"),
    ("adam_", "step", np.float64(2), TypeError, "step must be an int"),
    ("adam_", "step", None, TypeError, "step must be an int"),
    ("adam_", "amsgrad", np.int64(1), TypeError, "amsgrad must be a bool"),
    ("adam_", "lr", np.float32(np.nan), ValueError, "lr must be a finite number >= 0"),
    ("adamw_", "weight_decay", -0.01, ValueError, "weight_decay must be a finite number >= 0"),
]


@pytest.mark.parametrize("kernel,arg,value,exc,match", HYPER_CASES,
                         ids=[f"{k}-{a}-{v!r}" for k, a, v, *_ in HYPER_CASES])
def test_bad_hyperparameter(kernel, arg, value, exc, match):
    _assert_rejected(kernel, exc, match, **{arg: value})


def test_numpy_scalars_are_accepted():
    p, g, m, v = (np.full(N, 0.5, np.float32) for _ in range(4))
    fastopt.adam_(p, g, m, v, step=np.int64(3), lr=np.float32(0.01), beta1=np.float64(0.9),
                  amsgrad=np.bool_(False))


def test_nesterov_needs_momentum_and_no_dampening():
    p, g, b = (np.ones(N, np.float32) for _ in range(3))
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0"):
        fastopt.sgd_(p, g, b, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="nesterov=True requires momentum > 0 and dampening"):
        fastopt.sgd_(p, g, b, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)


def test_momentum_without_buffer():
    p, g = np.ones(N, np.float32), np.ones(N, np.float32)
    with pytest.raises(ValueError, match="momentum_buf is required when momentum != 0"):
        fastopt.sgd_(p, g, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum_buf is required when momentum != 0"):
        fastopt.rmsprop_(p, g, np.zeros(N, np.float32), momentum=0.9)


def test_amsgrad_and_centered_need_their_buffers():
    p, g, m, v = (np.ones(N, np.float32) for _ in range(4))
    with pytest.raises(ValueError, match="max_exp_avg_sq is required when amsgrad=True"):
        fastopt.adam_(p, g, m, v, step=1, amsgrad=True)
    with pytest.raises(ValueError, match="grad_avg is required when centered=True"):
        fastopt.rmsprop_(p, g, v, centered=True)


def test_a_buffer_the_rule_would_not_read_is_rejected_before_any_write():
    """A buffer passed without the option that reads it (a grad_avg without
    centered=True) would be silently ignored; it is an error instead."""
    p, g, m, v, extra = (np.full(N, 0.5, np.float32) for _ in range(5))
    before = [a.copy() for a in (p, m, v, extra)]
    calls = [
        ("momentum_buf is read only when momentum != 0",
         lambda: fastopt.sgd_(p, g, extra, lr=0.1)),
        ("momentum_buf is read only when momentum != 0",
         lambda: fastopt.rmsprop_(p, g, v, momentum_buf=extra)),
        ("grad_avg is read only when centered=True",
         lambda: fastopt.rmsprop_(p, g, v, grad_avg=extra)),
        ("max_exp_avg_sq is read only when amsgrad=True",
         lambda: fastopt.adam_(p, g, m, v, step=1, max_exp_avg_sq=extra)),
    ]
    for message, call in calls:
        with pytest.raises(ValueError, match=message):
            call()
    for a, b in zip((p, m, v, extra), before):
        assert np.array_equal(a, b)


def test_optimizer_keeps_a_buffer_its_rule_no_longer_reads():
    """Momentum set to 0 mid-run: the buffer stays in the state (as torch
    keeps it) and the step is plain SGD."""
    flat = fastopt.FlatParameters([(N,)])
    opt = fastopt.optim.SGD(flat, lr=0.1, momentum=0.9)
    flat.grad[:] = 1.0
    opt.step()
    opt.param_groups[0]["momentum"] = 0.0
    before = flat.data.copy()
    opt.step()
    np.testing.assert_allclose(flat.data, before - np.float32(0.1))
    assert "momentum_buffer" in opt.state_dict()["state"][0]


def test_unknown_keyword_is_rejected():
    p, g = np.ones(N, np.float32), np.ones(N, np.float32)
    with pytest.raises(TypeError, match="momentun"):
        fastopt.sgd_(p, g, lr=0.1, momentun=0.9)


def test_lr_is_required_for_sgd():
    p, g = np.ones(N, np.float32), np.ones(N, np.float32)
    with pytest.raises(TypeError, match="lr"):
        fastopt.sgd_(p, g)


CHOICE_CASES = [
    # a string argument that names one of a few choices: TypeError for a
    # value that is not a string, ValueError for a string that names none
    (lambda v: _call("adam_", convention=v), "convention must be 'torch' or 'keras'"),
    (lambda v: fastopt.mean_squared_error(np.zeros(2, np.float32), np.zeros(2, np.float32),
                                          reduction=v),
     "reduction must be 'mean', 'sum' or 'none'"),
    (lambda v: fastopt._kernels.bias_activation_(np.zeros((2, 3), np.float32),
                                                 np.zeros(3, np.float32), v),
     "activation must be one of"),
    (lambda v: fastopt._kernels.count_correct(np.zeros((2, 3), np.float32),
                                              np.zeros((2, 3), np.float32), v),
     "kind must be 'sparse', 'categorical' or 'binary'"),
]


@pytest.mark.parametrize("call,message", CHOICE_CASES)
@pytest.mark.parametrize("value,exc", [("nope", ValueError), (None, TypeError),
                                       (1, TypeError), (["relu"], TypeError)])
def test_choice_of_the_wrong_type_is_a_type_error(call, message, value, exc):
    with pytest.raises(exc, match=message):
        call(value)


def test_simd_level_name_must_be_a_string():
    with pytest.raises(TypeError, match="name must be a str naming a SIMD level"):
        fastopt._kernels.set_simd_level(2)
