"""Run under ``mpiexec -n N python mpi_worker.py CONFIG.json`` by
tests/test_distributed.py: one distributed fit (or one error case) as the
config says; every rank saves what the test compares to a single-process run.

Config keys: ``case`` ('fit', 'mismatch', 'small_batch', 'blocks',
'torch_sharded': see torch_sharded), ``out``
(a directory), and for 'fit': ``mode`` (true or 'sharded'), ``optimizer``,
``batch_size``, ``epochs``, ``validation_split``, ``checkpoint`` (a path or
null), ``resume`` (a checkpoint to resume from, or null), ``kill`` ([epoch,
batch, rank]: that rank SIGKILLs itself after that batch, or null), ``fail``
(the same, but that rank raises RuntimeError instead).
"""
import json
import os
import signal
import sys

import numpy as np

import fastopt
from fastopt import distributed as dist
from fastopt.callbacks import Callback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mpi_cases  # noqa: E402  (the data, model and optimizers shared with the test)


class _Kill(Callback):
    """SIGKILL this process after batch ``batch`` of epoch ``epoch`` (0-based),
    or with ``raise_=True`` raise RuntimeError there (a failure of one rank only)."""

    def __init__(self, epoch, batch, raise_=False):
        self.epoch, self.batch, self.raise_, self.current = epoch, batch, raise_, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            if self.raise_:
                raise RuntimeError("this rank alone fails")
            os.kill(os.getpid(), signal.SIGKILL)


def fit(cfg, rank):
    x, y = mpi_cases.data()
    if cfg.get("resume"):
        ck = fastopt.checkpoint.load(cfg["resume"])
        model, initial = ck.model, ck.epoch
    else:
        model, initial = mpi_cases.model(cfg["optimizer"]), 0
    kill = cfg.get("kill") or cfg.get("fail")
    callbacks = [_Kill(kill[0], kill[1], "fail" in cfg)] if kill and kill[2] == rank else []
    history = model.fit(x, y, batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                        validation_split=cfg.get("validation_split", 0.0), verbose=0,
                        checkpoint=cfg.get("checkpoint"), callbacks=callbacks,
                        initial_epoch=initial, distributed=cfg["mode"],
                        on_nonfinite=cfg.get("on_nonfinite", "raise"))
    state = mpi_cases.flat_state(model.optimizer.state_dict())
    np.savez(os.path.join(cfg["out"], f"rank{rank}.npz"), params=model.params.data, **state)
    if rank == 0:
        with open(os.path.join(cfg["out"], "history.json"), "w") as f:
            json.dump({"history": history.history, "distributed": history.distributed}, f)


def error_case(cfg, rank):
    x, y = mpi_cases.data()
    batch_size = 32
    model = mpi_cases.model("adam", seed=1)
    if cfg["case"] == "mismatch":
        what = cfg["differ"]
        if what == "seed":
            model = mpi_cases.model("adam", seed=1 + rank)
        elif what == "data":
            x = x + rank
        elif what == "optimizer":
            model = mpi_cases.model("adam" if rank == 0 else "sgd", seed=1)
    else:
        batch_size = 1
    try:
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, distributed=True)
        message = "no error"
    except ValueError as e:
        message = f"ValueError: {e}"
    with open(os.path.join(cfg["out"], f"rank{rank}.txt"), "w") as f:
        f.write(message)


def blocks(cfg, rank):
    """The public building blocks on arrays every rank can compute."""
    comm = dist.world()
    results = {}
    g = np.full(37, rank + 1.0, np.float32)
    dist.allreduce_gradients_(g, rows=rank + 1, total_rows=3, comm=comm)  # 1/3*1 + 2/3*2
    results["weighted_allreduce"] = g
    flat = mpi_cases.groups_flat()
    opt = mpi_cases.torch_groups_optimizer(flat)
    sharded = dist.ShardedOptimizer(opt, flat, comm)
    for step in range(3):
        flat.grad[:] = mpi_cases.gradient(step, flat.size) / comm.size
        mpi_cases.schedule(opt, step)  # changed on the wrapped optimizer, as schedulers do
        sharded.step()
    results["sharded_params"] = flat.data.copy()
    results.update({"state/" + k: v for k, v in
                    mpi_cases.flat_state(sharded.state_dict()).items()})
    results["bounds"] = np.array(dist.shard_bounds(flat.size, comm.size))
    np.savez(os.path.join(cfg["out"], f"rank{rank}.npz"), **results)


def torch_sharded(cfg, rank):
    """fastopt.torch.ShardedOptimizer over ``steps`` global batches, saving the
    gathered state_dict at ``save_at`` (to ``checkpoint``) or resuming there."""
    import torch

    import fastopt.torch as fot
    model, flat, opt, schedule = mpi_cases.torch_setup()
    comm = dist.world()
    sharded = fot.ShardedOptimizer(opt, flat, comm)
    start = 0
    if cfg.get("resume"):
        ck = torch.load(cfg["resume"], weights_only=False)
        flat.params.copy_(ck["params"])
        sharded.load_state_dict(ck["optimizer"])
        schedule.load_state_dict(ck["schedule"])
        start = ck["step"]
    for step in range(start, cfg["steps"]):
        if step == cfg.get("save_at"):
            sd = sharded.state_dict()      # collective
            if rank == 0:
                torch.save({"params": flat.params.clone(), "optimizer": sd, "step": step,
                            "schedule": schedule.state_dict()}, cfg["checkpoint"])
        sharded.zero_grad()
        rows, total = mpi_cases.torch_step(model, step, rank, comm.size)
        sharded.step(rows, total)
        schedule.step()
    state = mpi_cases.flat_state(sharded.state_dict())
    shard = sum(t.numel() for st in sharded.inner.state.values() for t in st.values()
                if t.dim() > 0)
    np.savez(os.path.join(cfg["out"], f"rank{rank}.npz"), params=flat.params.numpy(),
             shard_state_elements=shard, **state)


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    rank = dist.world().rank
    {"fit": fit, "mismatch": error_case, "small_batch": error_case,
     "blocks": blocks, "torch_sharded": torch_sharded}[cfg["case"]](cfg, rank)


if __name__ == "__main__":
    main()
