"""The float64 oracle of the low-precision update rules.

Every operation of the C body is done in float64 and rounded to float32 at
the same point as the kernel rounds (``_f``): for +, -, *, / and sqrt the
float64 result rounded to float32 is the correctly rounded float32 result
(53 >= 2 * 24 + 2 bits), so the oracle gives the kernel's bits.  Rounding to
bfloat16 is ml_dtypes' (round to nearest even), independent of the kernel's
integer code; the stochastic rounding hash is written out here again.
"""
import numpy as np
import pytest

import fastopt
import ml_dtypes
BF16 = np.dtype(ml_dtypes.bfloat16)


def _f(x):
    """float64 -> float32 -> float64: one rounding to float32."""
    return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def _mix32(x):
    """Wellons' lowbias32, on uint32 arrays (wrapping multiplication)."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def sr_key(seed, step):
    t = np.uint64(step)
    hi = np.uint32(int(t >> np.uint64(32)))
    lo = np.uint32(int(t) & 0xFFFFFFFF)
    inner = _mix32(np.array([(int(hi) + 0x9E3779B9) & 0xFFFFFFFF], np.uint32))
    mid = _mix32(np.array([lo], np.uint32) ^ inner)
    return _mix32(np.array([seed], np.uint32) ^ mid)[0]


def sr_bits(seed, step, n, lo=0):
    """The 32 random bits of elements lo .. lo + n of one step."""
    idx = (np.arange(lo, lo + n, dtype=np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return _mix32(idx ^ sr_key(seed, step))


def to_bf16(x32, r=None):
    """float32 values (as float64) -> bfloat16: nearest even (r None), or
    stochastic with the 16-bit random numbers r added below the cut."""
    x32 = np.asarray(x32, dtype=np.float32)
    if r is None:
        return x32.astype(BF16)
    u = x32.view(np.uint32).astype(np.uint64)
    out = ((u + r.astype(np.uint64)) >> np.uint64(16)).astype(np.uint16)
    nan = np.isnan(x32)
    out[nan] = (u[nan] >> np.uint64(16)).astype(np.uint16) | np.uint16(0x40)
    return out.view(BF16)


def adam(p, g, m, v, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
         decoupled_weight_decay=False, maximize=False, grad_scale=1.0, state="float32",
         rounding="nearest", seed=0, copy=None, scales=None):
    """One step of fastopt.adam_ (PyTorch convention) with its low-precision
    formats.  Returns (param float32, exp_avg, exp_avg_sq, param_copy), and
    for uint8 state the new scales after them."""
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    neg_step, dscale = _f(-(lr / bc1)), _f(1.0 / np.sqrt(bc2))
    omb1, omb2, b2, ep = _f(1.0 - beta1), _f(1.0 - beta2), _f(beta2), _f(eps)
    gs = _f(-grad_scale if maximize else grad_scale)
    p_scale = _f(1.0 - lr * weight_decay) if decoupled_weight_decay else 1.0
    p = _f(p.astype(np.float64) * p_scale)
    d = _f(gs * g.astype(np.float32).astype(np.float64))
    if weight_decay and not decoupled_weight_decay:
        d = _f(d + _f(_f(weight_decay) * p))
    if state == "uint8":
        m0, v0 = q8_decode(m, v, scales, p.size)
    else:
        m0, v0 = m.astype(np.float64), v.astype(np.float64)
    if omb1 >= 0.5:   # torch's lerp_ from its end (fo_lerp)
        m1 = _f(d + _f(_f(omb1 - 1.0) * _f(d - m0)))
    else:
        m1 = _f(m0 + _f(omb1 * _f(d - m0)))
    v1 = _f(_f(b2 * v0) + _f(omb2 * _f(d * d)))
    den = _f(_f(_f(np.sqrt(v1)) * dscale) + ep)
    p1 = _f(p + _f(neg_step * _f(m1 / den))).astype(np.float32)
    if state == "bfloat16":
        r = sr_bits(seed, step, p.size) if rounding == "stochastic" else None
        m_out = to_bf16(m1, None if r is None else r & np.uint32(0xFFFF))
        v_out = to_bf16(v1, None if r is None else r >> np.uint32(16))
    elif state == "uint8":
        m_out, v_out, new_scales = q8_encode(m1, v1, p.size)
        return p1, m_out, v_out, None if copy is None else p1.astype(copy), new_scales
    else:
        m_out, v_out = m1.astype(np.float32), v1.astype(np.float32)
    pc = None if copy is None else p1.astype(copy)
    return p1, m_out, v_out, pc


# 8-bit block-wise state: the codes of fastopt_kernels.h (fo_q8_mag), written
# out again with float64 arithmetic and integer operations on the bits.
Q8_BLOCK = 2048


def q8_value(mag, bias):
    """The value of magnitude codes ``mag`` relative to the scale."""
    mag = mag.astype(np.int64)
    e, f = mag >> 3, mag & 7
    val = np.ldexp(1.0 + f / 8.0, (e - bias).astype(np.int32))
    return np.where(mag == 0, 0.0, val)


def q8_mag(y, bias, under):
    """Codes of y = |x| / scale in [0, 1] (float32 values): exponent and
    3-bit mantissa rounded to nearest even, clamped to the code of 1."""
    y = np.minimum(np.asarray(y, np.float32), np.float32(1.0))
    u = y.view(np.uint32).astype(np.int64)
    ur = u + 0x7FFFF + ((u >> 20) & 1)
    e = (ur >> 23) - 127 + bias
    mag = np.where(e <= 0, under, (e << 3) | ((ur >> 20) & 7))
    mag = np.minimum(mag, bias << 3)
    return np.where(u == 0, 0, mag)


def q8_decode(codes_m, codes_v, scales, n):
    """(m, v) as float32 values (float64 arrays) from codes and block scales."""
    nb = -(-n // Q8_BLOCK)
    blk = np.arange(n) // Q8_BLOCK
    sm, sv = scales[:nb][blk].astype(np.float64), scales[nb:][blk].astype(np.float64)
    cm = codes_m.astype(np.int64)
    m = _f(q8_value(cm & 0x7F, 15) * sm)
    m = np.where(cm & 0x80, -m, m)
    v = _f(q8_value(codes_v, 31) * sv)
    return m, v


def q8_encode(m, v, n):
    """(codes_m, codes_v, scales) of float32 values m, v."""
    nb = -(-n // Q8_BLOCK)
    blk = np.arange(n) // Q8_BLOCK
    scales = np.zeros(2 * nb, np.float32)
    for k, x in enumerate((np.abs(m), v)):
        for b in range(nb):
            scales[k * nb + b] = x[b * Q8_BLOCK:(b + 1) * Q8_BLOCK].max()
    inv = [np.where(s > 0, _f(1.0 / np.where(s > 0, s, 1.0)), 0.0)
           for s in (scales[:nb].astype(np.float64), scales[nb:].astype(np.float64))]
    ym = _f(np.abs(m) * inv[0][blk])
    yv = _f(v * inv[1][blk])
    cm = q8_mag(ym, 15, 0) | np.where(np.signbit(m), 0x80, 0)
    cv = q8_mag(yv, 31, 8)
    return cm.astype(np.uint8), cv.astype(np.uint8), scales


# SGD, Adagrad and RMSprop with bfloat16 state: the bodies of
# fastopt_kernels.h written out again, in float64 rounded to float32 at the
# same points, both conventions.

def sr_half(seed, step, n, k):
    """The 16 random bits that round state buffer k (fo_sr_half): the low
    then the high half of the hash, with the key xor (k // 2) * 0x9e3779b9."""
    key = np.uint32(int(sr_key(seed, step)) ^ ((k // 2) * 0x9E3779B9 & 0xFFFFFFFF))
    idx = (np.arange(n, dtype=np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    r = _mix32(idx ^ key)
    return (r >> np.uint32(16)) if k % 2 else (r & np.uint32(0xFFFF))


def store(x, state, rounding, seed, step, k):
    """A state buffer's new float32 values x as the kernel stores them."""
    if state == "bfloat16":
        return to_bf16(x, sr_half(seed, step, x.size, k) if rounding == "stochastic" else None)
    return np.asarray(x, np.float32)


def _gradient_term(p, g, lr, weight_decay, decoupled_weight_decay, maximize, grad_scale):
    """(p after decoupled decay, d) as float32 values in float64."""
    gs = _f(-grad_scale if maximize else grad_scale)
    p = p.astype(np.float64)
    if decoupled_weight_decay:
        p = _f(p * _f(1.0 - lr * weight_decay))
    d = _f(gs * g.astype(np.float32).astype(np.float64))
    if weight_decay and not decoupled_weight_decay:
        d = _f(d + _f(_f(weight_decay) * p))
    return p, d


def _lerp(a, b, w, keras):
    """fo_lerp with _lerp_weight's coefficients for lerp(a, b, w)."""
    wf = _f(w)
    if not keras and wf >= 0.5:
        return _f(b + _f(_f(wf - 1.0) * _f(b - a)))
    return _f(a + _f(wf * _f(b - a)))


def sgd(p, g, buf, *, lr, step=1, momentum=0.0, dampening=0.0, nesterov=False,
        weight_decay=0.0, decoupled_weight_decay=False, maximize=False, grad_scale=1.0,
        convention="torch", state="float32", rounding="nearest", seed=0):
    """One step of fastopt.sgd_; returns (param, momentum_buf or None)."""
    keras = convention == "keras"
    p, d = _gradient_term(p, g, lr, weight_decay, decoupled_weight_decay, maximize,
                          grad_scale)
    if buf is None:
        return _f(p + _f(_f(-lr) * d)).astype(np.float32), None
    mu = _f(momentum)
    c, nd, s = (_f(-lr), _f(-lr), 1.0) if keras else (_f(1.0 - dampening), 1.0, _f(-lr))
    if step == 1 and not keras:
        b = d
    else:
        b = _f(_f(mu * buf.astype(np.float64)) + _f(c * d))
    u = _f(_f(mu * b) + _f(nd * d)) if nesterov else b
    return _f(p + _f(s * u)).astype(np.float32), store(b, state, rounding, seed, step, 0)


def adagrad(p, g, state_sum, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
            decoupled_weight_decay=False, maximize=False, grad_scale=1.0, convention="torch",
            state="float32", rounding="nearest", seed=0):
    """One step of fastopt.adagrad_; returns (param, state_sum)."""
    p, d = _gradient_term(p, g, lr, weight_decay, decoupled_weight_decay, maximize,
                          grad_scale)
    neg_clr, ep = _f(-(lr / (1.0 + (step - 1) * lr_decay))), _f(eps)
    s = _f(state_sum.astype(np.float64) + _f(d * d))
    den = _f(np.sqrt(_f(s + ep))) if convention == "keras" else _f(_f(np.sqrt(s)) + ep)
    p1 = _f(p + _f(_f(neg_clr * d) / den)).astype(np.float32)
    return p1, store(s, state, rounding, seed, step, 0)


def rmsprop(p, g, square_avg, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
            momentum=0.0, momentum_buf=None, centered=False, grad_avg=None,
            decoupled_weight_decay=False, maximize=False, grad_scale=1.0, step=1,
            convention="torch", state="float32", rounding="nearest", seed=0):
    """One step of fastopt.rmsprop_; returns (param, square_avg,
    momentum_buf or None, grad_avg or None)."""
    keras = convention == "keras"
    p, d = _gradient_term(p, g, lr, weight_decay, decoupled_weight_decay, maximize,
                          grad_scale)
    ep = _f(eps)
    sq = _f(_f(1.0 - alpha) * _f(d * d)) if keras else _f(_f(_f(1.0 - alpha) * d) * d)
    v = _f(_f(_f(alpha) * square_avg.astype(np.float64)) + sq)
    w, ga = v, None
    if centered:
        ga = _lerp(grad_avg.astype(np.float64), d, 1.0 - alpha, keras)
        w = _f(v - _f(ga * ga))
    den = _f(np.sqrt(_f(w + ep))) if keras else _f(_f(np.sqrt(w)) + ep)
    b = None
    if momentum_buf is not None:
        c, s = (_f(lr), -1.0) if keras else (1.0, _f(-lr))
        b = _f(_f(_f(momentum) * momentum_buf.astype(np.float64)) + _f(_f(c * d) / den))
        p1 = _f(p + _f(s * b))
    else:
        p1 = _f(p + _f(_f(_f(-lr) * d) / den))
    out = [store(x, state, rounding, seed, step, k) if x is not None else None
           for k, x in ((0, v), (1, b), (2, ga))]
    return (p1.astype(np.float32), *out)


# Checks the low-precision tests share.

def same(a, b):
    """a and b are the same bytes."""
    np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))


def long_length():
    """A length on which the kernels prefetch and split between threads."""
    info = fastopt._kernels.build_info()
    return 2 * max(info["prefetch_min_elements"], info["parallel_min_elements"]) + 77


def every_variant_and_thread_count(run):
    """run()'s arrays under every SIMD variant, on 1 and 2 OpenMP threads,
    checked equal bit for bit; returns the first."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    levels = fastopt._kernels.simd_levels()
    results = []
    try:
        for level in levels:
            fastopt._kernels.set_simd_level(level)
            for threads in (1, 2):
                with threadpoolctl.threadpool_limits(limits=threads, user_api="openmp"):
                    results.append(run())
    finally:
        fastopt._kernels.set_simd_level(levels[-1])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            same(a, b)
    return results[0]


def rejected(call, exc, match, *arrays):
    """call() raises exc matching match, and arrays are unchanged."""
    before = [a.copy() for a in arrays]
    with pytest.raises(exc, match=match):
        call()
    for a, b in zip(arrays, before):
        same(a, b)


def bound_is_the_kernel(kernel, positional, keyword, kw, retyped):
    """fastopt.bind(kernel, ...) run at steps 1 and 2 gives the bits of
    the kernel called on copies; once ``retyped`` (one of the arrays) has
    another dtype, the bound update refuses to run."""
    cp = [a.copy() for a in positional]
    ck = {k: a.copy() for k, a in keyword.items()}
    update = fastopt.bind(kernel, *positional, **keyword, **kw)
    for t in (1, 2):
        update(t)
        kernel(*cp, **ck, step=t, **kw)
    for a, b in zip(positional + list(keyword.values()), cp + list(ck.values())):
        same(a, b)
    retyped.dtype = np.float16
    with pytest.raises(ValueError, match="no longer"):
        update(3)
