"""``fastopt info``: how fastopt was built, and one fused Adam step timed
against NumPy's."""
import time

import numpy as np

import fastopt
import fastopt.cli._shared as _shared


def add_parser(sub):
    i = sub.add_parser("info", help="show how fastopt was built; time one Adam step",
                       description=run.__doc__)
    i.add_argument("--size", type=_shared.positive_int, default=1 << 20)
    i.add_argument("--repeats", type=_shared.positive_int, default=20)
    i.set_defaults(func=run)


def run(args):
    """Print the build, then time one fused Adam step against NumPy."""
    print(f"fastopt {fastopt.__version__}")
    for key, value in fastopt.build_info().items():
        print(f"  {key:28s} {value}")
    n = args.size
    times = _time_adam(n, args.repeats)
    print(f"\nAdam step on {n:,} float32 elements (best of {args.repeats}):")
    for name, t in times.items():
        print(f"  {name:14s} {t * 1e3:8.3f} ms  {28 * n / t / 1e9:6.1f} GB/s effective")
    print(f"  speed-up over NumPy: {times['NumPy'] / times['fastopt.adam_']:.1f}x")
    return 0


def _time_adam(n, repeats):
    """Best time of one Adam step on ``n`` float32 elements: fastopt, NumPy."""
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)

    def numpy_adam(step, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, m=m, v=v, p=p):
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        p -= (lr / (1 - b1 ** step)) * m / (np.sqrt(v) / np.sqrt(1 - b2 ** step) + eps)

    times = {}
    for name, fn in (("fastopt.adam_", lambda s: fastopt.adam_(p, g, m, v, step=s)),
                     ("NumPy", numpy_adam)):
        best = float("inf")
        for rep in range(repeats):
            t0 = time.perf_counter()
            fn(rep + 1)
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    return times
