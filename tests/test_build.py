"""The compiled extension is really there, and says how it was built."""
import ast
import importlib.machinery
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastopt
from fastopt import _kernels


def test_extension_is_compiled():
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    assert _kernels.__file__.endswith(suffixes), _kernels.__file__
    assert type(fastopt.adam_).__name__ in ("cython_function_or_method", "builtin_function_or_method")


def test_build_info():
    info = fastopt.build_info()
    assert info["simd_used"] in info["simd_available"]
    assert set(info["simd_available"]) <= set(info["simd_compiled"])
    assert info["simd_available"][0] == "baseline"
    flags = info["compile_flags"].split()
    assert "-fno-math-errno" in flags or info["debug_build"]
    assert "-ffast-math" not in flags and "-march=native" not in flags
    assert isinstance(info["openmp"], bool) and info["max_threads"] >= 1
    assert info["numpy_version"] == np.__version__
    assert info["cython_version"][0].isdigit()
    assert info["compiler"]


def test_best_simd_level_is_used_by_default():
    # the default is the best level the CPU has, unless FASTOPT_SIMD lowers it
    if "FASTOPT_SIMD" not in os.environ:
        assert fastopt.build_info()["simd_used"] == _kernels.simd_levels()[-1]


def test_unknown_simd_level():
    import pytest

    with pytest.raises(ValueError, match="unknown SIMD level 'sse9'"):
        _kernels.set_simd_level("sse9")


def test_import_without_extension_fails_clearly(tmp_path):
    """A copy of the package without its compiled module raises ImportError
    that says how to build it; there is no pure-Python fallback."""
    src = os.path.dirname(fastopt.__file__)
    dst = tmp_path / "fastopt"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    code = "import fastopt"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "no pure-Python fallback" in proc.stderr and "pip install ." in proc.stderr


def test_type_stubs_cover_every_public_name_of_the_extension():
    """_kernels.pyi (shipped with the package) declares every public function
    and class of the compiled module, with the same parameter names."""
    stub = ast.parse((Path(_kernels.__file__).parent / "_kernels.pyi").read_text())
    declared = {node.name: node for node in stub.body
                if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    public = {name for name, obj in vars(_kernels).items()
              if not name.startswith("_") and (inspect.isbuiltin(obj) or inspect.isclass(obj)
                                              or callable(obj))
              and getattr(obj, "__module__", None) == "fastopt._kernels"}
    assert public - set(declared) == set()
    for name in public:
        node, obj = declared[name], getattr(_kernels, name)
        if isinstance(node, ast.FunctionDef):
            stub_params = [a.arg for a in node.args.args + node.args.kwonlyargs]
            try:
                real = list(inspect.signature(obj).parameters)
            except (TypeError, ValueError):
                continue
            real = [p for p in real if p not in ("args", "kwargs")]
            assert stub_params == real, name


def test_update_kernel_stubs_are_generated_from_the_rule_tables():
    """The update kernels' part of _kernels.pyi is what the tables that also
    generate their defs (fastopt/_ext/update_rules.py) give: a parameter
    added to a table cannot be missing from the stub."""
    source = Path(__file__).resolve().parents[1] / "fastopt" / "_ext" / "update_rules.py"
    rules = {"__name__": "update_rules"}  # run as setup.py runs it, leaving no __pycache__
    exec(compile(source.read_text(), str(source), "exec"), rules)
    stub = (Path(_kernels.__file__).parent / "_kernels.pyi").read_text()
    assert rules["stub_text"]() in stub


def _build_bench_tool(name, tmp_path):
    """Compile bench/<name>.c, which includes the kernel header itself, as its
    comment says to; skip without a C compiler or the source tree."""
    root = Path(__file__).resolve().parents[1]
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not (root / "fastopt" / "_ext" / "fastopt_kernels.h").exists():
        pytest.skip("needs a C compiler and the source tree")
    exe = tmp_path / name
    subprocess.run([cc, "-O2", "-fno-math-errno", "-ffp-contract=off", "-fopenmp",
                    str(root / "bench" / f"{name}.c"), "-o", str(exe), "-lm"],
                   check=True, capture_output=True)
    return exe


@pytest.mark.slow
def test_adam_floor_tool_builds_against_the_header_and_runs(tmp_path):
    """bench/adam_floor.c (the floor BENCHMARKS.md cites) must keep compiling
    as the header changes, and run at the SIMD level this CPU has.  Slow:
    compiling the whole header takes about a minute."""
    exe = _build_bench_tool("adam_floor", tmp_path)
    out = subprocess.run([str(exe), "4096"], check=True, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    rows = {line.split("  ")[1].strip(): float(line.split()[-2]) for line in out.splitlines()[1:]}
    assert set(rows) == {"fastopt", "no root", "traffic", "root only"}, out
    assert all(ns > 0 for ns in rows.values()), out
    assert subprocess.run([str(exe), "0"], capture_output=True).returncode == 2


@pytest.mark.slow
def test_lowp_overlap_tool_builds_against_the_header_and_runs(tmp_path):
    """bench/lowp_overlap.c (the floor docs/low_precision.md cites for issue
    21) keeps compiling and prints, per state format, its five times and the
    two fractions of the float32 step (float32's own is 1), on one thread
    and on two with the traffic loop's prefetch."""
    exe = _build_bench_tool("lowp_overlap", tmp_path)
    for threads, traffic_prefetch in ((1, 0), (2, 1)):
        # 262,144 elements: fo_run's threshold for more than one thread
        out = subprocess.run([str(exe), "262144", "1", str(threads), str(traffic_prefetch)],
                             check=True, capture_output=True, text=True).stdout
        assert f"{threads} thread(s)" in out, out
        rows = {line.split()[0]: [float(x) for x in line.split()[1:]]
                for line in out.splitlines()[2:]}
        assert set(rows) == {"float32", "bfloat16", "8-bit"}, out
        assert all(len(r) == 7 and all(x > 0 for x in r) for r in rows.values()), out
        assert rows["float32"][6] == 1.0, out
    for bad in (["100"], ["65536", "1", "0"]):
        assert subprocess.run([str(exe), *bad], capture_output=True).returncode == 2
