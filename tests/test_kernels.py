"""Parity of every kernel with the float64 NumPy reference.

For each rule and every valid combination of its options (both conventions),
100 steps with randomly drawn in-range hyperparameters and gradients:

* step by step: the reference, started from the kernel's own float32 state,
  must agree with the kernel's next state to a few float32 ulps;
* free-running: two trajectories of 100 steps, float32 kernel against
  float64 reference, must stay together to float32 accuracy.
"""
import os
import zlib

import numpy as np
import pytest

import fastopt
from fastopt import _kernels
from rules import RULES, all_cases, case_id

CASES = list(all_cases())
IDS = [case_id(r, c) for r, c in CASES]
N = 257  # not a multiple of any vector width: the scalar tail runs too
STEPS = 100


def _grad(rng, n, step):
    # a few orders of magnitude, and some exact zeros
    g = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1, n)
    g[rng.random(n) < 0.02] = 0.0
    return g.astype(np.float32)


def _as64(state):
    return {k: v.astype(np.float64) for k, v in state.items()}


def _seed(rule, cfg):
    return zlib.crc32(case_id(rule, cfg).encode())  # stable across processes


def _conditioning(rule, before, grad, hyper, step, base):
    """First-order sensitivity of each output to relative changes of the
    operands (gradient, parameter): a float32 evaluation is exact for inputs
    perturbed by a few ulps, so that much error is not the kernel's fault."""
    delta = 1e-7
    sens = {k: np.abs(v) + np.abs(before[k]) for k, v in base.items()}
    for which in ("grad", "param"):
        state = dict(before)
        g = grad
        if which == "grad":
            g = grad * (1 + delta)
        else:
            state["param"] = before["param"] * (1 + delta)
        moved = rule.reference(state, g, hyper, step)
        for k in sens:
            sens[k] += np.abs(moved[k] - base[k]) / delta
    return sens


@pytest.mark.parametrize("rule,cfg", CASES, ids=IDS)
def test_each_step_matches_reference(rule, cfg):
    rng = np.random.default_rng(_seed(rule, cfg))
    hyper = rule.draw_hyper(rng, cfg)
    state = rule.init_state(rng, cfg, N)
    for step in range(1, STEPS + 1):
        grad = _grad(rng, N, step)
        before = _as64(state)
        grad64 = grad.astype(np.float64)
        expected = rule.reference(before, grad64, hyper, step)
        scales = _conditioning(rule, before, grad64, hyper, step, expected)
        rule.call(state, grad, hyper, step)
        for name, want in expected.items():
            err = np.abs(state[name] - want)
            worst = np.argmax(err / (scales[name] + 1e-30))
            assert np.all(err <= 4e-6 * scales[name] + 1e-30), (
                f"{name} at step {step}: got {state[name][worst]!r}, "
                f"reference {want[worst]!r} (hyper={hyper})")


@pytest.mark.parametrize("rule,cfg", CASES, ids=IDS)
def test_trajectory_matches_reference(rule, cfg):
    rng = np.random.default_rng(_seed(rule, cfg) + 1)
    hyper = rule.draw_hyper(rng, cfg)
    state = rule.init_state(rng, cfg, N)
    state64 = _as64(state)
    for step in range(1, STEPS + 1):
        grad = _grad(rng, N, step)
        rule.call(state, grad, hyper, step)
        state64.update(rule.reference(state64, grad.astype(np.float64), hyper, step))
    np.testing.assert_allclose(state["param"], state64["param"], rtol=1e-4, atol=1e-5,
                               err_msg=f"hyper={hyper}")


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_updates_in_place(rule):
    cfg = next(iter(rule.configs()))
    rng = np.random.default_rng(0)
    state = rule.init_state(rng, cfg, 64)
    views = {k: v for k, v in state.items()}
    before = {k: v.copy() for k, v in state.items()}
    rule.call(state, _grad(rng, 64, 1), rule.draw_hyper(rng, cfg), 1)
    for name, arr in state.items():
        assert arr is views[name] and np.shares_memory(arr, views[name])
    assert not np.array_equal(state["param"], before["param"])


@pytest.mark.parametrize("shape", [(), (1,), (3, 5), (2, 3, 4), (0,), (4, 0)])
def test_any_shape(shape):
    rng = np.random.default_rng(1)
    p = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    expected, *_ = __import__("reference").adam(p.astype(np.float64), g.astype(np.float64),
                                                 m.astype(np.float64), v.astype(np.float64),
                                                 step=1, lr=0.01)
    assert fastopt.adam_(p, g, m, v, step=1, lr=0.01) is None
    assert p.shape == shape
    np.testing.assert_allclose(p, expected, rtol=1e-6)


@pytest.mark.parametrize("rule,cfg", CASES, ids=IDS)
def test_simd_levels_are_bit_identical(rule, cfg):
    levels = _kernels.simd_levels()
    rng = np.random.default_rng(_seed(rule, cfg) + 2)
    hyper = rule.draw_hyper(rng, cfg)
    start = rule.init_state(rng, cfg, 1000)
    grads = [_grad(rng, 1000, s) for s in range(1, 6)]
    results = {}
    try:
        for level in levels:
            _kernels.set_simd_level(level)
            state = {k: v.copy() for k, v in start.items()}
            for step, g in enumerate(grads, 1):
                rule.call(state, g, hyper, step)
            results[level] = state
    finally:
        _kernels.set_simd_level(levels[-1])
    for level in levels[:-1]:
        for name in start:
            np.testing.assert_array_equal(results[level][name], results[levels[-1]][name],
                                          err_msg=f"{name}: {level} vs {levels[-1]}")


@pytest.mark.parametrize("rule,cfg", CASES, ids=IDS)
def test_long_buffers_match_short_calls(rule, cfg, prefetch):
    """From ``prefetch_min_elements`` up a kernel walks its buffers in blocks,
    prefetching ahead (where the CPU's setting says so), and from
    ``parallel_min_elements`` up it splits them between threads; neither may
    change a bit.  The reference is the same steps made by calls on short
    slices, which take the plain path."""
    assert _kernels.build_info()["prefetch"] is prefetch
    info = _kernels.build_info()
    n = 2 * max(info["prefetch_min_elements"], info["parallel_min_elements"]) + 77
    rng = np.random.default_rng(_seed(rule, cfg) + 3)
    hyper = rule.draw_hyper(rng, cfg)
    whole = rule.init_state(rng, cfg, n)
    parts = {k: v.copy() for k, v in whole.items()}
    chunk = 4099
    assert chunk < info["prefetch_min_elements"]
    for step in range(1, 4):
        g = _grad(rng, n, step)
        rule.call(whole, g, hyper, step)
        for lo in range(0, n, chunk):
            rule.call({k: v[lo:lo + chunk] for k, v in parts.items()}, g[lo:lo + chunk],
                      hyper, step)
    for name in whole:
        np.testing.assert_array_equal(whole[name], parts[name], err_msg=name)


def test_parallel_path_matches_serial():
    """Above the threading threshold the result equals the one-thread result."""
    n = _kernels.build_info()["parallel_min_elements"] * 2 + 13
    rng = np.random.default_rng(3)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    p_small, m_small, v_small = p.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    fastopt.adam_(p, g, m, v, step=1, lr=0.01)
    chunk = 4096  # below the threshold: always the calling thread
    for lo in range(0, n, chunk):
        sl = slice(lo, lo + chunk)
        fastopt.adam_(p_small[sl], g[sl], m_small[sl], v_small[sl], step=1, lr=0.01)
    np.testing.assert_array_equal(p, p_small)
    np.testing.assert_array_equal(v, v_small)


def test_keras_adam_is_torch_adam_with_rescaled_eps():
    """Keras' eps-before-bias-correction equals torch's with eps / sqrt(bc2)."""
    rng = np.random.default_rng(4)
    p = rng.standard_normal(100).astype(np.float32)
    g = rng.standard_normal(100).astype(np.float32) * 1e-4
    a = [p.copy(), np.zeros(100, np.float32), np.zeros(100, np.float32)]
    b = [p.copy(), np.zeros(100, np.float32), np.zeros(100, np.float32)]
    step, beta2, eps = 3, 0.999, 1e-7
    fastopt.adam_(a[0], g, a[1], a[2], step=step, eps=eps, convention="keras")
    fastopt.adam_(b[0], g, b[1], b[2], step=step, eps=eps / np.sqrt(1 - beta2**step))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)


@pytest.mark.parametrize("n", [1, 1000, _kernels.build_info()["parallel_min_elements"] + 5])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_skip_nonfinite_writes_nothing(n, bad):
    rng = np.random.default_rng(5)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    g[-1] = bad  # the very last element: the scalar tail of the scan
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    before = p.copy()
    assert not fastopt.all_finite(g)
    assert fastopt.adam_(p, g, m, v, step=1, skip_nonfinite=True) is True
    np.testing.assert_array_equal(p, before)
    assert not m.any() and not v.any()
    g[-1] = 0.5
    assert fastopt.all_finite(g)
    assert fastopt.adam_(p, g, m, v, step=1, skip_nonfinite=True) is False
    assert not np.array_equal(p, before)
    assert fastopt.sgd_(p, g, lr=0.1) is None  # without the flag: returns None


def test_nan_gradient_without_skip_spreads_only_to_its_element():
    p = np.ones(4, np.float32)
    g = np.array([0.1, np.nan, 0.1, 0.1], np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    fastopt.adam_(p, g, m, v, step=1)  # PyTorch's behaviour: nan in, nan out
    assert np.isnan(p[1]) and np.isfinite(np.delete(p, 1)).all()


def test_prefetch_default_follows_the_cpu_and_the_environment(tmp_path):
    """On by default on Intel, off elsewhere; FASTOPT_PREFETCH overrides it,
    and a value other than 0 or 1 is refused at import."""
    import subprocess
    import sys

    code = "import fastopt; print(fastopt.build_info()['prefetch'])"
    for value, expected in (("0", "False"), ("1", "True")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "FASTOPT_PREFETCH": value}, check=True,
                             cwd=tmp_path)
        assert out.stdout.strip() == expected
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "FASTOPT_PREFETCH": "yes"}, cwd=tmp_path)
    assert bad.returncode != 0 and "FASTOPT_PREFETCH must be 0 or 1" in bad.stderr
    with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as f:
        intel = "GenuineIntel" in f.read()
    env = {k: v for k, v in os.environ.items() if k != "FASTOPT_PREFETCH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, cwd=tmp_path)
    assert out.stdout.strip() == str(intel)


def test_set_prefetch_takes_a_bool():
    with pytest.raises(TypeError, match="on must be a bool"):
        _kernels.set_prefetch(1)


def test_unchanged_checks_identity_and_key_of_every_object():
    """fastopt._kernels.unchanged: the per-step check fastopt.torch replays
    bound kernels under (identity of an attribute, equality of a key)."""
    from types import SimpleNamespace

    from fastopt._kernels import unchanged
    a, b = object(), object()
    objs = [SimpleNamespace(grad=a, ptr=1), SimpleNamespace(grad=b, ptr=2)]
    key = lambda o: o.ptr        # noqa: E731
    assert unchanged(objs, "grad", [a, b], key, [1, 2])
    assert not unchanged(objs, "grad", [a, object()], key, [1, 2])   # another object
    assert not unchanged(objs, "grad", [a, b], key, [1, 3])          # another key
    assert not unchanged(objs, "grad", [a], key, [1])                # lengths differ
    assert not unchanged(objs[:1], "grad", [a, b], key, [1, 2])
    assert unchanged([], "grad", [], key, [])
    with pytest.raises(AttributeError):
        unchanged(objs, "missing", [a, b], key, [1, 2])
    with pytest.raises(TypeError, match="key must be callable"):
        unchanged(objs, "grad", [a, b], 3, [1, 2])
    with pytest.raises(TypeError, match="objects"):
        unchanged(tuple(objs), "grad", [a, b], key, [1, 2])
    with pytest.raises(TypeError):
        unchanged(None, "grad", [a, b], key, [1, 2])
