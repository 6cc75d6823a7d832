"""The optimizer classes' low-precision options (issue 21): state_dtype
bfloat16 / int8, float16 / bfloat16 gradients, state_dict in the real
format with the block scales; against the functional kernel bit for bit."""
import numpy as np
import pytest

import fastopt
from fastopt.optim import SGD, Adam, AdamW
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


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
def test_state_dict_round_trip_continues_bit_for_bit(state_dtype):
    rng = np.random.default_rng(2)
    p, g, pairs = _pairs(rng, np.float32)
    opt = Adam(pairs, lr=1e-2, state_dtype=state_dtype)
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
    fresh = Adam(pairs, lr=1e-2, state_dtype=state_dtype)
    fresh.load_state_dict(saved)
    for k in range(2, 4):
        g[:] = grads[k]
        fresh.step()
    np.testing.assert_array_equal(p, p_want)


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
        SGD(pairs, lr=0.1, state_dtype="bfloat16")
    with pytest.raises(ValueError, match="stochastic"):
        Adam(pairs, state_rounding="stochastic")
    with pytest.raises(ValueError, match="seed"):
        Adam(pairs, state_dtype="bfloat16", state_rounding="stochastic", seed=-1)
    bf_pairs = _pairs(np.random.default_rng(4), BF16)[2]
    with pytest.raises(TypeError, match="SGD reads gradients of dtype float32"):
        SGD(bf_pairs, lr=0.1)
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
