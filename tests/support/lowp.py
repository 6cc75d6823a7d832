"""The float64 oracle of the low-precision update rules.

Every operation of the C body is done in float64 and rounded to float32 at
the same point as the kernel rounds (``_f``): for +, -, *, / and sqrt the
float64 result rounded to float32 is the correctly rounded float32 result
(53 >= 2 * 24 + 2 bits), so the oracle gives the kernel's bits.  Rounding to
bfloat16 is ml_dtypes' (round to nearest even), independent of the kernel's
integer code; the stochastic rounding hash is written out here again.
"""
import numpy as np

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
