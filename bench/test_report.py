"""Tests of bench/report.py, the code that turns a run into published claims.

These check the report's arithmetic on hand-made runs whose answers are
known, and that BENCHMARKS.md's targets table is what the report makes of
the run published beside it (bench/results/latest-run.json).  No timing is measured
or asserted here.
"""
import json
import pathlib
import re

import pytest

from bench import report

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _bench(group, impl, median, minimum=None, **info):
    """One pytest-benchmark entry, as --benchmark-json writes it."""
    return {"group": group, "name": f"test[{impl}]",
            "extra_info": {"impl": impl, **info},
            "stats": {"median": median, "min": median if minimum is None else minimum}}


def _paired(group, times, **info):
    """A paired entry: per implementation its median, min and per-round ratio."""
    return {"group": group, "name": "test_step_paired",
            "extra_info": {"impl": "one round", "paired": True, **info, "times": times},
            "stats": {"median": 1.0, "min": 1.0}}


def _load(tmp_path, benchmarks, machine_info=None):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"machine_info": machine_info or {}, "benchmarks": benchmarks}))
    return report.load(str(path))


def _targets(groups):
    return {text: (value, best, ok)
            for text, value, best, ok in report.targets(groups, report.copy_bandwidth(groups))}


def test_load_keeps_median_min_and_extra_info(tmp_path):
    _, groups = _load(tmp_path, [_bench("g", "fastopt", 2e-6, 1e-6, bytes=100),
                                 _bench("g", "numpy", 8e-6, 5e-6)])
    assert groups["g"]["fastopt"] == {"median": 2e-6, "min": 1e-6, "impl": "fastopt",
                                      "bytes": 100}
    assert report._ratio(groups, "g", "numpy") == pytest.approx(4.0)
    assert report._ratio(groups, "g", "numpy", stat="min") == pytest.approx(5.0)
    assert report._ratio(groups, "g", "torch-fused") is None


def test_paired_entry_expands_into_one_entry_per_implementation(tmp_path):
    times = {"fastopt": {"median": 1.0, "min": 0.9, "ratio": 1.0, "bytes": 28},
             "torch-fused": {"median": 1.5, "min": 1.8, "ratio": 1.2, "bytes": 28}}
    _, groups = _load(tmp_path, [_paired("adam n=64 1t, paired", times, size=64)])
    g = groups["adam n=64 1t, paired"]
    assert set(g) == {"fastopt", "torch-fused"}
    assert g["torch-fused"]["median"] == 1.5 and g["torch-fused"]["size"] == 64
    assert "times" not in g["torch-fused"] and "impl" not in g["torch-fused"]
    # the median of the per-round ratios, not the ratio of the medians (1.5)
    assert report._ratio(groups, "adam n=64 1t, paired", "torch-fused") == 1.2
    # from the fastest rounds: the ratio of the minimums
    assert report._ratio(groups, "adam n=64 1t, paired", "torch-fused",
                         stat="min") == pytest.approx(2.0)
    assert "median of the per-round" in report.group_table("adam n=64 1t, paired", g, None)


@pytest.mark.parametrize("numpy_time, met", [(30.0, True), (29.9, False)])
def test_a_target_is_met_from_its_threshold_on(tmp_path, numpy_time, met):
    _, groups = _load(tmp_path, [_bench("adam n=71146 1t", "fastopt", 3.0, 2.0),
                                 _bench("adam n=71146 1t", "numpy", numpy_time, 40.0)])
    value, best, ok = _targets(groups)["1. Adam, one 71,146 array: >= 10x the NumPy reference"]
    assert ok is met
    assert value == f"{numpy_time / 3.0:.2f}x" and best == "20.00x"


def test_unmeasured_targets_say_so(tmp_path):
    _, groups = _load(tmp_path, [_bench("adam n=71146 1t", "fastopt", 1.0)])
    rows = _targets(groups)
    assert rows["1. Adam, one 71,146 array: >= 3x torch fused"] == ("not measured", "", None)
    assert rows["6. epoch at batch 32: >= 3x torch-eager"] == ("not measured", "", None)
    assert "| 1. Adam, one 71,146 array: >= 3x torch fused | not measured |  | — |" in \
        report.markdown({}, groups)


def test_bandwidth_target_against_the_copy_bandwidth_of_the_same_run(tmp_path):
    n = 1 << 26
    _, groups = _load(tmp_path, [
        _bench("copy bandwidth", "np.copyto", 0.1, bytes=12 * n),           # 8.05 GB/s
        _bench("adam n=67108864 1t", "fastopt", 0.25, bytes=28 * n, size=n),  # 7.52 GB/s
        _bench("adam n=67108864 1t", "torch-fused", 0.24, bytes=28 * n, size=n)])
    copy_gbs = report.copy_bandwidth(groups)
    assert copy_gbs == pytest.approx(12 * n / 0.1 / 1e9)
    rows = _targets(groups)
    value, _, ok = rows["3. Adam on 64M, 1 thread(s): >= 95% of copy bandwidth"]
    assert (value, ok) == ("93%", False)  # 28/12 * 0.1/0.25 = 0.933
    assert rows["3. Adam on 64M, 1 thread(s): not slower than torch fused"] == \
        ("0.96x", "0.96x", False)
    table = report.group_table("adam n=67108864 1t", groups["adam n=67108864 1t"], copy_gbs)
    assert "| fastopt | 250.00 ms | 1.00x | 7.5 (93% of copy) |  |" in table
    assert "| torch-fused | 240.00 ms | 0.96x | 7.8 (97% of copy) |  |" in table
    # below 16M elements the buffers sit in cache: no share of the copy bandwidth
    small = {"fastopt": {"median": 1e-3, "min": 1e-3, "bytes": 28 << 20, "size": 1 << 20}}
    assert "| fastopt | 1.00 ms | 1.00x | 29.4 |  |" in \
        report.group_table("adam n=1048576 1t", small, copy_gbs)


def test_rule_target_takes_torchs_fastest_path(tmp_path):
    g = "sgd n=1048576 1t"
    _, groups = _load(tmp_path, [_bench(g, "fastopt", 1.0), _bench(g, "numpy", 5.0),
                                 _bench(g, "torch-fused", 1.1), _bench(g, "torch-foreach", 0.9),
                                 _bench(g, "torch-forloop", 3.0)])
    rows = _targets(groups)
    assert rows["4. sgd on 1M: at least as fast as torch's fastest CPU path"] == \
        ("0.90x", "0.90x", False)
    assert rows["4. sgd on 1M: >= 5x the NumPy reference"] == ("5.00x", "5.00x", True)


@pytest.mark.parametrize("theirs, met", [(0.9495, True), (0.9505, False)])
def test_accuracy_no_worse_within_one_point(tmp_path, theirs, met):
    g = "MNIST epoch, batch 32, 60000 samples, 1t"
    _, groups = _load(tmp_path, [_bench(g, "fastopt", 1.0, test_accuracy=0.9401),
                                 _bench(g, "sklearn", 4.0, test_accuracy=theirs)])
    rows = _targets(groups)
    assert rows["6. epoch at batch 32: >= 4x sklearn"][2] is True
    assert rows["6. batch 32: accuracy no worse (within 1 point)"][2] is met


def test_chart_shows_each_comparison_once(tmp_path):
    times = {"fastopt": {"median": 1.0, "min": 1.0, "ratio": 1.0},
             "torch-fused": {"median": 2.0, "min": 2.0, "ratio": 2.0}}
    _, groups = _load(tmp_path, [_bench("adam n=1000 1t", "fastopt", 1.0),
                                 _bench("adam n=1000 1t", "fastopt-bound", 0.5),
                                 _bench("adam n=1000 1t", "numpy", 4.0),
                                 _bench("adam n=1000 1t", "torch-fused", 3.0),
                                 _bench("copy bandwidth", "np.copyto", 1.0, bytes=12),
                                 _paired("adam n=1000 1t, paired", times)])
    # against the fastest *other* implementation; fastopt-bound is ours
    assert report.speedups(groups) == [("adam n=1000 1t", 3.0)]
    pytest.importorskip("matplotlib")
    png = tmp_path / "chart.png"
    report.chart(groups, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _sections(text):
    parts = re.split(r"^## (.*)$", text, flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def test_benchmarks_md_is_the_report_of_the_published_run():
    """Every section the report makes of bench/results/latest-run.json (machine,
    targets, all comparisons) stands verbatim in BENCHMARKS.md: the numbers
    published are the numbers of the run published beside them."""
    data, groups = report.load(str(ROOT / "bench" / "results" / "latest-run.json"))
    generated = _sections(report.markdown(data, groups))
    assert set(generated) == {"Machine and versions", "Targets", "All comparisons"}
    assert generated["Targets"].count("\n| ") > 30
    published = _sections((ROOT / "BENCHMARKS.md").read_text())
    for heading, text in generated.items():
        assert published.get(heading) == text, f"BENCHMARKS.md's {heading!r} section"


def test_main_writes_markdown(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": [
        _bench("adam n=1000 1t", "fastopt", 1e-6), _bench("adam n=1000 1t", "numpy", 5e-6)]}))
    out = tmp_path / "report.md"
    assert report.main([str(path), "--markdown", str(out)]) == 0
    text = out.read_text()
    assert "| 2. Adam on 1,000 elements: < 2 µs per call (fastopt.adam_) | 1.00 µs | 1.00 µs " \
           "| yes |" in text
    assert "| numpy | 5.00 µs | 5.00x |  |  |" in text


def test_torch_targets_read_the_paired_torch_groups(tmp_path):
    """Issue #17's rows: ratios to fastopt-flat (the groups' reference) and,
    for fot.Adam without flatten_, the quotient of the two per-round ratios."""
    seed = "torch Adam step, seed model (10 tensors), paired"
    times = {"fastopt-flat": {"median": 1e-5, "min": 1e-5, "ratio": 1.0},
             "fastopt": {"median": 2e-5, "min": 2e-5, "ratio": 2.0},
             "torch-fused": {"median": 6e-5, "min": 5e-5, "ratio": 6.0},
             "deepspeed": {"median": 2.5e-5, "min": 2e-5, "ratio": 2.5}}
    _, groups = _load(tmp_path, [_paired(seed, times)])
    rows = _targets(groups)
    assert rows["7. torch Adam step, seed model: fot.Adam after flatten_ >= 5x torch-fused"] == \
        ("6.00x", "5.00x", True)
    assert rows["7. torch Adam step, seed model: fot.Adam after flatten_ >= 3x deepspeed"] == \
        ("2.50x", "2.00x", False)
    assert rows["7. torch Adam step, seed model: fot.Adam without flatten_ >= 2x torch-fused"] \
        == ("3.00x", "2.50x", True)
    assert rows["7. torch epoch, seed MLP batch 32: fastopt-flat >= 1.5x torch-forloop"] == \
        ("not measured", "", None)
    # a run without the torch groups has no such rows (the published report)
    _, groups = _load(tmp_path, [_bench("adam n=1000 1t", "fastopt", 1e-6)])
    assert not any(text.startswith("7.") for text in _targets(groups))


def test_lowp_targets_read_the_paired_low_precision_groups(tmp_path):
    """Issue #21's rows: each per-round ratio to fp32 (the groups'
    reference) turned into how many times faster the low-precision variant
    is, and against torch and DeepSpeed the quotient of two ratios."""
    group = "adam-lowp n=16777216 2t, paired"
    times = {"fp32": {"median": 1.0, "min": 1.0, "ratio": 1.0},
             "bf16-state": {"median": 0.8, "min": 0.7, "ratio": 0.8},
             "int8-state": {"median": 0.5, "min": 0.5, "ratio": 0.5},
             "bf16-grad+bf16-copy": {"median": 1.1, "min": 1.1, "ratio": 1.1},
             "torch-fused-fp32": {"median": 1.2, "min": 1.2, "ratio": 1.2}}
    _, groups = _load(tmp_path, [_paired(group, times)])
    rows = _targets(groups)
    assert rows["8. Adam n=16777216 2t: bf16 state >= 1.35x fp32"] == ("1.25x", "1.43x", False)
    assert rows["8. Adam n=16777216 2t: bf16 state >= 1.3x torch-fused-fp32"] == \
        ("1.50x", "1.71x", True)
    assert rows["8. Adam n=16777216 2t: bf16 state >= 1.3x deepspeed-fp32"] == \
        ("not measured", "", None)
    assert rows["8. Adam n=16777216 2t: 8-bit state >= 1.6x fp32"] == ("2.00x", "2.00x", True)
    assert rows["8. Adam n=16777216 2t: bf16 gradient + bf16 copy at least as fast as fp32"] \
        == ("0.91x", "0.91x", False)
    _, groups = _load(tmp_path, [_bench("adam n=1000 1t", "fastopt", 1e-6)])
    assert not any(text.startswith("8.") for text in _targets(groups))
