"""fastopt.torch against torch.optim inside PyTorch: one optimizer step, and
a training epoch where only the optimizer is swapped (issue #17).

Groups (one thread throughout):
- ``torch Adam step, seed model (10 tensors)``: one Adam step over the
  784-32-64-128-256-10 MLP's parameters with preset gradients: torch fused,
  torch foreach, torch for-loop (its CPU default), fot.Adam on the separate
  tensors, fot.Adam after ``flatten_``, and DeepSpeedCPUAdam if installed.
- ``torch Adam step, 25M parameters (150 tensors)``: the same on a stack of
  75 Linear(577, 577) layers (25.0M parameters in 150 tensors).
- ``torch epoch, seed MLP batch 32``: seconds for one epoch over
  --train-samples MNIST images, forward/backward in PyTorch eager; only the
  optimizer differs (plain SGD shows the cost of everything but the step).
"""
import pytest

torch = pytest.importorskip("torch")
import fastopt.torch as fot  # noqa: E402

SEED_LAYERS = [784, 32, 64, 128, 256, 10]
STEP_IMPLS = ["torch-fused", "torch-foreach", "torch-forloop", "fot", "fot-flat", "deepspeed"]
EPOCH_IMPLS = ["torch-forloop", "torch-fused", "fot", "fot-flat", "torch-sgd"]


def _mlp(sizes):
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def _big():
    return torch.nn.Sequential(*[torch.nn.Linear(577, 577) for _ in range(75)])


def _adam(impl, model):
    """The optimizer ``impl`` over ``model`` (flatten_ed first for 'fot-flat')."""
    params = list(model.parameters())
    if impl == "torch-fused":
        return torch.optim.Adam(params, lr=1e-3, fused=True)
    if impl == "torch-foreach":
        return torch.optim.Adam(params, lr=1e-3, foreach=True)
    if impl == "torch-forloop":
        return torch.optim.Adam(params, lr=1e-3)
    if impl == "torch-sgd":
        return torch.optim.SGD(params, lr=1e-3)
    if impl == "fot-flat":
        fot.flatten_(model)
        return fot.Adam(model.parameters(), lr=1e-3)
    if impl == "fot":
        return fot.Adam(params, lr=1e-3)
    deepspeed = pytest.importorskip("deepspeed.ops.adam")
    return deepspeed.DeepSpeedCPUAdam(params, lr=1e-3, adamw_mode=False)


@pytest.fixture
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("impl", STEP_IMPLS)
@pytest.mark.parametrize("model", ["seed", "25M"])
def test_adam_step(benchmark, one_thread, impl, model):
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
    tensors = len(list(net.parameters()))
    benchmark.group = (f"torch Adam step, seed model ({tensors} tensors)" if model == "seed"
                       else f"torch Adam step, 25M parameters ({tensors} tensors)")
    benchmark.extra_info["parameters"] = sum(p.numel() for p in net.parameters())
    benchmark(opt.step)


@pytest.fixture(scope="module")
def mnist_torch(request):
    import numpy as np

    from fastopt.datasets import load_mnist

    n = request.config.getoption("--train-samples")
    (x, y), _ = load_mnist()
    x = torch.from_numpy((x[:n].reshape(-1, 784) / np.float32(255)).astype(np.float32))
    return x, torch.from_numpy(y[:n].astype(np.int64))


@pytest.mark.parametrize("impl", EPOCH_IMPLS)
def test_epoch(benchmark, one_thread, mnist_torch, impl):
    x, y = mnist_torch
    loss_fn = torch.nn.CrossEntropyLoss()

    def setup():
        torch.manual_seed(0)
        model = _mlp(SEED_LAYERS)
        return (model, _adam(impl, model)), {}

    def epoch(model, opt):
        for lo in range(0, len(x), 32):
            opt.zero_grad()
            loss_fn(model(x[lo:lo + 32]), y[lo:lo + 32]).backward()
            opt.step()

    benchmark.group = "torch epoch, seed MLP batch 32"
    benchmark.extra_info["samples"] = len(x)
    benchmark.pedantic(epoch, setup=setup, rounds=3, iterations=1)
