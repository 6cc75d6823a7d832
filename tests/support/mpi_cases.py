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
