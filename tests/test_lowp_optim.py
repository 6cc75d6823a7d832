"""The optimizer classes' low-precision options (issue 21): state_dtype
bfloat16 / int8, float16 / bfloat16 gradients, state_dict in the real
format with the block scales; against the functional kernel bit for bit."""
import numpy as np
import pytest

import fastopt
from fastopt.optim import SGD, Adagrad, Adam, AdamW, NAdam, RMSprop
from fastopt.optim import keras as K

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SIZES = (3000, 17, 1500)  # 8-bit blocks spanning parameters


def _pairs(rng, grad_dtype):
    """Parameters laid out in one buffer each for values and gradients, so
    that they form one span (as FlatParameters does)."""
    n = sum(SIZES)
    p, g = rng.standard_normal(n).astype(np.float32), np.zeros(n, grad_dtype)
    cuts = np.cumsum((0,) + SIZES)
    return p, g, [(p[a:b], g[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def _state(n, state_dtype):
    if state_dtype == "int8":
        nb = -(-n // fastopt.build_info()["q8_block_elements"])
        return [np.zeros(n, np.uint8), np.zeros(n, np.uint8)], np.zeros(2 * nb, np.float32)
    dt = BF16 if state_dtype == "bfloat16" else np.float32
    return [np.zeros(n, dt), np.zeros(n, dt)], None


@pytest.mark.parametrize("state_dtype", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("grad_dtype", [np.float32, np.float16, BF16], ids=["g32", "g16", "gbf16"])
def test_adamw_class_is_the_kernel(state_dtype, grad_dtype):
    rng = np.random.default_rng(1)
    p, g, pairs = _pairs(rng, grad_dtype)
    opt = AdamW(pairs, lr=1e-2, state_dtype=state_dtype)
    assert opt.n_kernel_calls == 1
    p2 = p.copy()
    (m, v), scales = _state(p.size, state_dtype)
    for t in range(1, 4):
        g[:] = rng.standard_normal(p.size).astype(np.float32).astype(grad_dtype)
        opt.step()
        fastopt.adamw_(p2, g, m, v, step=t, lr=1e-2, state_scales=scales)
    np.testing.assert_array_equal(p, p2)
    sd = opt.state_dict()["state"]
    got_m = np.concatenate([sd[i]["exp_avg"] for i in range(3)])
    assert got_m.dtype == m.dtype
    np.testing.assert_array_equal(got_m.view(np.uint8), m.view(np.uint8))
    if scales is not None:
        np.testing.assert_array_equal(sd[0]["state_scales"], scales)
        assert "state_scales" not in sd[1]


def _saved_two_steps_in(make):
    """make(pairs) stepped twice, its state_dict, and the parameters two
    steps later; the parameters are put back to their saved values."""
    rng = np.random.default_rng(2)
    p, g, pairs = _pairs(rng, np.float32)
    opt = make(pairs)
    grads = [rng.standard_normal(p.size).astype(np.float32) for _ in range(4)]
    for k in range(2):
        g[:] = grads[k]
        opt.step()
    saved, p_saved = opt.state_dict(), p.copy()
    for k in range(2, 4):
        g[:] = grads[k]
        opt.step()
    p_want = p.copy()
    p[:] = p_saved
    return saved, p_want, (p, g, pairs, grads)


def _resumes_bit_for_bit(fresh, saved, p_want, run):
    """``fresh`` loads ``saved`` and its next two steps give ``p_want``."""
    p, g, _, grads = run
    fresh.load_state_dict(saved)
    for k in range(2, 4):
        g[:] = grads[k]
        fresh.step()
    np.testing.assert_array_equal(p, p_want)


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_state_dict_round_trip_continues_bit_for_bit(state_dtype):
    def make(pairs):
        return Adam(pairs, lr=1e-2, state_dtype=state_dtype)

    saved, p_want, run = _saved_two_steps_in(make)
    _resumes_bit_for_bit(make(run[2]), saved, p_want, run)


def test_load_rejects_wrong_dtypes_sizes_and_scales_and_changes_nothing():
    rng = np.random.default_rng(3)
    p, g, pairs = _pairs(rng, np.float32)
    g[:] = 1.0
    opt = Adam(pairs, state_dtype="int8")
    opt.step()
    good = opt.state_dict()
    before = opt.state_dict()

    def broken(edit):
        sd = opt.state_dict()
        edit(sd["state"])
        return sd

    cases = [
        (lambda s: s[0].__setitem__("exp_avg", s[0]["exp_avg"].astype(np.float32)), "dtype"),
        (lambda s: s[0].__setitem__("state_scales", s[0]["state_scales"][:-1]), "elements"),
        (lambda s: s[0]["state_scales"].__setitem__(1, np.nan), "not finite"),
        (lambda s: s[0]["state_scales"].__setitem__(0, -1.0), "not finite"),
        (lambda s: s[0].pop("state_scales"), "no 'state_scales'"),
        (lambda s: s[1].__setitem__("exp_avg_sq", s[1]["exp_avg_sq"][:5]), "elements"),
    ]
    for edit, match in cases:
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(broken(edit))
        now = opt.state_dict()
        for i in before["state"]:
            for k, a in before["state"][i].items():
                np.testing.assert_array_equal(np.asarray(now["state"][i][k]), np.asarray(a))
    bf = Adam(pairs, state_dtype="bfloat16")
    with pytest.raises(ValueError, match="dtype"):
        bf.load_state_dict(good)
    opt.load_state_dict(good)


def test_options_are_checked():
    pairs = _pairs(np.random.default_rng(4), np.float32)[2]
    with pytest.raises(ValueError, match="state_dtype"):
        Adam(pairs, state_dtype="float8")
    with pytest.raises(TypeError, match="state_dtype"):
        Adam(pairs, state_dtype=16)
    with pytest.raises(TypeError, match="state_dtype"):
        NAdam(pairs, state_dtype="bfloat16")
    with pytest.raises(ValueError, match="state_dtype='int8' is not available for SGD; it "
                                         "takes 'float32' or 'bfloat16'"):
        SGD(pairs, lr=0.1, state_dtype="int8")
    with pytest.raises(ValueError, match="state_dtype='bfloat16' is not available for Adamax"):
        K.Adamax(state_dtype="bfloat16")
    with pytest.raises(ValueError, match="stochastic"):
        Adam(pairs, state_rounding="stochastic")
    with pytest.raises(ValueError, match="seed"):
        Adam(pairs, state_dtype="bfloat16", state_rounding="stochastic", seed=-1)
    bf_pairs = _pairs(np.random.default_rng(4), BF16)[2]
    with pytest.raises(TypeError, match="NAdam reads gradients of dtype float32"):
        NAdam(bf_pairs)
    with pytest.raises(TypeError, match="params\\[0\\] grad must have dtype"):
        Adam([(np.zeros(3, np.float32), np.zeros(3, np.float64))])


def test_stochastic_rounding_class_is_reproducible():
    runs = []
    for _ in range(2):
        rng = np.random.default_rng(5)
        p, g, pairs = _pairs(rng, np.float32)
        opt = Adam(pairs, state_dtype="bfloat16", state_rounding="stochastic", seed=9)
        for _ in range(3):
            g[:] = rng.standard_normal(p.size)
            opt.step()
        runs.append(p.copy())
    np.testing.assert_array_equal(*runs)


def test_keras_adam_takes_the_state_dtype():
    rng = np.random.default_rng(6)
    p, g, pairs = _pairs(rng, BF16)
    opt = K.Adam(learning_rate=1e-2, state_dtype="int8")
    opt.build(pairs)
    p2 = p.copy()
    (m, v), scales = _state(p.size, "int8")
    for t in range(1, 3):
        g[:] = rng.standard_normal(p.size).astype(np.float32).astype(BF16)
        opt.step()
        fastopt.adam_(p2, g, m, v, step=t, lr=1e-2, eps=1e-7, decoupled_weight_decay=True,
                      convention="keras", state_scales=scales)
    np.testing.assert_array_equal(p, p2)
    assert opt.state_dict()["state"][0]["momentum"].dtype == np.uint8


def test_importing_fastopt_does_not_import_ml_dtypes():
    import subprocess
    import sys

    code = ("import sys, fastopt, fastopt.optim, fastopt.optim.keras; "
            "assert 'ml_dtypes' not in sys.modules, 'ml_dtypes imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


# bfloat16 state of SGD, RMSprop and Adagrad (both families) ------------------

def _rule_classes():
    """(name, make(**low), the kernel step over flat arrays(p, g, bufs, t,
    **low), state buffers) for each class with bfloat16 state."""
    def torch_sgd(p, g, b, t, **low):
        fastopt.sgd_(p, g, b[0], lr=0.05, momentum=0.9, nesterov=True, step=t, **low)

    def torch_rms(p, g, b, t, **low):
        fastopt.rmsprop_(p, g, b[0], lr=1e-3, momentum=0.5, momentum_buf=b[1], centered=True,
                         grad_avg=b[2], step=t, **low)

    def torch_ada(p, g, b, t, **low):
        fastopt.adagrad_(p, g, b[0], lr=0.05, step=t, **low)

    keras = dict(decoupled_weight_decay=True, convention="keras")

    def keras_sgd(p, g, b, t, **low):
        fastopt.sgd_(p, g, b[0], lr=0.05, momentum=0.9, weight_decay=0.0, step=t, **keras,
                     **low)

    def keras_rms(p, g, b, t, **low):
        fastopt.rmsprop_(p, g, b[0], lr=1e-3, alpha=0.9, eps=1e-7, momentum=0.5,
                         momentum_buf=b[1], centered=True, grad_avg=b[2], step=t, **keras,
                         **low)

    def keras_ada(p, g, b, t, **low):
        fastopt.adagrad_(p, g, b[0], lr=0.05, eps=1e-7, step=t, **keras, **low)

    return {
        "torch.SGD": (lambda pairs, **o: SGD(pairs, lr=0.05, momentum=0.9, nesterov=True, **o),
                      torch_sgd, ["momentum_buffer"], 0.0),
        "torch.RMSprop": (lambda pairs, **o: RMSprop(pairs, lr=1e-3, momentum=0.5,
                                                     centered=True, **o),
                          torch_rms, ["square_avg", "momentum_buffer", "grad_avg"], 0.0),
        "torch.Adagrad": (lambda pairs, **o: Adagrad(pairs, lr=0.05, **o), torch_ada, ["sum"],
                          0.0),
        "keras.SGD": (lambda pairs, **o: _built(K.SGD(0.05, momentum=0.9, **o), pairs),
                      keras_sgd, ["momentum"], 0.0),
        "keras.RMSprop": (lambda pairs, **o: _built(K.RMSprop(1e-3, momentum=0.5,
                                                              centered=True, **o), pairs),
                          keras_rms, ["velocity", "momentum", "average_gradient"], 0.0),
        "keras.Adagrad": (lambda pairs, **o: _built(K.Adagrad(0.05, **o), pairs), keras_ada,
                          ["accumulator"], 0.1),
    }


def _built(opt, pairs):
    opt.build(pairs)
    return opt


RULE_CLASSES = _rule_classes()
LOWS = {"nearest": dict(state_dtype="bfloat16"),
        "stochastic": dict(state_dtype="bfloat16", state_rounding="stochastic", seed=4)}


@pytest.mark.parametrize("low", LOWS)
@pytest.mark.parametrize("grad_dtype", [np.float32, BF16], ids=["g32", "gbf16"])
@pytest.mark.parametrize("name", RULE_CLASSES)
def test_bfloat16_state_class_is_the_kernel(name, grad_dtype, low):
    make, kernel, names, start = RULE_CLASSES[name]
    rng = np.random.default_rng(7)
    p, g, pairs = _pairs(rng, grad_dtype)
    opt = make(pairs, **LOWS[low])
    assert opt.n_kernel_calls == 1
    p2 = p.copy()
    bufs = [np.full(p.size, start, np.float32).astype(BF16) for _ in names]
    kernel_low = dict(rounding=LOWS[low].get("state_rounding", "nearest"),
                      seed=LOWS[low].get("seed", 0))
    for t in range(1, 4):
        g[:] = rng.standard_normal(p.size).astype(np.float32).astype(grad_dtype)
        opt.step()
        kernel(p2, g, bufs, t, **kernel_low)
    np.testing.assert_array_equal(p, p2)
    sd = opt.state_dict()["state"]
    for key, buf in zip(names, bufs):
        got = np.concatenate([sd[i][key] for i in range(3)])
        assert got.dtype == BF16, key
        np.testing.assert_array_equal(got.view(np.uint16), buf.view(np.uint16))


@pytest.mark.parametrize("name", ["torch.SGD", "torch.RMSprop", "keras.Adagrad"])
def test_bfloat16_state_dict_round_trips_and_other_formats_are_rejected(name):
    make = RULE_CLASSES[name][0]
    saved, p_want, run = _saved_two_steps_in(lambda pairs: make(pairs, **LOWS["stochastic"]))
    p, g, pairs, grads = run
    p_saved = p.copy()
    f32 = make(pairs)  # float32 state: a bfloat16 state_dict is refused, and back
    with pytest.raises(ValueError, match="has dtype bfloat16, this optimizer's state_dtype "
                                         "is 'float32' \\(convert the arrays explicitly"):
        f32.load_state_dict(saved)
    g[:] = grads[0]
    f32.step()
    fresh = make(pairs, **LOWS["stochastic"])
    with pytest.raises(ValueError, match="has dtype float32, this optimizer's state_dtype "
                                         "is 'bfloat16'"):
        fresh.load_state_dict(f32.state_dict())
    assert fresh.state_dict()["state"] == {}  # the rejected load changed nothing
    p[:] = p_saved  # (f32.step wrote it)
    _resumes_bit_for_bit(fresh, saved, p_want, run)


def test_bfloat16_state_options_are_checked():
    pairs = _pairs(np.random.default_rng(9), np.float32)[2]
    with pytest.raises(ValueError, match="stochastic"):
        RMSprop(pairs, state_rounding="stochastic")
    with pytest.raises(ValueError, match="stochastic"):
        K.SGD(momentum=0.9, state_rounding="stochastic")
    with pytest.raises(ValueError, match="int8"):
        Adagrad(pairs, state_dtype="int8")
    with pytest.raises(ValueError, match="int8"):
        K.RMSprop(state_dtype="int8")
    with pytest.raises(TypeError, match="seed"):
        SGD(pairs, lr=0.1, momentum=0.9, state_dtype="bfloat16", seed=1.5)
    # SGD without momentum has no state: stochastic rounding has nothing to round
    with pytest.raises(ValueError, match="momentum_buf is None"):
        SGD(pairs, lr=0.1, state_dtype="bfloat16", state_rounding="stochastic")


def test_keras_config_carries_the_state_format():
    """get_config names fastopt's state options only when they are not the
    float32 default (so Keras' own configs stay as they were), and
    from_config rebuilds them."""
    from fastopt.optim import keras as fk
    assert "state_dtype" not in fk.Adam().get_config()
    opt = fk.Adam(learning_rate=0.01, state_dtype="bfloat16", state_rounding="stochastic",
                  seed=7)
    config = opt.get_config()
    assert (config["state_dtype"], config["state_rounding"], config["seed"]) == (
        "bfloat16", "stochastic", 7)
    again = fk.Adam.from_config(config).state_format
    assert (again.dtype_name, again.rounding, again.seed) == ("bfloat16", "stochastic", 7)
    assert fk.SGD(momentum=0.9, state_dtype="bfloat16").get_config()["state_dtype"] == "bfloat16"
