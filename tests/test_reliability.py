"""Reliability: subnormals, memory, threads, non-finite values, determinism.

(Speed under decaying moments is measured in bench/, not asserted here.)
"""
import concurrent.futures
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import fastopt
from fastopt import MLP

FLT_MIN = np.finfo(np.float32).tiny  # smallest normal float32, 1.18e-38


# -- subnormals ----------------------------------------------------------------

def test_subnormal_results_are_flushed_to_zero_and_the_rest_is_exact():
    """With zero gradients Adam's second moment decays by beta2 each step;
    values that would become subnormal are flushed to zero (FTZ), while
    every normal value equals the reference, step after step."""
    v0 = np.array([1e-30, 1e-36, 2e-38, 1.0], np.float32)
    p = np.ones(4, np.float32)
    g = np.zeros(4, np.float32)
    m = np.zeros(4, np.float32)
    v = v0.copy()
    expected = v0.astype(np.float64)
    for step in range(1, 2001):
        fastopt.adam_(p, g, m, v, step=step, beta2=0.99)
        expected = 0.99 * expected
        normal = expected >= FLT_MIN
        np.testing.assert_allclose(v[normal], expected[normal], rtol=1e-4)
        assert np.all(v[~normal] == 0), (step, v)
    assert v[2] == 0 and v[3] > 0


def test_subnormal_inputs_are_treated_as_zero():
    """DAZ: a subnormal gradient counts as 0, as documented."""
    p = np.ones(2, np.float32)
    g = np.array([1e-40, 1.0], np.float32)  # 1e-40 is subnormal in float32
    fastopt.sgd_(p, g, lr=1.0)
    assert p[0] == 1.0 and p[1] == 0.0


def test_floating_point_mode_is_restored_after_a_kernel():
    fastopt.sgd_(np.ones(1000, np.float32), np.ones(1000, np.float32), lr=0.1)
    tiny = np.float32(1e-39) * np.float32(1.0)  # subnormal arithmetic outside the kernel
    assert tiny != 0 and np.array([1e-40], np.float32)[0] * np.float32(2) != 0


# -- non-finite values -------------------------------------------------------------

def test_nan_in_params_stays_in_its_element():
    p = np.array([1.0, np.nan, 1.0], np.float32)
    g = np.ones(3, np.float32)
    m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    fastopt.adam_(p, g, m, v, step=1, weight_decay=0.1)
    assert np.isnan(p[1]) and np.isnan(m[1]) and np.isfinite(p[[0, 2]]).all()


def test_infinite_logits():
    """-inf logits are a valid mask (probability 0); +inf gives a nan loss,
    as in torch."""
    z = np.array([[0.0, -np.inf, 1.0]], np.float32)
    grad = np.empty_like(z)
    loss = fastopt.softmax_cross_entropy(z, np.array([2]), grad)
    assert np.isfinite(loss) and grad[0, 1] == 0 and np.isfinite(grad).all()
    loss = fastopt.softmax_cross_entropy(np.array([[0.0, np.inf]], np.float32), np.array([0]))
    assert np.isnan(loss)


# -- memory -------------------------------------------------------------------------

def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_100k_kernel_calls_leave_resident_memory_flat():
    p, g, m, v = (np.ones(256, np.float32) for _ in range(4))
    vm = np.zeros(256, np.float32)
    for step in range(1, 2001):  # warm up caches and allocators
        fastopt.adam_(p, g, m, v, step=step, amsgrad=True, max_exp_avg_sq=vm)
    before = _rss_bytes()
    for step in range(1, 100001):
        fastopt.adam_(p, g, m, v, step=step, amsgrad=True, max_exp_avg_sq=vm)
        if step % 10 == 0:
            fastopt.sgd_(p, g, m, lr=0.1, momentum=0.9, step=step)
    grown = _rss_bytes() - before
    assert grown < 1 << 20, f"resident memory grew by {grown} bytes"


def test_training_step_allocates_nothing():
    """tracemalloc (which sees NumPy's array data) measures the memory
    allocated transiently within each training step; any batch-sized array
    here would be 64 KB (64 x 256 float32), the allowance is 8 KB (Python
    floats and small objects)."""
    from fastopt.callbacks import Callback

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 20)).astype(np.float32)
    y = rng.integers(0, 4, 1024)
    model = MLP([20, 256, 256, 4], seed=0)
    model.compile("adam", metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # buffers and state exist now

    class StepPeak(Callback):
        peaks = []

        def on_batch_end(self, batch, logs=None):
            current, peak = tracemalloc.get_traced_memory()
            if batch:  # the first batch of an epoch includes the epoch's permutation
                self.peaks.append(peak - self.base)
            tracemalloc.reset_peak()
            self.base = tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        model.fit(x, y, batch_size=64, epochs=3, verbose=0, callbacks=[StepPeak()])
    finally:
        tracemalloc.stop()
    assert len(StepPeak.peaks) == 3 * 15
    assert max(StepPeak.peaks) < 8 * 1024, sorted(StepPeak.peaks)[-5:]


def test_long_training_run_leaves_resident_memory_flat():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 20)).astype(np.float32)
    y = rng.integers(0, 4, 512)
    model = MLP([20, 64, 4], seed=0)
    model.compile("adam")
    model.fit(x, y, batch_size=8, epochs=5, verbose=0)
    before = _rss_bytes()
    model.fit(x, y, batch_size=8, epochs=40, verbose=0)  # 2,560 more steps
    assert _rss_bytes() - before < 2 << 20


# -- threads -----------------------------------------------------------------------

@pytest.mark.parametrize("n", [1000, 300_000])
def test_python_threads_give_the_single_threaded_results(n):
    rng = np.random.default_rng(1)
    starts = [(rng.standard_normal(n).astype(np.float32),
               rng.standard_normal(n).astype(np.float32)) for _ in range(6)]

    def run(p0, g):
        p, m, v = p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
        for step in range(1, 21):
            fastopt.adam_(p, g, m, v, step=step, lr=0.01)
        return p

    serial = [run(p0, g) for p0, g in starts]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda s: run(*s), starts))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


def test_omp_num_threads_is_respected():
    code = "import fastopt; print(fastopt.build_info()['max_threads'])"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.expanduser("~"), check=True)
    if fastopt.build_info()["openmp"]:
        assert out.stdout.strip() == "1"


def test_threadpoolctl_sees_and_limits_the_openmp_runtime():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not fastopt.build_info()["openmp"]:
        pytest.skip("built without OpenMP")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert fastopt.build_info()["max_threads"] == 1


_IDLE_CPU = """
import os, resource, time
import numpy as np
import fastopt
assert "OMP_WAIT_POLICY" not in os.environ or os.environ["OMP_WAIT_POLICY"] == "{user}"
n = 2 * fastopt.build_info()["parallel_min_elements"]
p, g, m, v = (np.ones(n, np.float32) for _ in range(4))
for _ in range(3):
    fastopt.adam_(p, g, m, v, step=1)        # one parallel region each
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
before = cpu()
time.sleep(0.3)                              # the main thread sleeps; do the workers?
print(cpu() - before)
"""


def _idle_cpu_after_parallel_kernels(env):
    out = subprocess.run([sys.executable, "-c", _IDLE_CPU.format(user=env.get("OMP_WAIT_POLICY"))],
                         capture_output=True, text=True, env=env,
                         cwd=os.path.expanduser("~"), check=True)
    return float(out.stdout)


def test_openmp_workers_sleep_between_kernels():
    """After a parallel kernel, libgomp's default spins its worker for ~300,000
    pauses (6-10 ms of a core measured on Zen 3) before it sleeps; fastopt's
    workers sleep at once, and the variable that makes them do so is gone
    from the environment after the import.  A user's OMP_WAIT_POLICY wins."""
    info = fastopt.build_info()
    if not info["openmp"] or info["max_threads"] < 2:
        pytest.skip("needs OpenMP and two threads")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    assert _idle_cpu_after_parallel_kernels(env) < 0.002
    active = _idle_cpu_after_parallel_kernels({**env, "OMP_WAIT_POLICY": "active"})
    assert active > 0.02  # the user's choice: the worker spins through the sleep


# -- determinism -----------------------------------------------------------------------

def test_determinism_across_runs_and_save_load(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 10))
    y = rng.integers(0, 3, 300)
    results = []
    for _ in range(2):
        model = MLP([10, 16, 3], seed=11)
        model.compile("adam")
        model.fit(x, y, batch_size=10, epochs=2, verbose=0)
        model.save(tmp_path / "m.npz")
        loaded = MLP.load(tmp_path / "m.npz")
        np.testing.assert_array_equal(loaded.params.data, model.params.data)
        results.append(loaded.predict(x))
    np.testing.assert_array_equal(results[0], results[1])
