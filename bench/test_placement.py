"""Where the buffers start: the same Adam step over buffers allocated one
after another with NumPy (``np.empty``) and with ``fastopt.aligned_empty``
(as fastopt's optimizer classes and ``fastopt.torch.flatten_`` allocate:
64-byte aligned and coloured, see ``fastopt._placement``), paired round by
round in one run.

Group ``placement n={size} {threads}t, paired``: variants ``{state}
{placement}`` for float32 and bfloat16 moments; ``extra_info['times']``
holds each one's median, minimum and median per-round ratio to ``float32
state, placed`` (> 1 is slower).  Buffers allocated back to back lie about
their length apart; at lengths near a power of two the streams of one step
then share DRAM banks, which only the numpy variants show."""
import numpy as np

from bench import impls

ROUNDS = 15
LR = 1e-3
OURS = "float32 state, placed"


def _allocators():
    fastopt = impls.fastopt
    return {"numpy": np.empty, "placed": fastopt.aligned_empty}


def _state_dtypes():
    dtypes = {"float32": np.float32}
    try:
        import ml_dtypes
    except ImportError:
        return dtypes
    dtypes["bfloat16"] = ml_dtypes.bfloat16
    return dtypes


def _step(p0, g0, empty, state_dtype):
    """One Adam step's closure over p, g, m, v allocated in that order by ``empty``."""
    n = p0.size
    p, g, m, v = (empty(n, dt) for dt in (np.float32, np.float32, state_dtype, state_dtype))
    p[...], g[...], m[...], v[...] = p0, g0, 0, 0
    t = iter(range(1, 1 << 30))

    def step():
        impls.fastopt.adam_(p, g, m, v, step=next(t), lr=LR)
    return step


def test_adam_placement_paired(benchmark, thread_limit, size, threads):
    impls.skip_one_thread_sizes(size, threads)
    p0, g0 = impls.start(size)
    with thread_limit(threads):
        steps = {f"{state} state, {place}": _step(p0, g0, empty, dtype)
                 for state, dtype in _state_dtypes().items()
                 for place, empty in _allocators().items()}
        del p0, g0
        one_round, times = impls.round_robin(steps, seed=size + threads)
        benchmark.group = f"placement n={size} {threads}t, paired"
        benchmark.extra_info.update({"rule": "adam-placement", "impl": "one round",
                                     "size": size, "threads": threads, "paired": True})
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["times"] = impls.paired_times(times, ours=OURS)
