"""The data, models and optimizers of the MPI tests, shared by the test
process (the single-process reference) and the workers under mpiexec."""
import numpy as np

import fastopt
from fastopt import optim

SAMPLES, FEATURES, CLASSES = 515, 12, 3  # 515: the last batch of 32 is uneven (3 rows)


def data():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((SAMPLES, FEATURES)).astype(np.float32)
    w = rng.standard_normal((FEATURES, CLASSES))
    return x, np.argmax(x @ w + 0.5 * rng.standard_normal((SAMPLES, CLASSES)), axis=1)


def model(optimizer, seed=3):
    """A small MLP compiled with ``optimizer``: a Keras name, 'torch-adamw'
    (PyTorch-family AdamW with two parameter groups), or 'sgd-overflow'
    (Keras SGD at lr 1e10: some batches' loss or gradient overflows)."""
    m = fastopt.MLP([FEATURES, 16, 8, CLASSES], seed=seed)
    if optimizer == "sgd-overflow":
        optimizer = optim.keras.SGD(learning_rate=1e10)
    if optimizer == "torch-adamw":
        n = len(m.weights)
        pairs = list(m.params)
        optimizer = optim.AdamW([{"params": pairs[:n]},
                                 {"params": pairs[n:], "weight_decay": 0.0}], lr=3e-3)
    m.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def flat_state(state_dict):
    """A state_dict's arrays and step counts as flat name -> array."""
    out = {}
    for i, entry in state_dict["state"].items():
        for name, value in entry.items():
            out[f"{i}/{name}"] = np.asarray(value)
    return out


def groups_flat():
    return fastopt.FlatParameters([(5, 7), (7,), (13, 3), (3,)])


def torch_groups_optimizer(flat):
    pairs = list(flat)
    flat.data[:] = np.linspace(-1, 1, flat.size, dtype=np.float32)
    return optim.Adam([{"params": [pairs[0], pairs[2]]},
                       {"params": [pairs[1], pairs[3]], "lr": 0.05, "amsgrad": True}],
                      lr=0.01)


def gradient(step, n):
    return np.sin(np.arange(n, dtype=np.float32) * (step + 1)).astype(np.float32)


def schedule(opt, step):
    """Change a group's learning rate mid-run, as a scheduler callback does."""
    opt.param_groups[0]["lr"] = 0.01 / (1 + step)


# -- fastopt.torch.ShardedOptimizer (torch imported only by these) --------------
TORCH_BATCH = 32


def torch_setup():
    """A small flattened torch MLP, a fot.Adam with two parameter groups
    (the second with weight decay and AMSGrad) and a StepLR on it."""
    import torch

    import fastopt.torch as fot
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, CLASSES))
    flat = fot.flatten_(model)
    opt = fot.Adam([{"params": model[0].parameters()},
                    {"params": model[2].parameters(), "lr": 3e-3, "weight_decay": 0.1,
                     "amsgrad": True}], lr=1e-2)
    return model, flat, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)


def torch_step(model, step, rank=0, size=1):
    """Forward and backward of this rank's rows of global batch ``step``;
    returns (rows, total_rows)."""
    import torch
    x, y = data()
    lo = (step * TORCH_BATCH) % (SAMPLES - TORCH_BATCH)
    a, b = lo + TORCH_BATCH * rank // size, lo + TORCH_BATCH * (rank + 1) // size
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[a:b])),
                                             torch.from_numpy(y[a:b]))
    loss.backward()
    return b - a, TORCH_BATCH
