"""Low-precision Adam (issue 21): float16 / bfloat16 gradients, bfloat16
state rounded to nearest even or stochastically, a float16 / bfloat16
parameter copy; bit for bit against the float64 oracle of support/lowp.py,
across SIMD variants and thread counts, and its hostile inputs."""
import numpy as np
import pytest

import fastopt
from fastopt import _kernels

ml_dtypes = pytest.importorskip("ml_dtypes")
import lowp  # noqa: E402  (tests/support; needs ml_dtypes)

BF16 = lowp.BF16
GRADS = [np.float32, np.float16, BF16]
N = 1003


def _data(rng, n, grad_dtype, state):
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32).astype(grad_dtype)
    sd = np.float32 if state == "float32" else BF16
    m = (0.1 * rng.standard_normal(n)).astype(np.float32).astype(sd)
    v = (0.01 * rng.random(n)).astype(np.float32).astype(sd)
    return p, g, m, v


@pytest.mark.parametrize("grad_dtype", GRADS, ids=["g32", "g16", "gbf16"])
@pytest.mark.parametrize("state,rounding", [("float32", "nearest"), ("bfloat16", "nearest"),
                                            ("bfloat16", "stochastic")])
@pytest.mark.parametrize("copy", [None, np.float16, BF16], ids=["nocopy", "c16", "cbf16"])
@pytest.mark.parametrize("decay", ["none", "l2", "decoupled"])
def test_adam_matches_the_oracle_bit_for_bit(grad_dtype, state, rounding, copy, decay):
    rng = np.random.default_rng(21)
    p, g, m, v = _data(rng, N, grad_dtype, state)
    hyper = dict(lr=3e-3, beta1=0.85, beta2=0.995, eps=1e-7, grad_scale=0.75,
                 weight_decay=0.0 if decay == "none" else 0.05,
                 decoupled_weight_decay=decay == "decoupled")
    pc = None if copy is None else np.zeros(N, copy)
    for step in (1, 2, 3, 1000):
        want = lowp.adam(p, g, m, v, step=step, state=state, rounding=rounding, seed=7,
                         copy=copy, **hyper)
        fastopt.adam_(p, g, m, v, step=step, rounding=rounding, seed=7, param_copy=pc, **hyper)
        for got, exp in zip((p, m, v, pc), want):
            if exp is not None:
                lowp.same(got, exp)


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["f16", "bf16"])
def test_every_16_bit_gradient_is_widened_exactly(dtype):
    """beta1 = 0 makes exp_avg the widened gradient: all 65536 patterns.
    Keras' form, 0 + (g - 0) * 1, carries infinities through; PyTorch's lerp
    at weight 1, g + 0 * (g - 0), makes them nan, as torch does."""
    g = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(dtype)
    n = g.size
    p, m, v = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    fastopt.adam_(p, g, m, v, step=1, beta1=0.0, lr=0.0, convention="keras")
    want = g.astype(np.float32) + np.float32(0.0)  # the rule's 0 + (g - 0) makes -0 +0
    # bfloat16's subnormals widen to float32 subnormals, which the kernels
    # flush to zero (FTZ/DAZ) in the arithmetic
    want[np.abs(want) < np.finfo(np.float32).tiny] = 0.0
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(m), nan)
    lowp.same(m[~nan], want[~nan])


def _float32_patterns(rng, n):
    """Random float32 bit patterns, plus the edges of float16 and bfloat16."""
    edges = np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, 6.1e-5, 6.0e-5, 5.96e-8,
                      2.98e-8, 2.99e-8, 1e-45, 3.3895e38, 3.4e38, np.inf, -np.inf, np.nan],
                     np.float32)
    bits = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = (rng.standard_normal(n) * np.exp2(rng.integers(-30, 20, n))).astype(np.float32)
    return np.concatenate([edges, -edges, bits, near])


def _same_rounding(got, want, x):
    """``got`` (16-bit) is ``want``, the float32 input ``x`` rounded, bit for
    bit; where x is nan, got is nan; a float32 subnormal x is flushed to zero
    by the kernels (FTZ/DAZ), so got is 0 there."""
    nan = np.isnan(x)
    assert np.isnan(got[nan].astype(np.float32)).all()
    tiny = np.abs(x) < np.finfo(np.float32).tiny
    keep = ~nan & ~tiny
    lowp.same(got[keep], want[keep])
    assert (got[tiny & ~nan].astype(np.float32) == 0).all()


def test_bfloat16_state_rounds_to_nearest_even_like_ml_dtypes():
    """beta1 = 0 stores the gradient itself as exp_avg, rounded (Keras' form
    of the moment: see test_every_16_bit_gradient_is_widened_exactly)."""
    g = _float32_patterns(np.random.default_rng(1), 500_000)
    n = g.size
    p = np.zeros(n, np.float32)
    m, v = np.zeros(n, BF16), np.zeros(n, BF16)
    fastopt.adam_(p, g, m, v, step=1, beta1=0.0, lr=0.0, convention="keras")
    want = (g + np.float32(0.0)).astype(BF16)  # the rule's 0 + (g - 0) makes -0 +0
    _same_rounding(m, want, g)


@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["f16", "bf16"])
def test_parameter_copy_rounds_to_nearest_even_like_numpy(dtype):
    """lr = 0 leaves param as it is; the copy is param rounded."""
    p = _float32_patterns(np.random.default_rng(2), 500_000)
    n = p.size
    g = np.ones(n, np.float32)
    m, v, pc = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, dtype)
    fastopt.adam_(p, g, m, v, step=1, lr=0.0, param_copy=pc)
    want = p.astype(dtype)  # the updated param, which lr = 0 left as it was
    _same_rounding(pc, want, p)


def _run_all(n, grad_dtype, rounding, steps=3):
    rng = np.random.default_rng(5)
    p, g, m, v = _data(rng, n, grad_dtype, "bfloat16")
    pc = np.zeros(n, BF16)
    for step in range(1, steps + 1):
        fastopt.adam_(p, g, m, v, step=step, rounding=rounding, seed=11, param_copy=pc)
    return p, m, v, pc


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_simd_variants_and_thread_counts_give_the_same_bits(rounding):
    n = lowp.long_length()
    results = lowp.every_variant_and_thread_count(lambda: _run_all(n, BF16, rounding))
    # and the oracle on the whole long buffer
    rng = np.random.default_rng(5)
    p, g, m, v = _data(rng, n, BF16, "bfloat16")
    for step in range(1, 4):
        p, m, v, pc = lowp.adam(p, g, m, v, step=step, state="bfloat16", rounding=rounding,
                                seed=11, copy=BF16)
    for a, b in zip(results, (p, m, v, pc)):
        lowp.same(a, b)


@pytest.mark.parametrize("grad_dtype,copy", [(np.float16, np.float16), (np.float16, None),
                                             (np.float32, np.float16)],
                         ids=["g16-c16", "g16", "c16"])
def test_float16_gradient_and_copy_give_the_same_bits_on_every_variant(grad_dtype, copy):
    """The AVX2 and AVX-512 variants convert float16 with F16C, chunk by
    chunk around the float32 loop; the baseline with integer operations.
    Every float16 pattern as a gradient (nan payloads, infinities,
    subnormals), every kind of float32 parameter for the copy (nan payloads,
    overflow, float16's subnormal range), on a length that splits between
    threads and ends in a partial chunk and a tail shorter than 8."""
    n = lowp.long_length()
    rng = np.random.default_rng(16)
    p0 = _float32_patterns(rng, n)[:n]
    g0 = np.resize(np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16), n)
    g0 = g0.astype(grad_dtype)

    def run():
        p, g = p0.copy(), g0.copy()
        m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
        pc = np.zeros(n, copy or np.float16)
        for step in (1, 2):
            fastopt.adam_(p, g, m, v, step=step, lr=1e-3, param_copy=None if copy is None else pc)
        return p, m, v, pc

    p, m, v, pc = lowp.every_variant_and_thread_count(run)
    if copy is not None:  # the copy is the updated parameter rounded, as NumPy rounds
        _same_rounding(pc, p.astype(np.float16), p)


@pytest.fixture
def stream_min():
    """Streamed copies from a short length on, restored after."""
    default = fastopt.build_info()["stream_min_elements"]
    _kernels.set_stream_min(1000)
    try:
        assert fastopt.build_info()["stream_min_elements"] == 1000
        yield 1000
    finally:
        _kernels.set_stream_min(default)


@pytest.mark.parametrize("offset", [0, 3], ids=["line", "6-bytes-in"])
@pytest.mark.parametrize("copy", [np.float16, BF16], ids=["c16", "cbf16"])
@pytest.mark.parametrize("state", ["float32", "bfloat16", "stochastic"])
@pytest.mark.parametrize("grad_dtype", [np.float32, np.float16, BF16], ids=["g32", "g16", "gbf16"])
def test_streamed_copy_gives_the_same_bits(stream_min, prefetch, grad_dtype, state, copy,
                                           offset):
    """From ``stream_min_elements`` up the AVX2 and AVX-512 variants write a
    copy that starts on a 64-byte line from a stack buffer with
    non-temporal stores when the state is float32 (a copy 6 bytes past a
    line, and one with bfloat16 state, with ordinary stores); the baseline
    never does.  Every variant and thread count, with and without
    prefetch (64-element blocks or 256-element chunks), gives the same bits
    in all four outputs, and the copy is the updated parameter rounded as
    NumPy rounds, written over a sentinel on every step."""
    n = lowp.long_length()
    rng = np.random.default_rng(21)
    p0 = _float32_patterns(rng, n)[:n]
    p0[np.isnan(p0)] = 1.5  # a nan would hide a copy left unwritten
    g0 = (rng.standard_normal(n) * 1e-2).astype(grad_dtype)
    sdtype = np.float32 if state == "float32" else BF16
    rounding = dict(rounding="stochastic", seed=3) if state == "stochastic" else {}

    def run():
        p, m, v = p0.copy(), np.zeros(n, sdtype), np.zeros(n, sdtype)
        pc = fastopt.aligned_zeros(n + 32, copy)[offset:offset + n]
        for step in (1, 2):
            pc.view(np.uint16)[...] = 0x1234  # the sentinel, not the last step's copy
            fastopt.adam_(p, g0, m, v, step=step, lr=1e-3, param_copy=pc, **rounding)
        return p, m, v, pc

    p, m, v, pc = lowp.every_variant_and_thread_count(run)
    _same_rounding(pc, p.astype(copy), p)


def test_set_stream_min_checks_its_argument():
    default = fastopt.build_info()["stream_min_elements"]
    try:
        for bad in (1.5, True, "10", None):
            with pytest.raises(TypeError, match="elements must be an int"):
                _kernels.set_stream_min(bad)
        with pytest.raises(ValueError, match="elements must be >= 0"):
            _kernels.set_stream_min(-1)
        assert fastopt.build_info()["stream_min_elements"] == default
        _kernels.set_stream_min(np.int64(77))  # any integer type
        assert fastopt.build_info()["stream_min_elements"] == 77
        _kernels.set_stream_min(2**80)  # beyond any buffer: never streams
        assert fastopt.build_info()["stream_min_elements"] == 2**63 - 1
    finally:
        _kernels.set_stream_min(default)


def test_stochastic_rounding_is_unbiased():
    """x halfway-ish between bfloat16 neighbours: the mean of the stored
    values over many steps and elements is x within sampling error, while
    round to nearest is off by the whole rounding error."""
    n, x = 200_000, np.float32(1.0 + 2.0**-9 + 2.0**-11)  # 0.3125 ulp above 1
    lo, hi = 1.0, 1.0 + 2.0**-7
    frac = (float(x) - lo) / (hi - lo)
    means = []
    for step in (1, 2, 3, 4):
        m = np.zeros(n, BF16)
        fastopt.adam_(np.zeros(n, np.float32), np.full(n, x, np.float32), m, np.zeros(n, BF16),
                      step=step, beta1=0.0, lr=0.0, rounding="stochastic", seed=step * 3)
        vals = m.astype(np.float64)
        assert set(np.unique(vals)) <= {lo, hi}
        means.append((vals == hi).mean())
    se = np.sqrt(frac * (1 - frac) / n)
    for share in means:
        assert abs(share - frac) < 5 * se
    m = np.zeros(n, BF16)
    fastopt.adam_(np.zeros(n, np.float32), np.full(n, x, np.float32), m, np.zeros(n, BF16),
                  step=1, beta1=0.0, lr=0.0)
    assert (m.astype(np.float64) == lo).all()  # nearest: always down


def test_stochastic_rounding_depends_on_seed_and_step():
    a = _run_all(5000, np.float32, "stochastic", steps=1)
    b = _run_all(5000, np.float32, "stochastic", steps=1)
    lowp.same(a[1], b[1])
    rng = np.random.default_rng(5)
    p, g, m, v = _data(rng, 5000, np.float32, "bfloat16")
    fastopt.adam_(p, g, m, v, step=1, rounding="stochastic", seed=12)
    assert not np.array_equal(m.view(np.uint16), a[1].view(np.uint16))


def test_skip_nonfinite_reads_16_bit_gradients():
    for dtype in (np.float16, BF16):
        p, g, m, v = _data(np.random.default_rng(3), 100, dtype, "bfloat16")
        g[17] = np.inf
        before = [x.copy() for x in (p, m, v)]
        assert fastopt.adam_(p, g, m, v, step=1, skip_nonfinite=True) is True
        for a, b in zip((p, m, v), before):
            lowp.same(a, b)
        g[17] = 1
        assert fastopt.adam_(p, g, m, v, step=1, skip_nonfinite=True) is False
        assert fastopt.all_finite(g)


def test_bound_update_takes_the_formats_and_notices_a_retype():
    rng = np.random.default_rng(4)
    p, g, m, v = _data(rng, 300, BF16, "bfloat16")
    pc = np.zeros(300, np.float16)
    lowp.bound_is_the_kernel(fastopt.adamw_, [p, g, m, v], dict(param_copy=pc),
                             dict(rounding="stochastic", seed=3), m)


def test_other_user_dtypes_are_rejected_after_bfloat16_was_seen():
    """The checks keep bfloat16's NumPy type number once its name matched;
    another ml_dtypes type (float8, also user-defined) and an int16 view of
    the bfloat16 state are still refused, before and after a bfloat16 call."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(7)
    p, g, m, v = _data(rng, 64, np.float32, "bfloat16")
    f8 = np.zeros(64, ml_dtypes.float8_e4m3fn)
    for _ in range(2):
        lowp.rejected(lambda: fastopt.adam_(p, f8, m, v, step=1), TypeError,
                      "grad must have dtype float32, float16 or bfloat16", p, m, v)
        lowp.rejected(lambda: fastopt.adam_(p, g, m.view(np.int16), v.view(np.int16), step=1),
                      TypeError, "exp_avg must have dtype", p, m, v)
        fastopt.adam_(p, g, m, v, step=1)  # bfloat16 state: accepted


def test_hostile_inputs_are_rejected_and_write_nothing():
    rng = np.random.default_rng(6)
    p, g, m, v = _data(rng, 64, np.float32, "bfloat16")
    bufs = (p, m, v)
    adam = fastopt.adam_
    lowp.rejected(lambda: adam(p, g.astype(np.float64), m, v, step=1), TypeError,
              "grad must have dtype float32, float16 or bfloat16", *bufs)
    lowp.rejected(lambda: adam(p, g.view(np.int32), m, v, step=1), TypeError, "grad", *bufs)
    lowp.rejected(lambda: adam(p, g.astype(np.float16).view(np.uint16), m, v, step=1), TypeError,
              "grad must have dtype", *bufs)
    lowp.rejected(lambda: adam(p, g, m.astype(np.float16), v.astype(np.float16), step=1),
              TypeError, "exp_avg must have dtype float32, bfloat16 or uint8", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v.astype(np.float32), step=1), TypeError,
              "share one dtype", *bufs)
    lowp.rejected(lambda: adam(p.astype(BF16), g, m, v, step=1), TypeError,
              "param must have dtype float32", *bufs)
    lowp.rejected(lambda: adam(p, g[:63], m, v, step=1), ValueError, "grad has 63", *bufs)
    lowp.rejected(lambda: adam(p, g, m[:60], v, step=1), ValueError, "exp_avg has 60", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, param_copy=np.zeros(63, BF16)), ValueError,
              "param_copy has 63", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, param_copy=np.zeros(64, np.float32)),
              TypeError, "param_copy must have dtype bfloat16 or float16", *bufs)
    ro = np.zeros(64, BF16)
    ro.flags.writeable = False
    lowp.rejected(lambda: adam(p, g, m, v, step=1, param_copy=ro), ValueError, "read-only", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, param_copy=p.view(BF16)[:64]), ValueError,
              "share memory", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, rounding="up"), ValueError, "rounding", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, rounding=None), TypeError, "rounding", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, seed=-1), ValueError, "seed", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, seed=2**32), ValueError, "seed", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, seed=1.5), TypeError, "seed", *bufs)
    vmax = np.zeros(64, np.float32)
    lowp.rejected(lambda: adam(p, g, m, v, step=1, amsgrad=True, max_exp_avg_sq=vmax), ValueError,
              "amsgrad=True needs", *bufs, vmax)
    m32, v32 = m.astype(np.float32), v.astype(np.float32)
    lowp.rejected(lambda: adam(p, g, m32, v32, step=1, rounding="stochastic"), ValueError,
              "stochastic", p, m32, v32)
    strided = np.zeros(128, BF16)[::2]
    lowp.rejected(lambda: adam(p, strided, m, v, step=1), ValueError, "C-contiguous", *bufs)
    lowp.rejected(lambda: fastopt.all_finite(np.zeros(3, np.int16)), TypeError, "x must have")


# 8-bit block-wise state ------------------------------------------------------

def _q8_data(rng, n, grad_dtype):
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32).astype(grad_dtype)
    return p, g, np.zeros(n, np.uint8), np.zeros(n, np.uint8), _q8_scales(n)


def _q8_scales(n):
    return np.zeros(2 * -(-n // fastopt.build_info()["q8_block_elements"]), np.float32)


def test_q8_block_is_the_oracles():
    assert fastopt.build_info()["q8_block_elements"] == lowp.Q8_BLOCK


@pytest.mark.parametrize("grad_dtype", GRADS, ids=["g32", "g16", "gbf16"])
@pytest.mark.parametrize("copy", [None, BF16], ids=["nocopy", "cbf16"])
def test_adam_8_bit_state_matches_the_oracle_bit_for_bit(grad_dtype, copy):
    n = 2 * lowp.Q8_BLOCK + 901  # a partial last block
    rng = np.random.default_rng(8)
    p, g, m, v, s = _q8_data(rng, n, grad_dtype)
    head = g[:lowp.Q8_BLOCK // 2]  # a wide range inside the first block
    head[:] = (head.astype(np.float32) * np.float32(1e-3)).astype(grad_dtype)
    pc = None if copy is None else np.zeros(n, copy)
    hyper = dict(lr=1e-2, weight_decay=0.01, decoupled_weight_decay=True)
    for step in range(1, 5):
        want = lowp.adam(p, g, m, v, step=step, state="uint8", scales=s, copy=copy, **hyper)
        fastopt.adam_(p, g, m, v, step=step, state_scales=s, param_copy=pc, **hyper)
        for got, exp in zip((p, m, v, pc, s), want):
            if exp is not None:
                lowp.same(got, exp)
        g = rng.standard_normal(n).astype(np.float32).astype(grad_dtype)


def test_8_bit_codes_keep_the_moments_to_one_part_in_16():
    rng = np.random.default_rng(9)
    n = lowp.Q8_BLOCK
    m = (rng.standard_normal(n) * np.exp2(rng.uniform(-12, 0, n))).astype(np.float32)
    v = (np.exp2(rng.uniform(-28, 0, n))).astype(np.float32)
    cm, cv, s = lowp.q8_encode(m.astype(np.float64), v.astype(np.float64), n)
    dm, dv = lowp.q8_decode(cm, cv, s, n)
    # below 2**-14 of the scale exp_avg is stored as 0; exp_avg_sq's range
    # (2**-30) holds every v drawn here
    assert np.all(np.abs(dm - m) <= np.maximum(np.abs(m) / 16, np.exp2(-14) * s[0]))
    assert np.all(np.abs(dv - v) <= v / 16)


def test_8_bit_state_is_the_same_for_every_variant_and_thread_count():
    n = lowp.long_length()

    def run():
        p, g, m, v, s = _q8_data(np.random.default_rng(10), n, BF16)
        for step in (1, 2):
            fastopt.adam_(p, g, m, v, step=step, state_scales=s)
        return p, m, v, s

    lowp.every_variant_and_thread_count(run)


def test_8_bit_hostile_inputs_are_rejected_and_write_nothing():
    n = 5000
    p, g, m, v, s = _q8_data(np.random.default_rng(11), n, np.float32)
    fastopt.adam_(p, g, m, v, step=1, state_scales=s)
    bufs = (p, m, v, s)
    adam = fastopt.adam_
    lowp.rejected(lambda: adam(p, g, m, v, step=2), ValueError, "state_scales is required", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=2, state_scales=s[:-1]), ValueError,
              "state_scales has 5 elements, expected 6", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=2, state_scales=s.astype(np.float64)), TypeError,
              "state_scales must have dtype float32", *bufs)
    for bad in (np.nan, np.inf, -1.0):
        s2 = s.copy()
        s2[4] = bad
        lowp.rejected(lambda: adam(p, g, m, v, step=2, state_scales=s2), ValueError,
                  "not finite and >= 0", *bufs, s2)
    lowp.rejected(lambda: adam(p, g, m, v.view(np.int8), step=2, state_scales=s), TypeError,
              "exp_avg_sq must have dtype", *bufs)
    lowp.rejected(lambda: adam(p, g, m, v, step=2, state_scales=s, rounding="stochastic"),
              ValueError, "stochastic", *bufs)
    p[:6] = np.abs(p[:6])  # valid scales, but param's memory
    lowp.rejected(lambda: adam(p, g, m, v, step=2, state_scales=p[:6]), ValueError,
              "share memory", *bufs)
    m32, v32 = np.zeros(n, np.float32), np.zeros(n, np.float32)
    lowp.rejected(lambda: adam(p, g, m32, v32, step=2, state_scales=s), ValueError,
              "only for 8-bit", *bufs)
