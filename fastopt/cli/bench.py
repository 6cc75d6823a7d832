"""``fastopt bench``: run the benchmark suite of a source checkout (bench/) and
print its report.

pytest runs in a child process whose working directory is bench/ itself, with
``--import-mode=importlib``, so neither the checkout's root nor its unbuilt
``fastopt/`` folder is on ``sys.path``: the benchmarks import the installed
package, as the tests do."""
import os
import shlex
import subprocess
import sys

import fastopt
import fastopt.cli._shared as _shared
from fastopt.cli._shared import CLIError

QUICK = ["--sizes", "1000,71146,1048576", "--threads", "1", "--train-samples", "6000"]


def add_parser(sub):
    b = _shared.add_command(
        sub, "bench", help="run the benchmark comparisons and print their table",
        description="Run bench/ (pytest-benchmark: fastopt against NumPy, PyTorch and "
                    "scikit-learn) from a source checkout, then print the markdown report "
                    "with the targets. bench/ is looked for in --source DIR, else in the "
                    "current directory and beside the installed fastopt package (a wheel "
                    "install has no benchmarks).",
        epilog="examples:\n  fastopt bench --quick\n"
               "  fastopt bench --list --quick\n"
               "  fastopt bench --markdown BENCHMARKS.md --png bench.png")
    b.add_argument("--quick", action="store_true",
                   help="sizes up to 1M, one thread, 6,000 training samples")
    b.add_argument("--list", action="store_true",
                   help="list the benchmarks that would run (pytest --collect-only), "
                        "run none")
    b.add_argument("--source", metavar="DIR", help="the source checkout (default: the "
                                                   "current directory, else the one "
                                                   "fastopt is installed from)")
    b.add_argument("-k", metavar="EXPR", help="only benchmarks matching EXPR (pytest -k)")
    b.add_argument("--json", metavar="FILE", help="keep the raw pytest-benchmark JSON here")
    b.add_argument("--markdown", metavar="FILE", help="write the report here")
    b.add_argument("--png", metavar="FILE", help="write a chart of the speed-ups here")
    b.set_defaults(func=run)


def run(args):
    """Run the benchmark suite of a source checkout and print its report."""
    bench = find_bench(args.source)
    try:
        import pytest_benchmark  # noqa: F401
    except ImportError:
        raise CLIError("the benchmarks need pytest-benchmark: pip install "
                       "'fastopt[bench]'") from None
    out = os.path.abspath(args.json or os.path.join(bench, os.pardir, ".benchmarks",
                                                    "last.json"))
    status = _call(_pytest_command(bench, out, args), bench)
    if args.list or status not in (0, 5):
        if status == 0:
            return 0
        raise CLIError(f"the benchmark run failed (pytest exit status {status})")
    report = [sys.executable, os.path.join(bench, "report.py"), out]
    if args.markdown:
        report += ["--markdown", os.path.abspath(args.markdown)]
    if args.png:
        report += ["--png", os.path.abspath(args.png)]
    return subprocess.call(report, cwd=bench)


def find_bench(source):
    """The absolute path of bench/ in ``source``, else in the current directory or
    beside the installed package; CLIError naming where it looked."""
    if source is not None:
        places = [source]
    else:
        installed_from = os.path.dirname(os.path.dirname(os.path.abspath(fastopt.__file__)))
        places = list(dict.fromkeys([os.getcwd(), installed_from]))
    candidates = [os.path.abspath(os.path.join(place, "bench")) for place in places]
    for bench in candidates:
        if os.path.isfile(os.path.join(bench, "report.py")) and \
                os.path.isfile(os.path.join(bench, "conftest.py")):
            return bench
    raise CLIError(f"no bench/ here: looked for {' and '.join(candidates)}; run `fastopt "
                   f"bench` from a fastopt source checkout, or pass --source DIR (an "
                   f"installed wheel has no benchmarks)")


def _pytest_command(bench, out, args):
    cmd = [sys.executable, "-m", "pytest", bench, "-q", "-p", "no:warnings",
           "-p", "no:cacheprovider", "--import-mode=importlib"]
    if args.list:
        cmd.append("--collect-only")
    else:
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cmd += [f"--benchmark-json={out}", "--benchmark-columns=median,iqr,rounds"]
    if args.quick:
        cmd += QUICK
    if args.k:
        cmd += ["-k", args.k]
    return cmd


def _call(cmd, cwd):
    """Run ``cmd`` in ``cwd`` after showing it; its exit status."""
    print(f"$ cd {shlex.quote(cwd)} && {shlex.join(cmd)}", flush=True)
    return subprocess.call(cmd, cwd=cwd)
