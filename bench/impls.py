"""The implementations compared: fastopt, NumPy written as well as NumPy
allows (in place, ``out=``, one scratch buffer, no temporaries), and torch's
CPU optimizers (fused, foreach, for-loop) where torch is installed.

Each ``make_*`` returns a zero-argument ``step`` callable over its own
buffers, built from the same starting arrays, plus a function returning the
parameter after the step (for the correctness check made before timing).
Every implementation's buffers, NumPy's and torch's state included, are
placed as fastopt places its own (``placed``): ``np.zeros`` puts buffers of
2**22-2**26 elements allocated one after another about a power of two
apart, where the streams of one step contend for DRAM banks on some CPUs
and a time would depend on the addresses (``bench/test_placement.py``).
"""
import math
import os
import time

import numpy as np
import pytest

import fastopt

LR, MU, ALPHA, EPS = 1e-3, 0.9, 0.99, 1e-8
B1, B2 = 0.9, 0.999

# bytes each rule must move per element (fp32): the traffic floor
BYTES = {"sgd": 12, "momentum": 20, "nesterov": 20, "adagrad": 20, "rmsprop": 20,
         "adam": 28, "amsgrad": 36}
RULES = list(BYTES)
TORCH_FUSED = {"sgd", "momentum", "nesterov", "adagrad", "adam", "amsgrad"}


def start(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n).astype(np.float32),
            rng.standard_normal(n).astype(np.float32))


def placed(a):
    """A copy of the array ``a`` where fastopt allocates (fastopt.aligned_empty)."""
    out = fastopt.aligned_empty(a.size, a.dtype)
    out[...] = a.reshape(-1)
    return out.reshape(a.shape)


def placed_zeros(like):
    return fastopt.aligned_zeros(like.size, like.dtype).reshape(like.shape)


def _state_names(rule):
    return {"sgd": [], "momentum": ["buf"], "nesterov": ["buf"], "adagrad": ["sum"],
            "rmsprop": ["sq"], "adam": ["m", "v"], "amsgrad": ["m", "v", "vmax"]}[rule]


def make_fastopt(rule, p0, g0, bound=False):
    """One lean closure per rule: the timing is the kernel call, not Python.
    With ``bound``, the call is checked once by ``fastopt.bind`` and each
    step runs the BoundUpdate."""
    import itertools

    p, g = placed(p0), placed(g0)
    s = {k: placed_zeros(p) for k in _state_names(rule)}
    steps = itertools.count(1)
    if bound:
        kernel, state, hyper = {
            "sgd": (fastopt.sgd_, [], dict(lr=LR)),
            "momentum": (fastopt.sgd_, ["buf"], dict(lr=LR, momentum=MU)),
            "nesterov": (fastopt.sgd_, ["buf"], dict(lr=LR, momentum=MU, nesterov=True)),
            "adagrad": (fastopt.adagrad_, ["sum"], dict(lr=LR)),
            "rmsprop": (fastopt.rmsprop_, ["sq"], dict(lr=LR, alpha=ALPHA, eps=EPS)),
            "adam": (fastopt.adam_, ["m", "v"], dict(lr=LR)),
            "amsgrad": (fastopt.adam_, ["m", "v"], dict(lr=LR, amsgrad=True,
                                                      max_exp_avg_sq=s.get("vmax"))),
        }[rule]
        update = fastopt.bind(kernel, p, g, *[s[k] for k in state], **hyper)
        return (lambda: update(next(steps))), lambda: p
    if rule == "sgd":
        step = lambda: fastopt.sgd_(p, g, lr=LR)  # noqa: E731
    elif rule in ("momentum", "nesterov"):
        buf, nesterov = s["buf"], rule == "nesterov"
        step = lambda: fastopt.sgd_(p, g, buf, lr=LR, momentum=MU,  # noqa: E731
                                    nesterov=nesterov, step=next(steps))
    elif rule == "adagrad":
        step = lambda: fastopt.adagrad_(p, g, s["sum"], step=next(steps), lr=LR)  # noqa: E731
    elif rule == "rmsprop":
        sq = s["sq"]
        step = lambda: fastopt.rmsprop_(p, g, sq, lr=LR, alpha=ALPHA, eps=EPS)  # noqa: E731
    elif rule == "adam":
        m, v = s["m"], s["v"]
        step = lambda: fastopt.adam_(p, g, m, v, step=next(steps), lr=LR)  # noqa: E731
    else:
        m, v, vmax = s["m"], s["v"], s["vmax"]
        step = lambda: fastopt.adam_(p, g, m, v, step=next(steps), lr=LR,  # noqa: E731
                                     amsgrad=True, max_exp_avg_sq=vmax)
    return step, lambda: p


def make_numpy(rule, p0, g0):
    P, g = placed(p0), placed(g0)
    s = {k: placed_zeros(P) for k in _state_names(rule)}
    T = placed_zeros(P)
    t = [0]

    def step():
        p, tmp = P, T  # local names: in-place operators below would rebind closures
        t[0] += 1
        if rule == "sgd":
            np.multiply(g, LR, out=tmp)
        elif rule in ("momentum", "nesterov"):
            b = s["buf"]
            if t[0] == 1:
                np.copyto(b, g)
            else:
                b *= MU
                b += g
            if rule == "nesterov":
                np.multiply(b, MU, out=tmp)
                tmp += g
                tmp *= LR
            else:
                np.multiply(b, LR, out=tmp)
        elif rule == "adagrad":
            np.multiply(g, g, out=tmp)
            s["sum"] += tmp
            np.sqrt(s["sum"], out=tmp)
            tmp += 1e-10
            np.divide(g, tmp, out=tmp)
            tmp *= LR
        elif rule == "rmsprop":
            np.multiply(g, g, out=tmp)
            tmp *= 1 - ALPHA
            s["sq"] *= ALPHA
            s["sq"] += tmp
            np.sqrt(s["sq"], out=tmp)
            tmp += EPS
            np.divide(g, tmp, out=tmp)
            tmp *= LR
        else:
            m, v = s["m"], s["v"]
            np.subtract(g, m, out=tmp)
            tmp *= 1 - B1
            m += tmp
            np.multiply(g, g, out=tmp)
            tmp *= 1 - B2
            v *= B2
            v += tmp
            w = v
            if rule == "amsgrad":
                np.maximum(s["vmax"], v, out=s["vmax"])
                w = s["vmax"]
            np.sqrt(w, out=tmp)
            tmp *= 1 / math.sqrt(1 - B2 ** t[0])
            tmp += EPS
            np.divide(m, tmp, out=tmp)
            tmp *= LR / (1 - B1 ** t[0])
        p -= tmp

    return step, lambda: P


def make_torch(rule, p0, g0, mode, tensors=1):
    """torch.optim over the same values, split into ``tensors`` tensors."""
    import torch

    kw = {"fused": {"fused": True}, "foreach": {"foreach": True},
          "forloop": {"foreach": False}}[mode]
    params, starts = [], list(zip(np.array_split(p0, tensors), np.array_split(g0, tensors)))
    for chunk_p, chunk_g in starts:
        t = torch.nn.Parameter(torch.from_numpy(placed(chunk_p)))
        t.grad = torch.from_numpy(placed(chunk_g))
        params.append(t)
    if rule == "sgd":
        opt = torch.optim.SGD(params, lr=LR, **kw)
    elif rule in ("momentum", "nesterov"):
        opt = torch.optim.SGD(params, lr=LR, momentum=MU, nesterov=rule == "nesterov", **kw)
    elif rule == "adagrad":
        opt = torch.optim.Adagrad(params, lr=LR, **kw)
    elif rule == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=LR, alpha=ALPHA, eps=EPS, **kw)
    else:
        opt = torch.optim.Adam(params, lr=LR, amsgrad=rule == "amsgrad", **kw)
    _place_torch_state(opt, params, starts)
    return opt.step, lambda: np.concatenate([t.detach().numpy() for t in params])


def _place_torch_state(opt, params, starts):
    """Have torch create its state (one step), then undo that step: the
    parameters and gradients back to ``starts`` ((p, g) pairs; foreach SGD
    with Nesterov adds the momentum term into the gradient in place), every
    state tensor back to zero (torch's initial state for these rules and
    defaults; a zero momentum buffer gives the first step's ``buf = g`` too),
    each buffer a placed one."""
    import torch

    opt.step()
    for t, (p, g) in zip(params, starts):
        t.data.copy_(torch.from_numpy(p))
        t.grad.copy_(torch.from_numpy(g))
    for state in opt.state.values():
        for key, value in state.items():
            if not torch.is_tensor(value):  # older torch: SGD's momentum_buffer None
                continue
            if value.dim() == 0:
                value.zero_()
            else:
                state[key] = torch.from_numpy(placed_zeros(value.numpy()))


def torch_modes(rule):
    modes = ["fused", "foreach", "forloop"]
    return modes if rule in TORCH_FUSED else modes[1:]


def deepspeed_adam():
    """``deepspeed.ops.adam`` (its CPU Adam, on ``DS_ACCELERATOR=cpu``), or
    None when DeepSpeed is not installed.  Its OpenMP follows
    ``torch.set_num_threads``."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        from deepspeed.ops import adam
    except ImportError:
        return None
    return adam


def with_setting(step, set_value, value, default):
    """``step`` run with a kernel setting put to ``value`` by ``set_value``
    (``_kernels.set_prefetch``, ``set_stream_min``), ``default`` restored
    after it, so that the variants of a paired group differ in that setting
    alone."""
    def run():
        set_value(value)
        try:
            step()
        finally:
            set_value(default)
    return run


def paired_times(times, ours="fastopt", **extra):
    """``extra_info['times']`` of a paired group from each implementation's
    per-round seconds (``times[name]``, rounds aligned): its median, its
    minimum, and the median of its per-round ratios to ``ours``; ``extra``
    is added to every entry."""
    ours = np.array(times[ours])
    return {name: {"median": float(np.median(t)), "min": float(np.min(t)),
                   "ratio": float(np.median(np.array(t) / ours)), **extra}
            for name, t in times.items()}


def skip_one_thread_sizes(size, threads):
    """Skip a many-thread case where fastopt's kernels would run on one thread."""
    if threads > 1 and size < fastopt.build_info()["parallel_min_elements"]:
        pytest.skip("below fastopt's threading threshold the kernels run on one thread")


def round_robin(steps, seed):
    """``(one_round, times)`` for a paired group, after one call of each
    step (first touch of its pages): ``one_round()`` calls every
    ``steps[name]()`` once, in a new shuffled order each round (drawn from
    ``seed``), and appends each call's seconds to ``times[name]``."""
    for step in steps.values():
        step()
    order = np.random.default_rng(seed)
    times = {name: [] for name in steps}

    def one_round():
        for name in order.permutation(list(steps)):
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return one_round, times
