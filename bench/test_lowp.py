"""Low-precision Adam (issue 21): the float32 step against bfloat16 state,
8-bit block-wise state, bfloat16 gradients with a bfloat16 parameter copy,
torch's fused float32 Adam and, where DeepSpeed is installed, its CPU Adam
in float32 ("deepspeed-fp32") and in its bfloat16-state mode
("deepspeed-bf16": ``fp32_optimizer_states=False``, which keeps the state in
the parameter's dtype, so parameter, gradient and both moments are
bfloat16 and there is no float32 master), paired round by round in one run.
"bf16-grad+bf16-copy-cached" is the copy variant with the copy written by
ordinary stores instead of non-temporal ones (``_kernels.set_stream_min``),
which cost a read for ownership of each copy line: 2 bytes an element.

Group ``adam-lowp n={size} {threads}t, paired``: every round runs each
variant once in a shuffled order; ``extra_info['times']`` holds each one's
median, minimum, median per-round ratio to fastopt's float32 step
("ratio" < 1 is faster), the bytes it moves per element and its optimizer
state in bytes (the moments, and the 8-bit blocks' scales).

Bytes moved per element (writes counted once; a write also costs a read
for ownership unless the line is already cached): float32 28 (read p, g, m,
v; write p, m, v); bfloat16 state 20; 8-bit state 16 (+ 8 bytes of scales
per 2048); bfloat16 gradient + bfloat16 copy 28 (p 8, g 2, m and v 16, copy
2: the copy costs what the narrower gradient saves); all three 20;
DeepSpeed's bfloat16 mode 14 (p 4, g 2, m and v 8).

Every buffer, torch's too (its moments given to it as its state), is
allocated by ``fastopt.aligned_empty`` (as
fastopt's optimizer classes allocate): ``np.empty`` would put buffers of
2**23-2**26 elements about a power of two apart, where the streams of a
step contend for DRAM banks and a variant's time depends on its buffers'
addresses (``bench/test_placement.py``)."""
import numpy as np
import pytest

from bench import impls
from fastopt import _kernels

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
ROUNDS = 15
LR = 1e-3


def _variants(p0, g0):
    """name -> (step, state bytes, bytes moved per element)."""
    fastopt = impls.fastopt
    n = p0.size
    zeros, placed = fastopt.aligned_zeros, impls.placed
    block = fastopt.build_info()["q8_block_elements"]
    out = {}

    def adam(state_dtype, grad_dtype, copy):
        p, g = placed(p0), placed(g0.astype(grad_dtype))
        if state_dtype == "int8":
            m, v = zeros(n, np.uint8), zeros(n, np.uint8)
            scales = zeros(2 * -(-n // block), np.float32)
        else:
            m, v, scales = zeros(n, state_dtype), zeros(n, state_dtype), None
        pc = None if copy is None else zeros(n, copy)
        t = iter(range(1, 1 << 30))

        def step():
            fastopt.adam_(p, g, m, v, step=next(t), lr=LR, state_scales=scales,
                          param_copy=pc)
        state = m.nbytes + v.nbytes + (0 if scales is None else scales.nbytes)
        return step, state

    out["fp32"] = (*adam(np.float32, np.float32, None), 28)
    out["bf16-state"] = (*adam(BF16, np.float32, None), 20)
    out["int8-state"] = (*adam("int8", np.float32, None), 16)
    out["bf16-grad+bf16-copy"] = (*adam(np.float32, BF16, BF16), 28)
    # the same with the copy's ordinary stores (see _kernels.set_stream_min)
    step, state = adam(np.float32, BF16, BF16)
    cached = impls.with_setting(step, _kernels.set_stream_min, 2**62,
                                fastopt.build_info()["stream_min_elements"])
    out["bf16-grad+bf16-copy-cached"] = (cached, state, 28)
    out["bf16-state+bf16-grad+copy"] = (*adam(BF16, BF16, BF16), 20)
    torch = _torch()
    if torch is not None:
        tp = torch.from_numpy(placed(p0)).requires_grad_()
        tp.grad = torch.from_numpy(placed(g0))
        opt = torch.optim.Adam([tp], lr=LR, fused=True)
        # its moments placed too (torch would allocate them with zeros_like)
        opt.state[tp] = {"step": torch.zeros((), dtype=torch.float32),
                         "exp_avg": torch.from_numpy(zeros(n, np.float32)),
                         "exp_avg_sq": torch.from_numpy(zeros(n, np.float32))}
        out["torch-fused-fp32"] = (opt.step, 8 * n, 28)
    ds = impls.deepspeed_adam()
    if ds is not None:
        out["deepspeed-fp32"] = (_deepspeed_step(ds, placed(p0), placed(g0)), 8 * n, 28)
        out["deepspeed-bf16"] = (_deepspeed_step(ds, placed(p0.astype(BF16)),
                                                 placed(g0.astype(BF16))), 4 * n, 14)
    return out


def _deepspeed_step(ds, p, g):
    """DeepSpeedCPUAdam's step (Adam, adamw_mode=False) over the placed
    arrays p and g, float32 or bfloat16, with its moments placed too, in p's
    dtype (bfloat16: ``fp32_optimizer_states=False``)."""
    import torch

    def tensor(a):
        if a.dtype == BF16:  # torch.from_numpy does not take ml_dtypes' bfloat16
            return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
        return torch.from_numpy(a)
    tp = tensor(p).requires_grad_()
    tp.grad = tensor(g)
    opt = ds.DeepSpeedCPUAdam([tp], lr=LR, adamw_mode=False,
                              fp32_optimizer_states=p.dtype != BF16)
    opt.state[tp] = {"step": 0, "exp_avg": tensor(impls.placed_zeros(p)),
                     "exp_avg_sq": tensor(impls.placed_zeros(p))}
    return opt.step


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def test_adam_low_precision_paired(benchmark, thread_limit, size, threads):
    impls.skip_one_thread_sizes(size, threads)
    p0, g0 = impls.start(size)
    with thread_limit(threads):
        variants = _variants(p0, g0)
        del p0, g0
        steps = {name: v[0] for name, v in variants.items()}
        one_round, times = impls.round_robin(steps, seed=size + threads)
        benchmark.group = f"adam-lowp n={size} {threads}t, paired"
        benchmark.extra_info.update({"rule": "adam-lowp", "impl": "one round", "size": size,
                                     "threads": threads, "paired": True})
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    paired = impls.paired_times(times, ours="fp32")
    for name, entry in paired.items():
        entry.update(state_bytes=int(variants[name][1]), bytes_per_element=variants[name][2])
    benchmark.extra_info["times"] = paired
