"""Turn a pytest-benchmark JSON file into a markdown report and a PNG chart.

    python -m bench.report bench.json [--markdown out.md] [--png out.png]

For every group (one comparison) it lists each implementation's median
time, how many times slower than fastopt it is, and, for optimizer steps,
the effective bandwidth (the rule's traffic floor in bytes / median time)
against the copy bandwidth measured in the same run.  Then it evaluates the
speed targets of the benchmark issue, each as met or not, from the ratios.
"""
import argparse
import json
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(dict)
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        if info.get("paired"):  # one entry per implementation, from its own timings
            common = {k: v for k, v in info.items() if k not in ("times", "impl")}
            for impl, t in info.get("times", {}).items():
                groups[b["group"]][impl] = {**common, **t}
            continue
        impl = info.get("impl") or b["name"]
        groups[b["group"]][impl] = {"median": b["stats"]["median"], "min": b["stats"]["min"],
                                    **info}
    return data, groups


def _paired(entries):
    return any(e.get("paired") for e in entries.values())


def copy_bandwidth(groups):
    for impl in groups.get("copy bandwidth", {}).values():
        return impl["bytes"] / impl["median"] / 1e9
    return None


def _fmt_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _ours(entries):
    return next((entries[k] for k in ("fastopt", "fastopt-flat") if k in entries), None)


def group_table(name, entries, copy_gbs):
    ours = _ours(entries)
    lines = [f"**{name}**", ""]
    if _paired(entries):
        lines += ["Alternated round by round; 'vs fastopt' is the median of the per-round "
                  "ratios.", ""]
    lines += ["| implementation | median | vs fastopt | effective GB/s | note |",
              "|---|---:|---:|---:|---|"]
    for impl, e in sorted(entries.items(), key=lambda kv: kv[1]["median"]):
        ratio = e["ratio"] if "ratio" in e else e["median"] / ours["median"] if ours else None
        ratio = "" if ratio is None else f"{ratio:.2f}x"
        gbs = ""
        if "bytes" in e and name != "copy bandwidth":
            gbs = f"{e['bytes'] / e['median'] / 1e9:.1f}"
            if copy_gbs and e.get("size", 0) >= 1 << 24:
                gbs += f" ({e['bytes'] / e['median'] / 1e9 / copy_gbs:.0%} of copy)"
        note = ""
        if "test_accuracy" in e:
            seeds = len(e.get("test_accuracies", [])) or 1
            note = f"test accuracy {e['test_accuracy']:.4f}"
            if seeds > 1:
                note += f" (mean of {seeds} seeds)"
        lines.append(f"| {impl} | {_fmt_time(e['median'])} | {ratio} | {gbs} | {note} |")
    return "\n".join(lines) + "\n"


def _ratio(groups, group, other, ours="fastopt", stat="median"):
    """other's time over ours; in a paired group, the median of the per-round
    ratios (stat "median") or the ratio of the fastest rounds (stat "min")"""
    g = groups.get(group, {})
    if other in g and ours in g:
        if stat == "median" and "ratio" in g[other]:
            # both per-round ratios are to the group's reference (1.0 for itself)
            return g[other]["ratio"] / g[ours]["ratio"]
        return g[other][stat] / g[ours][stat]
    return None


def targets(groups, copy_gbs):
    """(target, measured, from minimums, met) rows for the benchmark issue's
    targets.  Each target is a function of the statistic (median or min);
    it is met or not on the medians, and the same figure from the fastest
    rounds is shown beside it, for a sense of the host's noise."""
    rows = []

    def add(text, measure, ok, fmt="{:.2f}x"):
        value = measure("median")
        if value is None:
            rows.append((text, "not measured", "", None))
        else:
            rows.append((text, fmt.format(value), fmt.format(measure("min")), ok(value)))

    def vs(group, other, ours="fastopt"):
        """other's time over ours in ``group``, as a function of the statistic"""
        return lambda stat: _ratio(groups, group, other, ours, stat)

    seed = "adam seed-model (10 tensors, 71146) 1t"
    add("1. Adam, seed model: flat fastopt >= 4x torch fused over 10 tensors",
        vs(seed, "torch-fused", "fastopt-flat"), lambda r: r >= 4)
    add("1. Adam, one 71,146 array: >= 3x torch fused",
        vs("adam n=71146 1t", "torch-fused"), lambda r: r >= 3)
    add("1. Adam, one 71,146 array: >= 10x the NumPy reference",
        vs("adam n=71146 1t", "numpy"), lambda r: r >= 10)
    g = groups.get("adam n=1000 1t", {})
    for impl, how in (("fastopt", "fastopt.adam_"), ("fastopt-bound", "fastopt.bind")):
        add(f"2. Adam on 1,000 elements: < 2 µs per call ({how})",
            lambda s, impl=impl: g[impl][s] * 1e6 if impl in g else None, lambda t: t < 2,
            "{:.2f} µs")
    for threads in (1, 2):
        grp = f"adam n=67108864 {threads}t"
        e = groups.get(grp, {}).get("fastopt")
        add(f"3. Adam on 64M, {threads} thread(s): >= 95% of copy bandwidth",
            lambda s, e=e: e["bytes"] / e[s] / 1e9 / copy_gbs if e and copy_gbs else None,
            lambda r: r >= 0.95, "{:.0%}")
        add(f"3. Adam on 64M, {threads} thread(s): not slower than torch fused",
            vs(grp, "torch-fused"), lambda r: r >= 1)
        add("3. ... the same, alternated round by round (paired group)",
            vs(f"{grp}, paired", "torch-fused"), lambda r: r >= 1)
    for rule in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "amsgrad"):
        grp = f"{rule} n=1048576 1t"
        g = groups.get(grp, {})

        def torch_best(s, g=g):
            best = min((e[s] for k, e in g.items() if k.startswith("torch")), default=None)
            return best / g["fastopt"][s] if best and "fastopt" in g else None

        add(f"4. {rule} on 1M: at least as fast as torch's fastest CPU path", torch_best,
            lambda r: r >= 1)
        add(f"4. {rule} on 1M: >= 5x the NumPy reference", vs(grp, "numpy"), lambda r: r >= 5)
    for shape in ("32x10", "4096x10"):
        grp = f"softmax cross-entropy {shape} 1t"
        add(f"5. cross-entropy {shape}: >= 3x torch forward+backward", vs(grp, "torch"),
            lambda r: r >= 3)
        add(f"5. cross-entropy {shape}: >= 3x NumPy", vs(grp, "numpy"), lambda r: r >= 3)
    epoch = {b: next((k for k in groups if k.startswith(f"MNIST epoch, batch {b},")), None)
             for b in (1, 32, 128)}
    for batch, other, need in ((32, "torch-eager", 3), (32, "sklearn", 4), (1, "torch-eager", 10),
                               (128, "torch-eager", 1.5)):
        add(f"6. epoch at batch {batch}: >= {need}x {other}", vs(epoch[batch], other),
            lambda r, need=need: r >= need)
    for batch in (1, 32, 128):
        g = groups.get(epoch[batch] or "", {})
        if "fastopt" in g:
            worse = [k for k, e in g.items() if k != "fastopt"
                     and e.get("test_accuracy", 0) > g["fastopt"].get("test_accuracy", 0) + 0.01]
            rows.append((f"6. batch {batch}: accuracy no worse (within 1 point)",
                         ", ".join(f"{k} {e.get('test_accuracy', 0):.4f}"
                                   for k, e in sorted(g.items())), "", not worse))
    torch_targets(groups, add, vs)
    lowp_targets(groups, add, vs)
    return rows


def torch_targets(groups, add, vs):
    """Issue #17's targets for fastopt.torch (paired groups of
    bench/test_torch_optim.py, one thread); none for a run without them."""
    seed = next((k for k in groups if k.startswith("torch Adam step, seed model")), "")
    big = next((k for k in groups if k.startswith("torch Adam step, 25M")), "")
    epoch = "torch epoch, seed MLP batch 32, paired"
    if not (seed or big or epoch in groups):
        return
    for other, need in (("torch-fused", 5), ("deepspeed", 3), ("deepspeed-adamw", 3)):
        add(f"7. torch Adam step, seed model: fot.Adam after flatten_ >= {need}x {other}",
            vs(seed, other, "fastopt-flat"), lambda r, need=need: r >= need)
    add("7. torch Adam step, seed model: fot.Adam without flatten_ >= 2x torch-fused",
        vs(seed, "torch-fused", "fastopt"), lambda r: r >= 2)
    for ours in ("fastopt-flat", "fastopt"):
        for other in ("torch-fused", "deepspeed", "deepspeed-adamw"):
            add(f"7. torch Adam step, 25M/150 tensors: {ours} at least as fast as {other}",
                vs(big, other, ours), lambda r: r >= 1)
    for ours in ("fastopt-flat", "fastopt"):
        for other, need in (("torch-forloop", 1.5), ("torch-fused", 1.1)):
            add(f"7. torch epoch, seed MLP batch 32: {ours} >= {need}x {other}",
                vs(epoch, other, ours), lambda r, need=need: r >= need)


def lowp_targets(groups, add, vs):
    """Issue #21's targets for low-precision Adam (paired groups of
    bench/test_lowp.py, each size and thread count); none for a run
    without them."""
    for grp in sorted(k for k in groups if k.startswith("adam-lowp ")):
        where = grp.removeprefix("adam-lowp ").removesuffix(", paired")
        for other, need in (("fp32", 1.35), ("torch-fused-fp32", 1.3), ("deepspeed-fp32", 1.3)):
            add(f"8. Adam {where}: bf16 state >= {need}x {other}",
                vs(grp, other, "bf16-state"), lambda r, need=need: r >= need)
        add(f"8. Adam {where}: 8-bit state >= 1.6x fp32", vs(grp, "fp32", "int8-state"),
            lambda r: r >= 1.6)
        add(f"8. Adam {where}: bf16 gradient + bf16 copy at least as fast as fp32",
            vs(grp, "fp32", "bf16-grad+bf16-copy"), lambda r: r >= 1)


def markdown(data, groups):
    m = data.get("machine_info", {})
    build = m.get("fastopt_build", {})
    copy_gbs = copy_bandwidth(groups)
    out = ["## Machine and versions", "",
           f"- CPU: {m.get('cpu', {}).get('brand_raw', '?')}, {m.get('nproc', '?')} cores; "
           f"Python {m.get('python_version', '?')}",
           f"- fastopt kernels: {build.get('simd_used', '?')} (compiled: "
           f"{', '.join(build.get('simd_compiled', []))}), OpenMP {build.get('openmp')}, "
           f"{build.get('compiler', '?')}; NumPy {build.get('numpy_version', '?')}; "
           f"torch {m.get('torch')}",
           f"- copy bandwidth (np.copyto, 12 B/element): "
           f"{copy_gbs:.1f} GB/s" if copy_gbs else "- copy bandwidth: not measured",
           "- times are medians; 'vs fastopt' is how many times longer than fastopt",
           "", "## Targets", "",
           "Met or not on the medians; *from minimums* is the same figure from each",
           "implementation's fastest round.", "",
           "| target | measured | from minimums | met |", "|---|---|---|---|"]
    for text, value, best, ok in targets(groups, copy_gbs):
        out.append(f"| {text} | {value} | {best} | "
                   f"{'—' if ok is None else ('yes' if ok else 'NO')} |")
    out += ["", "## All comparisons", ""]
    for name in sorted(groups, key=_group_key):
        out.append(group_table(name, groups[name], copy_gbs))
    return "\n".join(out)


def _group_key(name):
    parts = name.replace("n=", "").split()
    size = next((int(p) for p in parts if p.isdigit()), 0)
    return (parts[0], size, name)


def speedups(groups):
    """(group, fastopt's speed-up over the fastest other implementation) for
    every group that has both, in report order.  Paired groups are left out:
    they repeat a sequential group, and the chart shows each comparison once."""
    rows = []
    for name in sorted(groups, key=_group_key):
        entries = groups[name]
        ours = _ours(entries)
        if not ours or _paired(entries):
            continue
        others = [e["median"] for k, e in entries.items() if not k.startswith("fastopt")]
        if others:
            rows.append((name, min(others) / ours["median"]))
    return rows


def chart(groups, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = speedups(groups)
    names = [name for name, _ in rows]
    values = [value for _, value in rows]
    fig, ax = plt.subplots(figsize=(9, max(3, 0.22 * len(names))))
    ax.barh(range(len(names)), values, color=["tab:green" if v >= 1 else "tab:red"
                                              for v in values])
    ax.axvline(1, color="black", lw=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("fastopt speed-up over the fastest other implementation (log scale)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--markdown", help="write the report here (default: stdout)")
    parser.add_argument("--png", help="write a chart of the speed-ups here")
    args = parser.parse_args(argv)
    data, groups = load(args.json)
    text = markdown(data, groups)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    if args.png:
        chart(groups, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
