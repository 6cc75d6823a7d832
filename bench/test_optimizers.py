"""Optimizer steps: fastopt against NumPy and torch, per rule, size and threads.

Group ``{rule} n={size} {threads}t``.  The copy-bandwidth group measures
``np.copyto`` between two arrays of the largest size (12 bytes an element:
the destination is read before it is written), the ceiling each kernel's
effective GB/s (its traffic floor in bytes / time) stands against.

Group ``{rule} n={size} {threads}t, paired`` (sizes from ``--paired-min-size``
up) times the same steps again, alternated: every round runs each
implementation once, in a shuffled order.  pytest-benchmark runs one
implementation's rounds after another's, so on a shared host whose memory
bandwidth drifts over seconds, two kernels that both run at DRAM speed can
swap places from one run to the next; alternating gives both the same
conditions, and the median of the per-round ratios cancels the drift.
"""

import numpy as np
import pytest

from bench import impls


def _has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


IMPLEMENTATIONS = ["fastopt", "fastopt-bound", "numpy", "torch-fused", "torch-foreach",
                   "torch-forloop"]
BOUND_MAX = 71146  # above this the per-call overhead is lost in the kernel's time


def _make(impl, rule, p0, g0, tensors=1):
    if impl == "fastopt":
        return impls.make_fastopt(rule, p0, g0)
    if impl == "fastopt-bound":
        if p0.size > BOUND_MAX:
            pytest.skip("fastopt.bind only saves per-call overhead; compared on small sizes")
        return impls.make_fastopt(rule, p0, g0, bound=True)
    if impl == "numpy":
        return impls.make_numpy(rule, p0, g0)
    mode = impl.split("-", 1)[1]
    if not _has_torch():
        pytest.skip("torch is not installed")
    if mode not in impls.torch_modes(rule):
        pytest.skip(f"torch has no {mode} {rule} on the CPU")
    return impls.make_torch(rule, p0, g0, mode, tensors)


def _check(step, result, reference):
    step()
    np.testing.assert_allclose(result(), reference, rtol=1e-4, atol=1e-6)


def _check_then_time(benchmark, step, result, reference, info):
    _check(step, result, reference)
    benchmark.extra_info.update(info)
    benchmark(step)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("rule", impls.RULES)
def test_step(benchmark, thread_limit, rule, impl, size, threads):
    impls.skip_one_thread_sizes(size, threads)
    p0, g0 = impls.start(size)
    ref_step, ref_result = impls.make_fastopt(rule, p0, g0)
    ref_step()
    benchmark.group = f"{rule} n={size} {threads}t"
    with thread_limit(threads):
        step, result = _make(impl, rule, p0, g0)
        _check_then_time(benchmark, step, result, ref_result(),
                         {"rule": rule, "impl": impl, "size": size, "threads": threads,
                          "bytes": impls.BYTES[rule] * size})


PAIRED_ROUNDS = 25


def _paired_rivals(rule, size):
    """Who fastopt is paired with: torch's fused step where it has one, else
    both of its other paths; NumPy up to 1M elements (at 64M it would take
    most of the time)."""
    rivals = []
    if _has_torch():
        modes = impls.torch_modes(rule)
        rivals += ["torch-fused"] if "fused" in modes else [f"torch-{m}" for m in modes]
    if size <= 1 << 20:
        rivals.append("numpy")
    return rivals


@pytest.mark.parametrize("rule", impls.RULES)
def test_step_paired(benchmark, thread_limit, request, rule, size, threads):
    if size < request.config.getoption("--paired-min-size"):
        pytest.skip("paired only from --paired-min-size elements")
    impls.skip_one_thread_sizes(size, threads)
    rivals = _paired_rivals(rule, size)
    if not rivals:
        pytest.skip("nothing to pair fastopt with")
    p0, g0 = impls.start(size)
    ref_step, ref_result = impls.make_fastopt(rule, p0, g0)
    ref_step()
    reference = ref_result().copy()
    del ref_step, ref_result
    with thread_limit(threads):
        steps = {}
        for name in ["fastopt"] + rivals:
            step, result = _make(name, rule, p0, g0)
            _check(step, result, reference)
            steps[name] = step
        one_round, times = impls.round_robin(steps, seed=size + threads)
        benchmark.group = f"{rule} n={size} {threads}t, paired"
        benchmark.extra_info.update({"rule": rule, "impl": "one round", "size": size,
                                     "threads": threads, "paired": True})
        benchmark.pedantic(one_round, rounds=PAIRED_ROUNDS, iterations=1)
    benchmark.extra_info["times"] = impls.paired_times(times, bytes=impls.BYTES[rule] * size)


SEED_MODEL_TENSORS = [784 * 32, 32, 32 * 64, 64, 64 * 128, 128, 128 * 256, 256, 256 * 10, 10]


@pytest.mark.parametrize("impl", ["fastopt-flat", "torch-fused", "torch-foreach",
                                  "torch-forloop", "numpy"])
def test_adam_on_the_seed_model(benchmark, thread_limit, impl):
    """Adam over the 784-32-64-128-256-10 MLP as people run it: torch over the
    model's ten tensors, fastopt one call over the flat buffer."""
    n = sum(SEED_MODEL_TENSORS)
    p0, g0 = impls.start(n)
    ref_step, ref_result = impls.make_fastopt("adam", p0, g0)
    ref_step()
    benchmark.group = "adam seed-model (10 tensors, 71146) 1t"
    with thread_limit(1):
        if impl == "fastopt-flat":
            step, result = impls.make_fastopt("adam", p0, g0)
        else:
            step, result = _make(impl, "adam", p0, g0, tensors=len(SEED_MODEL_TENSORS))
            if impl.startswith("torch"):  # split exactly as the model's tensors
                import torch

                params = []
                lo = 0
                for s in SEED_MODEL_TENSORS:
                    t = torch.nn.Parameter(torch.from_numpy(p0[lo:lo + s].copy()))
                    t.grad = torch.from_numpy(g0[lo:lo + s].copy())
                    params.append(t)
                    lo += s
                mode = impl.split("-")[1]
                kw = {"fused": {"fused": True}, "foreach": {"foreach": True},
                      "forloop": {"foreach": False}}[mode]
                opt = torch.optim.Adam(params, lr=impls.LR, **kw)
                step = opt.step
                result = lambda: np.concatenate([t.detach().numpy() for t in params])  # noqa
        _check_then_time(benchmark, step, result, ref_result(),
                         {"rule": "adam", "impl": impl, "size": n, "threads": 1,
                          "bytes": 28 * n, "tensors": 1 if impl == "fastopt-flat" else 10})


def test_copy_bandwidth(benchmark, thread_limit, request):
    """The machine's copy bandwidth on the largest size, in the same run."""
    n = max(int(s) for s in request.config.getoption("--sizes").split(","))
    src = np.ones(n, np.float32)
    dst = np.zeros(n, np.float32)
    benchmark.group = "copy bandwidth"
    benchmark.extra_info.update({"impl": "np.copyto", "size": n, "bytes": 12 * n,
                                 "threads": 1})
    with thread_limit(1):
        benchmark(np.copyto, dst, src)
    assert dst[-1] == 1


@pytest.mark.parametrize("impl", ["fastopt", "torch-fused"])
@pytest.mark.parametrize("state", ["normal", "subnormal"])
def test_adam_with_decayed_moments(benchmark, thread_limit, impl, state):
    """Adam's second moment decays towards subnormals in long runs with small
    gradients; fastopt flushes them (FTZ/DAZ) and keeps its speed, an x86
    core without flushing slows down on them.  Group: 1M elements whose
    exp_avg_sq starts normal (1e-30) or subnormal (1e-39), with gradients
    small enough (1e-20) to keep it there."""
    n = 1 << 20
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n).astype(np.float32)
    g0 = np.full(n, 1e-20, np.float32)
    v0 = np.full(n, 1e-30 if state == "normal" else 1e-39, np.float32)
    benchmark.group = "adam with decayed moments n=1048576 1t"
    benchmark.extra_info.update({"impl": f"{impl} ({state} state)", "size": n, "threads": 1,
                                 "bytes": 28 * n})
    with thread_limit(1):
        if impl == "fastopt":
            p, g, m, v = p0.copy(), g0.copy(), np.zeros(n, np.float32), v0.copy()
            steps = iter(range(1000, 10**9))
            run = lambda: impls.fastopt.adam_(p, g, m, v, step=next(steps), lr=impls.LR)  # noqa
        else:
            if not _has_torch():
                pytest.skip("torch is not installed")
            import torch

            t = torch.nn.Parameter(torch.from_numpy(p0.copy()))
            t.grad = torch.from_numpy(g0.copy())
            opt = torch.optim.Adam([t], lr=impls.LR, fused=True)
            opt.step()
            opt.state[t]["exp_avg_sq"].copy_(torch.from_numpy(v0))
            run = opt.step
        run()
        benchmark(run)
