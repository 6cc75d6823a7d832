"""fastopt.torch against torch.optim and DeepSpeed inside PyTorch: one Adam
step, and a training epoch where only the optimizer is swapped (issue #17).

Every group is paired: all its implementations are built at once (each on
its own copy of the same model), and each round runs them once in a
shuffled order, so a drifting or shared host moves them alike; 'vs
fastopt' is the median of the per-round ratios to fot.Adam after
``flatten_`` ("fastopt-flat").  One thread throughout (torch's and
OpenMP's); run with ``OMP_NUM_THREADS=1`` and, for DeepSpeed,
``DS_ACCELERATOR=cpu`` (set here when unset).

- ``torch Adam step, seed model (10 tensors), paired``: one Adam step over
  the 784-32-64-128-256-10 MLP's parameters with preset gradients, timed
  as the mean of a batch of steps: torch fused, foreach and for-loop (its
  CPU default), fot.Adam on the separate tensors ("fastopt") and after
  flatten_ ("fastopt-flat"), and DeepSpeedCPUAdam with adamw_mode False
  and True ("deepspeed", "deepspeed-adamw") when DeepSpeed is installed.
  weight_decay is 0 for all, so they compute the same update.
- ``torch Adam step, 25M parameters (150 tensors), paired``: the same on a
  stack of 75 Linear(577, 577) layers (25.0M parameters), one step a round.
- ``torch bf16 Adam step, seed model / 25M parameters, paired``: one Adam
  step of a bfloat16 model (issue #21), the same two models in bfloat16
  with preset bfloat16 gradients: fot.Adam with float32 master weights
  after flatten_ ("fastopt-master-flat", the reference) and on the
  tensors ("fastopt-master"), the same with bfloat16 and 8-bit state
  ("fastopt-bf16state", "fastopt-int8state", flatten_ed),
  torch.optim.Adam(fused=True) on the bfloat16 parameters themselves
  ("torch-fused-bf16": bfloat16 state, no master weights) and the
  float32-master loop in torch (float32 masters, grad.float() copied in,
  torch.optim.Adam(fused=True) on the masters, ``p.copy_(master)``:
  "torch-master"), and, when DeepSpeed is installed, DeepSpeedCPUAdam on
  the bfloat16 parameters with bfloat16 state (``fp32_optimizer_states=
  False``: "deepspeed-bf16") and with float32 state ("deepspeed-fp32state"),
  neither with master weights.  Each entry also records ``state_bytes``: the
  optimizer's state (moments, master weights, block scales; the masters
  and their gradients for "torch-master"), not the model.
- ``torch epoch, seed MLP batch 32, paired``: seconds for one epoch over
  --train-samples MNIST images, forward/backward in PyTorch eager, the
  same initial weights; only the optimizer differs (plain SGD shows the
  cost of everything but the step).
"""
import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fastopt.torch as fot  # noqa: E402
from bench import impls  # noqa: E402

SEED_LAYERS = [784, 32, 64, 128, 256, 10]
OURS = "fastopt-flat"
STEP_IMPLS = ["fastopt-flat", "fastopt", "torch-fused", "torch-foreach", "torch-forloop",
              "deepspeed", "deepspeed-adamw"]
EPOCH_IMPLS = ["fastopt-flat", "fastopt", "torch-fused", "torch-forloop", "deepspeed",
               "torch-sgd"]
# model -> (rounds, steps timed together in a round)
STEP_ROUNDS = {"seed": (40, 50), "25M": (12, 1)}
EPOCH_ROUNDS = 5


def _mlp(sizes):
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def _big():
    return torch.nn.Sequential(*[torch.nn.Linear(577, 577) for _ in range(75)])


def _available(names):
    ds = impls.deepspeed_adam()
    return [n for n in names if ds is not None or not n.startswith("deepspeed")]


def _adam(impl, model):
    """The optimizer ``impl`` over ``model`` (flatten_ed first for 'fastopt-flat')."""
    params = list(model.parameters())
    if impl == "torch-fused":
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    if impl == "torch-foreach":
        return torch.optim.Adam(params, lr=1e-3, foreach=True)
    if impl == "torch-forloop":
        return torch.optim.Adam(params, lr=1e-3)
    if impl == "torch-sgd":
        return torch.optim.SGD(params, lr=1e-3)
    if impl == "fastopt-flat":
        fot.flatten_(model)
        return fot.Adam(model.parameters(), lr=1e-3)
    if impl == "fastopt":
        return fot.Adam(params, lr=1e-3)
    return impls.deepspeed_adam().DeepSpeedCPUAdam(params, lr=1e-3, adamw_mode=impl == "deepspeed-adamw")


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _paired(benchmark, runs, rounds, seed, per=1, ours=OURS, **info):
    """Run ``runs[name]()`` once per round for every name, in a new shuffled
    order each round, after one warm-up round; record in extra_info each
    one's seconds per call divided by ``per`` (the steps a call makes):
    wall-clock ("times", what the report reads) and the calling thread's
    CPU time ("cpu_times": on a shared machine, without the time the
    thread waited for a core; everything here runs on that one thread)."""
    times = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    order = np.random.default_rng(seed)

    def one_round():
        for name in order.permutation(list(runs)):
            start, start_cpu = time.perf_counter(), time.thread_time()
            runs[name]()
            cpu[name].append(time.thread_time() - start_cpu)
            times[name].append(time.perf_counter() - start)

    benchmark.extra_info.update({"impl": "one round", "paired": True, "threads": 1,
                                 "load_before": os.getloadavg()[0], **info})
    benchmark.pedantic(one_round, rounds=rounds + 1, iterations=1)
    benchmark.extra_info["load_after"] = os.getloadavg()[0]
    skip = 1 if len(times[ours]) > 1 else 0     # not with --benchmark-disable (one call)
    for key, seconds in (("times", times), ("cpu_times", cpu)):
        benchmark.extra_info[key] = impls.paired_times(
            {name: [t / per for t in ts[skip:]] for name, ts in seconds.items()}, ours=ours)


def _stepper(opt, n):
    return _stepper_of(opt.step, n)


@pytest.mark.parametrize("model", ["seed", "25M"])
def test_adam_step_paired(benchmark, one_thread, model):
    rounds, n = STEP_ROUNDS[model]
    runs, params = {}, None
    for impl in _available(STEP_IMPLS):
        torch.manual_seed(0)
        net = _mlp(SEED_LAYERS) if model == "seed" else _big()
        opt = _adam(impl, net)
        with torch.no_grad():
            for p in net.parameters():
                if p.grad is None:
                    p.grad = torch.empty_like(p)
                p.grad.normal_(0, 1e-3)
        opt.step()                       # state allocated, kernels bound
        opt.step()
        runs[impl] = _stepper(opt, n)
        params = list(net.parameters())
    tensors = len(params)
    benchmark.group = (f"torch Adam step, seed model ({tensors} tensors), paired"
                       if model == "seed" else
                       f"torch Adam step, 25M parameters ({tensors} tensors), paired")
    _paired(benchmark, runs, rounds, seed=tensors, per=n,
            parameters=sum(p.numel() for p in params), steps_per_round=n)


@pytest.fixture(scope="module")
def mnist_torch(request):
    from fastopt.datasets import load_mnist

    n = request.config.getoption("--train-samples")
    (x, y), _ = load_mnist()
    x = torch.from_numpy((x[:n].reshape(-1, 784) / np.float32(255)).astype(np.float32))
    return x, torch.from_numpy(y[:n].astype(np.int64))


def test_epoch_paired(benchmark, one_thread, mnist_torch):
    x, y = mnist_torch
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch(impl):
        def run():
            torch.manual_seed(0)
            model = _mlp(SEED_LAYERS)
            opt = _adam(impl, model)
            for lo in range(0, len(x), 32):
                opt.zero_grad()
                loss_fn(model(x[lo:lo + 32]), y[lo:lo + 32]).backward()
                opt.step()
        return run

    benchmark.group = "torch epoch, seed MLP batch 32, paired"
    _paired(benchmark, {impl: epoch(impl) for impl in _available(EPOCH_IMPLS)},
            EPOCH_ROUNDS, seed=32, samples=len(x))


# -- a bfloat16 model (issue #21) ----------------------------------------------------

BF16_IMPLS = ["fastopt-master-flat", "fastopt-master", "fastopt-bf16state",
              "fastopt-int8state", "torch-fused-bf16", "torch-master", "deepspeed-bf16",
              "deepspeed-fp32state"]


def _state_bytes(*tensors):
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _bf16_step(impl, net):
    """(one step of ``impl`` on the bfloat16 model ``net``, its state bytes)."""
    params = list(net.parameters())
    if impl.startswith("fastopt"):
        if impl != "fastopt-master":
            fot.flatten_(net)
        state_dtype = {"fastopt-bf16state": "bfloat16", "fastopt-int8state": "int8"}.get(
            impl, "float32")
        opt = fot.Adam(net.parameters(), lr=1e-3, state_dtype=state_dtype)
    elif impl.startswith("deepspeed"):
        opt = impls.deepspeed_adam().DeepSpeedCPUAdam(
            params, lr=1e-3, adamw_mode=False,
            fp32_optimizer_states=impl == "deepspeed-fp32state")
    else:
        opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    for p in params:
        p.grad = torch.empty_like(p).normal_(0, 1e-3)
    if impl != "torch-master":
        opt.step()
        return opt.step, _state_bytes(*(v for st in opt.state.values() for v in st.values()))
    masters = [torch.nn.Parameter(p.detach().float()) for p in params]
    opt = torch.optim.Adam(masters, lr=1e-3, fused=True)

    @torch.no_grad()
    def step():
        for m, p in zip(masters, params):
            if m.grad is None:
                m.grad = torch.empty_like(m)
            m.grad.copy_(p.grad)
        opt.step()
        for m, p in zip(masters, params):
            p.copy_(m)

    step()
    return step, _state_bytes(*masters, *(m.grad for m in masters),
                              *(v for st in opt.state.values() for v in st.values()))


@pytest.mark.parametrize("model", ["seed", "25M"])
def test_bf16_adam_step_paired(benchmark, one_thread, model):
    pytest.importorskip("ml_dtypes")
    rounds, n = STEP_ROUNDS[model]
    runs, memory, params = {}, {}, None
    for impl in _available(BF16_IMPLS):
        torch.manual_seed(0)
        net = (_mlp(SEED_LAYERS) if model == "seed" else _big()).to(torch.bfloat16)
        step, memory[impl] = _bf16_step(impl, net)
        step()
        runs[impl] = _stepper_of(step, n)
        params = list(net.parameters())
    benchmark.group = (f"torch bf16 Adam step, {'seed model' if model == 'seed' else '25M'} "
                       f"({len(params)} tensors), paired")
    ours = "fastopt-master-flat"
    _paired(benchmark, runs, rounds, seed=len(params) + 1, per=n, ours=ours,
            parameters=sum(p.numel() for p in params), steps_per_round=n)
    for key in ("times", "cpu_times"):
        for impl, entry in benchmark.extra_info[key].items():
            entry["state_bytes"] = memory[impl]


def _stepper_of(step, n):
    def run():
        for _ in range(n):
            step()
    return run
