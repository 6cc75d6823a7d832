"""pytest-benchmark setup for fastopt's comparisons.

Run the full suite (a few minutes; torch optional):
    pytest bench --benchmark-json=bench.json && python -m bench.report bench.json
Smoke run, as CI does (every comparison once, small sizes):
    pytest bench --benchmark-disable --sizes 1000,71146 --train-samples 512

Each pytest-benchmark group is one comparison (one kernel at one size and
thread count, or one training setup); the implementations in it run in the
same process, one after another, so their ratios are what to read.  From
--paired-min-size elements (16M) the optimizer steps are timed once more
with the implementations alternated round by round (groups ending in
", paired"), which keeps a drifting host from deciding a close comparison.
"""
import os

import pytest

FULL_SIZES = "1000,71146,1048576,16777216,67108864"


def pytest_addoption(parser):
    group = parser.getgroup("fastopt benchmarks")
    group.addoption("--sizes", default=FULL_SIZES,
                    help="comma-separated element counts of the optimizer benchmarks")
    group.addoption("--threads", default="1,2",
                    help="thread counts for the kernels that can run in parallel")
    group.addoption("--train-samples", type=int, default=60000,
                    help="MNIST training samples per epoch in the training benchmarks")
    group.addoption("--load-rounds", type=int, default=3,
                    help="rounds per condition of the busy-machine benchmark "
                         "(bench/test_contention.py)")
    group.addoption("--mpi-rounds", type=int, default=3,
                    help="rounds per batch size of the 1-rank against 2-rank benchmark "
                         "(bench/test_distributed.py)")
    group.addoption("--paired-min-size", type=int, default=1 << 24,
                    help="smallest size also timed with the implementations alternated "
                         "round by round (the 'paired' groups)")


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "size" in metafunc.fixturenames:
        sizes = [int(s) for s in config.getoption("--sizes").split(",")]
        metafunc.parametrize("size", sizes, ids=[f"n{s}" for s in sizes])
    if "threads" in metafunc.fixturenames:
        threads = [int(t) for t in config.getoption("--threads").split(",")]
        metafunc.parametrize("threads", threads, ids=[f"{t}t" for t in threads])


@pytest.fixture
def thread_limit():
    """Limit BLAS, OpenMP and torch to n threads inside the ``with`` block."""
    from contextlib import contextmanager

    from threadpoolctl import threadpool_limits

    @contextmanager
    def limit(n):
        torch = _torch()
        old = torch.get_num_threads() if torch else None
        if torch:
            torch.set_num_threads(n)
        with threadpool_limits(limits=n):
            yield
        if torch:
            torch.set_num_threads(old)

    return limit


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def pytest_benchmark_update_machine_info(config, machine_info):
    import fastopt

    machine_info["fastopt_build"] = fastopt.build_info()
    machine_info["nproc"] = os.cpu_count()
    torch = _torch()
    machine_info["torch"] = torch.__version__ if torch else None
