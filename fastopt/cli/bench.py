"""``fastopt bench``: run the benchmark suite of a source checkout (bench/) and
print its report."""
import os
import subprocess
import sys

import fastopt.cli._shared as _shared
from fastopt.cli._shared import CLIError


def add_parser(sub):
    b = _shared.add_command(
        sub, "bench", help="run the benchmark comparisons and print their table",
        description="Run bench/ (pytest-benchmark: fastopt against NumPy, PyTorch and "
                    "scikit-learn) from a source checkout, then print the markdown report "
                    "with the targets.",
        epilog="examples:\n  fastopt bench --quick\n"
               "  fastopt bench --markdown BENCHMARKS.md --png bench.png")
    b.add_argument("--quick", action="store_true",
                   help="sizes up to 1M, one thread, 6,000 training samples")
    b.add_argument("--source", default=".", metavar="DIR", help="the source checkout")
    b.add_argument("-k", metavar="EXPR", help="only benchmarks matching EXPR (pytest -k)")
    b.add_argument("--json", metavar="FILE", help="keep the raw pytest-benchmark JSON here")
    b.add_argument("--markdown", metavar="FILE", help="write the report here")
    b.add_argument("--png", metavar="FILE", help="write a chart of the speed-ups here")
    b.set_defaults(func=run)


def run(args):
    """Run the benchmark suite of a source checkout and print its report."""
    bench = os.path.join(args.source, "bench")
    if not os.path.isfile(os.path.join(bench, "report.py")):
        raise CLIError(f"{args.source}: no bench/ here; run `fastopt bench` from a fastopt "
                       f"source checkout (or pass --source DIR)")
    try:
        import pytest_benchmark  # noqa: F401
    except ImportError:
        raise CLIError("the benchmarks need pytest-benchmark: pip install "
                       "'fastopt[bench]'") from None
    out = args.json or os.path.join(args.source, ".benchmarks", "last.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", bench, "-q", "-p", "no:warnings",
           f"--benchmark-json={out}", "--benchmark-columns=median,iqr,rounds"]
    if args.quick:
        cmd += ["--sizes", "1000,71146,1048576", "--threads", "1", "--train-samples", "6000"]
    if args.k:
        cmd += ["-k", args.k]
    print("$ " + " ".join(cmd), flush=True)
    status = subprocess.call(cmd, cwd=args.source)
    if status not in (0, 5):
        raise CLIError(f"the benchmark run failed (pytest exit status {status})")
    report = [sys.executable, "-m", "bench.report", out]
    if args.markdown:
        report += ["--markdown", args.markdown]
    if args.png:
        report += ["--png", args.png]
    return subprocess.call(report, cwd=args.source)
