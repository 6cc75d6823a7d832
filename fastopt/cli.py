"""The ``fastopt`` command line (also ``python -m fastopt``)."""
import argparse
import json
import sys
import time

import numpy as np

import fastopt


def _cmd_info(args):
    """Print the build, then time one fused Adam step against NumPy."""
    info = fastopt.build_info()
    print(f"fastopt {fastopt.__version__}")
    for key, value in info.items():
        print(f"  {key:28s} {value}")
    n = args.size
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)

    def numpy_adam(p, g, m, v, step, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - b2**step) + eps
        p -= (lr / (1 - b1**step)) * m / denom

    times = {}
    for name, fn in (("fastopt.adam_", lambda s: fastopt.adam_(p, g, m, v, step=s)),
                     ("NumPy", lambda s: numpy_adam(p, g, m, v, s))):
        best = float("inf")
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            fn(rep + 1)
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    print(f"\nAdam step on {n:,} float32 elements (best of {args.repeats}, "
          f"{info['max_threads']} thread(s) available):")
    for name, t in times.items():
        print(f"  {name:14s} {t * 1e3:8.3f} ms  {28 * n / t / 1e9:6.1f} GB/s effective")
    print(f"  speed-up over NumPy: {times['NumPy'] / times['fastopt.adam_']:.1f}x")
    if args.json:
        print(json.dumps(info))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastopt",
        description="Fused in-place optimizer kernels for NumPy float32 buffers.",
        epilog="examples:\n  fastopt info\n  fastopt info --size 16000000",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    info = sub.add_parser("info", help="show how fastopt was built and time one Adam step",
                          description=_cmd_info.__doc__)
    info.add_argument("--size", type=int, default=1 << 20, help="elements (default 1048576)")
    info.add_argument("--repeats", type=int, default=20, help="timed repeats (default 20)")
    info.add_argument("--json", action="store_true", help="also print build info as JSON")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["info"] + list(argv or []))
    if getattr(args, "size", 1) < 1 or getattr(args, "repeats", 1) < 1:
        parser.error("--size and --repeats must be positive")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
