"""Data-parallel training over MPI: each test launches ``mpiexec -n 2`` on
tests/support/mpi_worker.py and compares what the ranks saved with a
single-process run here (float64-free: the oracle is fastopt's own
single-process fit, already held to the NumPy/Keras references elsewhere).

Skipped only when mpi4py (with its mpiexec) is not installed; CI installs
it.  Every launch has a timeout, so nothing can hang the suite.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py")

sys.path.insert(0, str(Path(__file__).parent / "support"))
import mpi_cases  # noqa: E402

WORKER = Path(__file__).parent / "support" / "mpi_worker.py"
RANKS = 2
TIMEOUT = 120  # seconds per launch; a launch normally takes a few


def _mpiexec():
    """The mpiexec beside this Python (the mpich wheel's), else on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def launch(tmp_path, cfg, ranks=RANKS, check=True):
    """Run the worker under ``mpiexec -n ranks`` with ``cfg``; the CompletedProcess."""
    cfg = {"out": str(tmp_path), **cfg}
    path = tmp_path / f"cfg-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([_mpiexec(), "-n", str(ranks), sys.executable, str(WORKER), str(path)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def single_process(optimizer, batch_size, epochs, validation_split=0.2):
    x, y = mpi_cases.data()
    model = mpi_cases.model(optimizer)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
                        validation_split=validation_split)
    return model, history


def ranks(tmp_path):
    return [np.load(tmp_path / f"rank{r}.npz") for r in range(RANKS)]


def fit_cfg(mode, optimizer="adam", batch_size=32, epochs=1, **more):
    return {"case": "fit", "mode": mode, "optimizer": optimizer, "batch_size": batch_size,
            "epochs": epochs, "validation_split": 0.2, **more}


@pytest.mark.parametrize("optimizer", ["adam", "torch-adamw"])
@pytest.mark.parametrize("mode", [True, "sharded"])
def test_data_parallel_equals_single_process(tmp_path, mode, optimizer):
    # 412 training samples in batches of 32: the last batch of 28 splits 14/14;
    # batch 13 does not split evenly (6/7), so the weighting is exercised too
    for batch_size in (32, 13):
        out = tmp_path / str(batch_size)
        out.mkdir()
        launch(out, fit_cfg(mode, optimizer, batch_size, epochs=2))
        model, history = single_process(optimizer, batch_size, 2)
        assert history.distributed is None
        saved = ranks(out)
        # ranks bit-identical (parameters and gathered optimizer state)
        for name in saved[0].files:
            np.testing.assert_array_equal(saved[0][name], saved[1][name], err_msg=name)
        # equal to one process within float32 rounding of the summation order
        np.testing.assert_allclose(saved[0]["params"], model.params.data, rtol=1e-5, atol=1e-6)
        state = mpi_cases.flat_state(model.optimizer.state_dict())
        assert sorted(state) == sorted(set(saved[0].files) - {"params"})
        for name, value in state.items():
            np.testing.assert_allclose(saved[0][name], value, rtol=1e-4, atol=1e-7,
                                       err_msg=name)
        logs = json.loads((out / "history.json").read_text())
        assert logs["distributed"]["parameters_identical"] is True
        assert logs["distributed"]["mode"] == ("sharded" if mode == "sharded" else "allreduce")
        for key, values in history.history.items():
            np.testing.assert_allclose(logs["history"][key], values, rtol=1e-5, err_msg=key)


def test_sharded_equals_unsharded(tmp_path):
    """With two ranks each summed element is one (commutative) float
    addition either way, so the sharded run must match bit for bit."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    launch(tmp_path / "a", fit_cfg(True, "adam", 32, epochs=2))
    launch(tmp_path / "b", fit_cfg("sharded", "adam", 32, epochs=2))
    a, b = ranks(tmp_path / "a"), ranks(tmp_path / "b")
    for name in a[0].files:
        np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)


@pytest.mark.parametrize("mode", [True, "sharded"])
def test_nonfinite_batches_are_skipped_on_every_rank_alike(tmp_path, mode):
    launch(tmp_path, fit_cfg(mode, "sgd-overflow", 32, on_nonfinite="skip"))
    saved = ranks(tmp_path)
    np.testing.assert_array_equal(saved[0]["params"], saved[1]["params"])
    logs = json.loads((tmp_path / "history.json").read_text())
    assert logs["history"]["skipped_steps"][0] > 0
    assert logs["distributed"]["parameters_identical"] is True


def test_building_blocks(tmp_path):
    launch(tmp_path, {"case": "blocks"})
    saved = ranks(tmp_path)
    np.testing.assert_allclose(saved[0]["weighted_allreduce"], np.full(37, 5 / 3, np.float32),
                               rtol=1e-6)
    # the sharded optimizer (two groups, AMSGrad in one, shard cutting tensors)
    # against the same optimizer unsharded on the summed gradient
    flat = mpi_cases.groups_flat()
    opt = mpi_cases.torch_groups_optimizer(flat)
    for step in range(3):
        flat.grad[:] = (mpi_cases.gradient(step, flat.size) / RANKS) * RANKS
        mpi_cases.schedule(opt, step)
        opt.step()
    for r in range(RANKS):
        np.testing.assert_allclose(saved[r]["sharded_params"], flat.data, rtol=1e-6, atol=1e-7)
        for name, value in mpi_cases.flat_state(opt.state_dict()).items():
            np.testing.assert_allclose(saved[r]["state/" + name], value, rtol=1e-6, atol=1e-7)
    bounds = saved[0]["bounds"]
    assert bounds[0] == 0 and bounds[-1] == flat.size and all(b % 16 == 0 for b in bounds[:-1])


@pytest.mark.parametrize("differ", ["seed", "data", "optimizer"])
def test_mismatched_ranks_fail_on_every_rank(tmp_path, differ):
    launch(tmp_path, {"case": "mismatch", "differ": differ})
    messages = [(tmp_path / f"rank{r}.txt").read_text() for r in range(RANKS)]
    assert messages[0] == messages[1], messages
    expected = {"seed": "parameters", "data": "training data", "optimizer": "optimizer"}[differ]
    assert messages[0].startswith("ValueError: the 2 ranks were not given the same run")
    assert expected in messages[0]


def test_global_batch_smaller_than_ranks(tmp_path):
    launch(tmp_path, {"case": "small_batch"})
    for r in range(RANKS):
        text = (tmp_path / f"rank{r}.txt").read_text()
        assert "smaller than the number of ranks (2)" in text, text


def test_killed_rank_ends_the_job_and_the_checkpoint_resumes(tmp_path):
    """A rank SIGKILLed mid-epoch: the job exits non-zero within 60 s, the
    last checkpoint is intact, and resuming under 2 ranks ends with the
    weights of an uninterrupted run."""
    epochs = 3
    whole, killed, resumed = (tmp_path / d for d in ("whole", "killed", "resumed"))
    for d in (whole, killed, resumed):
        d.mkdir()
    launch(whole, fit_cfg("sharded", "adam", 32, epochs=epochs))
    checkpoint = str(killed / "run.npz")
    start = time.monotonic()
    proc = launch(killed, fit_cfg("sharded", "adam", 32, epochs=epochs, checkpoint=checkpoint,
                                  kill=[1, 5, 1]), check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 60, f"the job took {elapsed:.0f} s to end after a rank was killed"
    import fastopt
    assert fastopt.checkpoint.load(checkpoint).epoch == 1
    launch(resumed, fit_cfg("sharded", "adam", 32, epochs=epochs, resume=checkpoint))
    a, b = ranks(whole), ranks(resumed)
    for name in a[0].files:
        np.testing.assert_array_equal(a[0][name], b[0][name], err_msg=name)


def test_an_exception_on_one_rank_ends_the_job(tmp_path):
    """Rank 1 alone raises mid-epoch; rank 0 would wait in the next
    collective forever, so the failing rank aborts the MPI job."""
    start = time.monotonic()
    proc = launch(tmp_path, fit_cfg(True, "adam", 32, epochs=2, fail=[0, 3, 1]), check=False)
    assert proc.returncode != 0
    assert "this rank alone fails" in proc.stderr
    assert time.monotonic() - start < 60


def test_import_fastopt_does_not_import_mpi4py(tmp_path):
    code = ("import sys, fastopt, fastopt.distributed; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=tmp_path)


def test_launch_detection_reads_the_environment():
    from fastopt.distributed import launched_by_mpiexec
    assert launched_by_mpiexec({}) is None
    assert launched_by_mpiexec({"PMI_RANK": "1", "PMI_SIZE": "4"}) == (1, 4)
    assert launched_by_mpiexec({"OMPI_COMM_WORLD_RANK": "0",
                                "OMPI_COMM_WORLD_SIZE": "2"}) == (0, 2)


def test_bad_distributed_argument():
    x, y = mpi_cases.data()
    model = mpi_cases.model("adam")
    with pytest.raises(ValueError, match="distributed must be False, True or 'sharded'"):
        model.fit(x, y, distributed="zero")



def test_cli_under_mpiexec_trains_like_one_process(tmp_path):
    """`mpiexec -n 2 fastopt train --shard-optimizer` (detected, no
    --distributed needed): rank 0 alone prints and writes; the model equals a
    single-process `fastopt train`'s within float32 summation rounding."""
    args = ["-m", "fastopt", "train", "--epochs", "1", "--limit", "640", "--hidden", "16"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run([_mpiexec(), "-n", str(RANKS), sys.executable, *args,
                           "--shard-optimizer", "--save", "dp.npz", "--history", "dp.json"],
                          capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Test loss") == 1, proc.stdout
    assert "parameters identical on all 2 ranks (sharded" in proc.stdout, proc.stdout
    subprocess.run([sys.executable, *args, "--save", "one.npz"], capture_output=True,
                   timeout=TIMEOUT, env=env, cwd=tmp_path, check=True)
    import fastopt
    dp, one = (fastopt.MLP.load(tmp_path / f) for f in ("dp.npz", "one.npz"))
    np.testing.assert_allclose(dp.params.data, one.params.data, rtol=1e-5, atol=1e-6)


def test_sharded_optimizer_rejects_bad_arguments_before_any_mpi_call():
    from fastopt import FlatParameters, optim
    from fastopt.distributed import ShardedOptimizer, shard_bounds
    flat = FlatParameters([(4, 3), (3,)])
    with pytest.raises(TypeError, match="optimizer must be a fastopt optimizer"):
        ShardedOptimizer("adam", flat)
    with pytest.raises(TypeError, match="params must be a FlatParameters"):
        ShardedOptimizer(optim.Adam(flat), flat.data)
    with pytest.raises(ValueError, match="not built"):
        ShardedOptimizer(optim.keras.Adam(), flat)
    for clip in ("clipnorm", "global_clipnorm"):
        keras_adam = optim.keras.Adam(**{clip: 1.0})
        keras_adam.build(flat)
        with pytest.raises(ValueError, match=f"cannot apply Keras' {clip}"):
            ShardedOptimizer(keras_adam, flat)
    other = FlatParameters([(4, 3), (3,)])
    with pytest.raises(ValueError, match="optimizer must update exactly params' buffer"):
        ShardedOptimizer(optim.Adam(other), flat)
    assert shard_bounds(100, 3) == [0, 32, 64, 100]
    assert shard_bounds(10, 2) == [0, 0, 10]  # shards start on 64-byte lines; some may be empty
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        shard_bounds(10, 0)


def _torch_unsharded(steps):
    """The single-process run the sharded torch case must equal."""
    model, flat, opt, schedule = mpi_cases.torch_setup()
    for step in range(steps):
        opt.zero_grad()
        mpi_cases.torch_step(model, step)
        opt.step()
        schedule.step()
    return flat.params.numpy().copy(), mpi_cases.flat_state(opt.state_dict())


def test_torch_sharded_optimizer_equals_unsharded_and_resumes(tmp_path):
    """fastopt.torch.ShardedOptimizer on 2 ranks: the same parameters and
    (gathered) state as one process with the whole global batch, within
    float32 rounding of the gradient's summation order; ranks bit-identical;
    each rank holds half the state; a state_dict saved mid-run resumes to
    bit-identical final parameters."""
    pytest.importorskip("torch")
    steps = 12
    whole, ck = tmp_path / "whole", tmp_path / "ck.pt"
    whole.mkdir()
    launch(whole, {"case": "torch_sharded", "steps": steps, "save_at": 7,
                   "checkpoint": str(ck)})
    ranks = [np.load(whole / f"rank{r}.npz") for r in range(RANKS)]
    ref_params, ref_state = _torch_unsharded(steps)
    assert ranks[0]["params"].tobytes() == ranks[1]["params"].tobytes()
    np.testing.assert_allclose(ranks[0]["params"], ref_params, rtol=1e-5, atol=1e-6)
    for key, value in ref_state.items():
        np.testing.assert_allclose(ranks[0][key], value, rtol=1e-4, atol=1e-7, err_msg=key)
    total = sum(v.size for k, v in ref_state.items() if v.ndim > 0)
    assert sum(int(r["shard_state_elements"]) for r in ranks) == total
    assert all(int(r["shard_state_elements"]) < total for r in ranks)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    launch(resumed, {"case": "torch_sharded", "steps": steps, "resume": str(ck)})
    again = np.load(resumed / "rank0.npz")
    assert again["params"].tobytes() == ranks[0]["params"].tobytes()


def test_torch_sharded_optimizer_checks_its_arguments_before_any_mpi_call():
    torch = pytest.importorskip("torch")
    import fastopt.torch as fot
    model, flat, opt, _ = mpi_cases.torch_setup()
    with pytest.raises(TypeError, match="fastopt.torch optimizer"):
        fot.ShardedOptimizer(torch.optim.Adam(model.parameters()), flat)
    with pytest.raises(TypeError, match="FlatBuffers fastopt.torch.flatten_ returned"):
        fot.ShardedOptimizer(opt, flat.params)
    with pytest.raises(ValueError, match="all of flat.params once"):
        fot.ShardedOptimizer(fot.Adam(model[0].parameters()), flat)
    other = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="outside flat.params"):
        fot.ShardedOptimizer(fot.Adam(other.parameters()), flat)
    with pytest.raises(ValueError, match="keeps float32 state"):
        fot.ShardedOptimizer(fot.Adam(model.parameters(), state_dtype="bfloat16"), flat)
    half = torch.nn.Linear(8, 4).to(torch.bfloat16)
    with pytest.raises(TypeError, match="takes float32 models"):
        fot.ShardedOptimizer(fot.Adam(half.parameters()), fot.flatten_(half))
