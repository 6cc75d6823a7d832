"""Software prefetch on and off, for every rule, on the CPU at hand.

fastopt chooses at import whether the update rules prefetch ahead on long
buffers (on for Intel, off for AMD and others; ``build_info()['prefetch']``).
This benchmark shows whether that choice is right here: each round runs the
same step with the CPU's default setting ("fastopt") and with the other one,
in a shuffled order, so a drifting host cannot decide the comparison.  The
report reads these groups as paired groups ("vs fastopt" above 1 means the
other setting is slower).  Results are bit-identical either way (checked).
"""

import numpy as np
import pytest

from bench import impls
from fastopt import _kernels

ROUNDS = 25


@pytest.mark.parametrize("rule", impls.RULES)
def test_prefetch_paired(benchmark, thread_limit, request, rule, size, threads):
    if size < _kernels.build_info()["prefetch_min_elements"]:
        pytest.skip("buffers this short are never prefetched")
    default = _kernels.build_info()["prefetch"]
    other = f"fastopt, prefetch {'off' if default else 'on'}"
    p0, g0 = impls.start(size)
    steps, results = {}, {}
    for name, setting in (("fastopt", default), (other, not default)):
        step, result = impls.make_fastopt(rule, p0, g0)
        steps[name] = impls.with_setting(step, _kernels.set_prefetch, setting, default)
        results[name] = result
    with thread_limit(threads):
        one_round, times = impls.round_robin(steps, seed=size + threads)
        benchmark.group = f"prefetch: {rule} n={size} {threads}t, paired"
        benchmark.extra_info.update({"rule": rule, "impl": "one round", "size": size,
                                     "threads": threads, "paired": True,
                                     "prefetch_default": default})
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    np.testing.assert_array_equal(results["fastopt"](), results[other]())
    benchmark.extra_info["times"] = impls.paired_times(times, bytes=impls.BYTES[rule] * size)
