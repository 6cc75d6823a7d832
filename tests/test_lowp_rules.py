"""bfloat16 state for SGD's momentum buffer, RMSprop's state and Adagrad's
sum (issue 21, item 2), and float16 / bfloat16 gradients for these rules:
bit for bit against the float64 oracle of support/lowp.py, in both
conventions, across SIMD variants and thread counts; stochastic rounding
unbiased and reproducible; hostile inputs rejected before anything is
written."""
import numpy as np
import pytest

import fastopt

ml_dtypes = pytest.importorskip("ml_dtypes")
import lowp  # noqa: E402  (tests/support; needs ml_dtypes)

BF16 = lowp.BF16
GRADS = {"g32": np.float32, "g16": np.float16, "gbf16": BF16}
STATES = [("float32", "nearest"), ("bfloat16", "nearest"), ("bfloat16", "stochastic")]
N = 1003


def _arrays(rng, n, grad_dtype, state, k, positive=()):
    """param, grad and k state buffers (those at the indices in ``positive``
    >= 0, as a sum of squares is)."""
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32).astype(grad_dtype)
    sd = np.float32 if state == "float32" else BF16
    bufs = [(np.abs(x) if i in positive else x).astype(np.float32).astype(sd)
            for i, x in enumerate(0.1 * rng.standard_normal((k, n)))]
    return p, g, bufs


# Each rule's options: (kernel kwargs, oracle kwargs).
SGD_CASES = {
    "momentum": dict(momentum=0.9),
    "dampening_l2": dict(momentum=0.8, dampening=0.3, weight_decay=0.05),
    "nesterov_decoupled": dict(momentum=0.9, nesterov=True, weight_decay=0.05,
                               decoupled_weight_decay=True),
    "maximize": dict(momentum=0.5, maximize=True),
}
RMSPROP_CASES = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "centered": dict(centered=True),
    "centered_momentum_l2": dict(centered=True, momentum=0.7, weight_decay=0.05),
    "decoupled_maximize": dict(weight_decay=0.05, decoupled_weight_decay=True, maximize=True),
}
ADAGRAD_CASES = {
    "plain": dict(),
    "lr_decay_l2": dict(lr_decay=0.01, weight_decay=0.05),
    "decoupled_maximize": dict(weight_decay=0.05, decoupled_weight_decay=True, maximize=True),
}


def _sgd_run(p, g, bufs, step, opts, **low):
    """(kernel's result, oracle's result) of one SGD step (bufs: [buf])."""
    want = lowp.sgd(p, g, bufs[0], lr=0.05, step=step, grad_scale=0.75, **opts, **low)
    fastopt.sgd_(p, g, bufs[0], lr=0.05, step=step, grad_scale=0.75,
                 **_kernel_low(opts, low))
    return (p, bufs[0]), want


def _rmsprop_run(p, g, bufs, step, opts, **low):
    sq, mb, ga = bufs
    mb = mb if opts.get("momentum") else None
    ga = ga if opts.get("centered") else None
    kw = dict(lr=3e-3, alpha=0.9, eps=1e-6, grad_scale=0.75, step=step)
    want = lowp.rmsprop(p, g, sq, momentum_buf=mb, grad_avg=ga, **kw, **opts, **low)
    fastopt.rmsprop_(p, g, sq, momentum_buf=mb, grad_avg=ga, **kw, **_kernel_low(opts, low))
    return (p, sq, mb, ga), want


def _adagrad_run(p, g, bufs, step, opts, **low):
    kw = dict(lr=3e-2, eps=1e-6, grad_scale=0.75, step=step)
    want = lowp.adagrad(p, g, bufs[0], **kw, **opts, **low)
    fastopt.adagrad_(p, g, bufs[0], **kw, **_kernel_low(opts, low))
    return (p, bufs[0]), want


def _kernel_low(opts, low):
    """The kernel's arguments from the oracle's (``state`` is the buffers' dtype)."""
    return {**opts, **{k: v for k, v in low.items() if k != "state"}}


RULES = {"sgd": (_sgd_run, SGD_CASES, 1, ()),
         "rmsprop": (_rmsprop_run, RMSPROP_CASES, 3, (0,)),
         "adagrad": (_adagrad_run, ADAGRAD_CASES, 1, (0,))}
CASES = [(rule, case) for rule, (_, cases, _, _) in RULES.items() for case in cases]


def _check_steps(rule, case, grad_dtype, state, rounding, convention, n=N, steps=(1, 2, 3, 50)):
    run, cases, k, positive = RULES[rule]
    rng = np.random.default_rng(21)
    p, g, bufs = _arrays(rng, n, grad_dtype, state, k, positive)
    for step in steps:
        got, want = run(p, g, bufs, step, cases[case], state=state, rounding=rounding, seed=7,
                        convention=convention)
        for a, b in zip(got, want):
            assert (a is None) == (b is None)
            if a is not None:
                lowp.same(a, b)
        g = rng.standard_normal(n).astype(np.float32).astype(grad_dtype)
    return p, *bufs


@pytest.mark.parametrize("convention", ["torch", "keras"])
@pytest.mark.parametrize("state,rounding", STATES, ids=["s32", "bf16", "bf16sr"])
@pytest.mark.parametrize("grad", GRADS)
@pytest.mark.parametrize("rule,case", CASES, ids=[f"{r}-{c}" for r, c in CASES])
def test_rule_matches_the_oracle_bit_for_bit(rule, case, grad, state, rounding, convention):
    _check_steps(rule, case, GRADS[grad], state, rounding, convention)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("rule,case", [("sgd", "nesterov_decoupled"),
                                       ("rmsprop", "centered_momentum_l2"),
                                       ("adagrad", "lr_decay_l2")])
def test_simd_variants_and_thread_counts_give_the_oracles_bits(rule, case, rounding):
    """On a buffer long enough to prefetch and to split between threads:
    every variant and thread count gives the same bits, and they are the
    oracle's."""
    n = lowp.long_length()
    for convention in ("torch", "keras"):
        lowp.every_variant_and_thread_count(
            lambda: _check_steps(rule, case, BF16, "bfloat16", rounding, convention, n=n,
                                 steps=(1, 2)))


def _rounded_up_as_often_as_dropped(stored, value, n):
    """``stored`` (bfloat16) holds the positive float32 ``value`` rounded
    stochastically: only the two neighbours occur, and the upper one in the
    share of elements that the 16 dropped bits say (r + low >= 2**16 for
    uniform r), within five standard errors.  Returns where it went up."""
    bits = int(np.float32(value).view(np.uint32))
    lo = np.uint32(bits & 0xFFFF0000).view(np.float32)
    hi = np.uint32((bits & 0xFFFF0000) + 0x10000).view(np.float32)
    frac = (bits & 0xFFFF) / 65536.0
    assert 0.05 < frac < 0.95
    vals = stored.astype(np.float32)
    assert set(np.unique(vals)) <= {lo, hi}
    up = vals == hi
    assert abs(up.mean() - frac) < 5 * np.sqrt(frac * (1 - frac) / n)
    return up


@pytest.mark.parametrize("step", [1, 2, 3])
def test_stochastic_rounding_is_unbiased_for_each_state_buffer(step):
    """Each rule's state buffers made to store a value between two bfloat16
    neighbours: unbiased, and each buffer of one element draws its own bits."""
    n, x = 200_000, np.float32(1.0 + 2.0**-9 + 2.0**-11)
    x2 = np.float32(x * x)
    low = dict(rounding="stochastic", seed=step * 5, step=step)
    p, g = np.zeros(n, np.float32), np.full(n, x, np.float32)
    buf = np.zeros(n, BF16)  # b = (first ? d : 0.5 * 0 + 1 * d) = x
    fastopt.sgd_(p, g, buf, lr=0.0, momentum=0.5, **low)
    up_sgd = _rounded_up_as_often_as_dropped(buf, x, n)
    s = np.zeros(n, BF16)  # s = 0 + x * x
    fastopt.adagrad_(p, g, s, lr=0.0, **low)
    _rounded_up_as_often_as_dropped(s, x2, n)
    # alpha = 1, eps = 0, v = 1: den = 1, so momentum_buf = 0.5 * 0 + x / 1
    v, mb = np.ones(n, BF16), np.zeros(n, BF16)
    fastopt.rmsprop_(p, g, v, lr=0.0, alpha=1.0, eps=0.0, momentum=0.5, momentum_buf=mb, **low)
    up_mb = _rounded_up_as_often_as_dropped(mb, x, n)
    # alpha = 0, centred: v = x * x and grad_avg = lerp(0, x, 1) = x
    v, ga = np.zeros(n, BF16), np.zeros(n, BF16)
    fastopt.rmsprop_(p, g, v, lr=0.0, alpha=0.0, eps=1.0, centered=True, grad_avg=ga, **low)
    _rounded_up_as_often_as_dropped(v, x2, n)
    up_ga = _rounded_up_as_often_as_dropped(ga, x, n)
    # the buffers' bits differ (momentum_buf the high half, grad_avg another hash)
    assert (up_sgd != up_mb).mean() > 0.3 and (up_sgd != up_ga).mean() > 0.3
    assert (up_mb != up_ga).mean() > 0.3
    nearest = np.zeros(n, BF16)
    fastopt.sgd_(p, g, nearest, lr=0.0, momentum=0.5, step=step)
    assert (nearest.astype(np.float32) == np.float32(1.0)).all()  # x rounds down


def test_stochastic_rounding_follows_seed_and_step():
    a = _check_steps("rmsprop", "centered_momentum_l2", np.float32, "bfloat16", "stochastic",
                     "torch", steps=(1,))
    b = _check_steps("rmsprop", "centered_momentum_l2", np.float32, "bfloat16", "stochastic",
                     "torch", steps=(2,))
    assert not np.array_equal(a[1].view(np.uint16), b[1].view(np.uint16))
    p, g, bufs = _arrays(np.random.default_rng(21), N, np.float32, "bfloat16", 1)
    fastopt.sgd_(p, g, bufs[0], lr=0.1, momentum=0.9, step=1, rounding="stochastic", seed=8)
    c = _check_steps("sgd", "momentum", np.float32, "bfloat16", "stochastic", "torch",
                     steps=(1,))
    assert not np.array_equal(bufs[0].view(np.uint16), c[1].view(np.uint16))


def test_bound_update_takes_bfloat16_state_and_notices_a_retype():
    p, g, (sq, mb, ga) = _arrays(np.random.default_rng(4), 300, BF16, "bfloat16", 3, (0,))
    lowp.bound_is_the_kernel(fastopt.rmsprop_, [p, g, sq], dict(momentum_buf=mb, grad_avg=ga),
                             dict(momentum=0.9, centered=True, rounding="stochastic", seed=3),
                             mb)


def test_skip_nonfinite_reads_16_bit_gradients_of_these_rules():
    p, g, (sq,) = _arrays(np.random.default_rng(3), 100, BF16, "bfloat16", 1, (0,))
    g[17] = np.inf
    before = [a.copy() for a in (p, sq)]
    assert fastopt.adagrad_(p, g, sq, step=1, skip_nonfinite=True) is True
    assert fastopt.rmsprop_(p, g, sq, skip_nonfinite=True) is True
    for a, b in zip((p, sq), before):
        lowp.same(a, b)


def test_hostile_inputs_are_rejected_and_write_nothing():
    p, g, (a, b, c) = _arrays(np.random.default_rng(6), 64, np.float32, "bfloat16", 3, (0,))
    bufs = (p, a, b, c)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    sgd, rms, ada = fastopt.sgd_, fastopt.rmsprop_, fastopt.adagrad_
    cases = [
        (lambda: sgd(p, g, a.astype(np.float16), lr=0.1, momentum=0.9), TypeError,
         "momentum_buf must have dtype float32 or bfloat16, got float16"),
        (lambda: sgd(p, g, a.view(np.uint8)[:64], lr=0.1, momentum=0.9), TypeError,
         "momentum_buf must have dtype"),
        (lambda: ada(p, g, a.astype(np.float64), step=1), TypeError,
         "state_sum must have dtype float32 or bfloat16"),
        (lambda: ada(p, g, np.zeros(64, np.uint8), step=1), TypeError, "state_sum must have"),
        (lambda: rms(p, g, a, momentum=0.9, momentum_buf=b32), TypeError,
         "momentum_buf has dtype float32, but square_avg has bfloat16"),
        (lambda: rms(p, g, a32, centered=True, grad_avg=c), TypeError,
         "grad_avg has dtype bfloat16, but square_avg has float32"),
        (lambda: rms(p, g, a, momentum=0.9, momentum_buf=b, centered=True, grad_avg=a32),
         TypeError, "grad_avg has dtype float32"),
        (lambda: rms(p, g, a, momentum=0.9, momentum_buf=b[:63]), ValueError,
         "momentum_buf has 63"),
        (lambda: rms(p, g, a, momentum=0.9), ValueError,
         "momentum_buf is required when momentum != 0 \(a float32 or bfloat16 array"),
        (lambda: sgd(p, g, a32, lr=0.1, momentum=0.9, rounding="stochastic"), ValueError,
         "rounding='stochastic' rounds bfloat16 state; momentum_buf is float32"),
        (lambda: sgd(p, g, None, lr=0.1, rounding="stochastic"), ValueError,
         "momentum_buf is None"),
        (lambda: ada(p, g, a32, step=1, rounding="stochastic"), ValueError,
         "state_sum is float32"),
        (lambda: rms(p, g, a32, rounding="stochastic"), ValueError, "square_avg is float32"),
        (lambda: rms(p, g, a, rounding="up"), ValueError, "rounding must be"),
        (lambda: sgd(p, g, a, lr=0.1, momentum=0.9, seed=-1), ValueError, "seed"),
        (lambda: ada(p, g, a, step=1, seed=2.0), TypeError, "seed"),
        (lambda: rms(p, g, a, step=0), ValueError, "step must be >= 1"),
        (lambda: rms(p, g.astype(np.float64), a), TypeError,
         "grad must have dtype float32, float16 or bfloat16"),
        (lambda: sgd(p.astype(BF16), g, a, lr=0.1, momentum=0.9), TypeError,
         "param must have dtype float32"),
        (lambda: sgd(p, g, p.view(BF16)[:64], lr=0.1, momentum=0.9), ValueError,
         "share memory"),
        (lambda: ada(p, g, np.zeros(128, BF16)[::2], step=1), ValueError, "C-contiguous"),
    ]
    for call, exc, match in cases:
        lowp.rejected(call, exc, match, *bufs, a32, b32)
    ro = a.copy()
    ro.flags.writeable = False
    lowp.rejected(lambda: ada(p, g, ro, step=1), ValueError, "read-only", *bufs)
