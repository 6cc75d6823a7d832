"""``fastopt search``: grid, random or Bayesian hyperparameter search through
:mod:`fastopt.search`, each configuration scored on a validation split (never
the test set); the best one is retrained on the whole training set and tested."""
import argparse

import fastopt.cli._shared as _shared
from fastopt import search as fsearch
from fastopt._validate import check_int, check_number
from fastopt.cli._shared import CLIError

# --param NAME -> how one of its values is read (any other name: int, float,
# true/false or text, whichever reads)
SEARCH_PARAMS = {"lr": float, "learning_rate": float, "batch_size": int, "optimizer": str,
                 "hidden": _shared.hidden_sizes, "activation": str, "epochs": int}
DEFAULT_SPACE = {"lr": [1e-3, 3e-3], "optimizer": ["adam", "rmsprop"]}
_RANGES = {"log": fsearch.LogUniform, "uniform": fsearch.Uniform, "int": fsearch.Int}


def add_parser(sub):
    s = _shared.add_command(
        sub, "search", help="grid, random or Bayesian hyperparameter search",
        description="Search any compile, fit, MLP or optimizer argument (lr, batch_size, "
                    "optimizer, hidden, activation, momentum, beta_1, weight_decay, epochs...), "
                    "scoring each configuration on a validation split (never the test set); "
                    "the best one is retrained on the whole training set and tested. "
                    "--method bayes needs Optuna: pip install 'fastopt[search]'.",
        epilog="examples:\n"
               "  fastopt search --param lr=1e-3,3e-3 --param optimizer=adam,sgd\n"
               "  fastopt search --method random --trials 8 --param lr=log:1e-4:1e-2 "
               "--param hidden=64,128-64\n"
               "  fastopt search --method bayes --trials 20 --param lr=log:1e-4:1e-1 "
               "--param optimizer=sgd --param momentum=uniform:0:0.95 "
               "--param batch_size=int:16:256\n")
    s.add_argument("--method", choices=fsearch.METHODS, default="grid")
    s.add_argument("--trials", type=_shared.positive_int, default=8,
                   help="random and bayes search trials (default 8)")
    s.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2",
                   help="values to try: a list, or log:LOW:HIGH, uniform:LOW:HIGH, "
                        "int:LOW:HIGH (random and bayes)")
    _shared.add_run_options(s, epochs=1, epochs_help="epochs per configuration (default 1)")
    s.add_argument("--output", metavar="FILE", help="write all results (.json or .csv)")
    s.set_defaults(func=run)


def run(args):
    _shared.check_table_path("--output", args.output)
    space = search_space(args.param)
    (x, y), (xt, yt) = _shared.load_data(args.data, args.limit)
    n = args.trials if args.method != "grid" else _grid_size(space)
    print(f"{args.method.capitalize()} search: {n} configurations, {args.epochs} "
          f"epoch(s) each, scored by validation accuracy on the last "
          f"{args.validation_split:.0%} of {len(x):,} training samples (never the test set)")
    fixed = {"epochs": args.epochs, "threads": args.threads or "auto",
             "hidden": tuple(_shared.hidden_sizes(_shared.DEFAULT_HIDDEN))}
    fixed.update(space)
    progress = lambda row: _progress(row, n, space)  # noqa: E731
    with _shared.thread_limit(args.threads):
        try:
            result = fsearch.search(x, y, fixed, method=args.method,
                                    n_trials=None if args.method == "grid" else args.trials,
                                    monitor="val_accuracy", seed=args.seed, on_trial=progress,
                                    validation_split=args.validation_split)
        except (ValueError, TypeError) as exc:
            raise CLIError(str(exc)) from None
        except RuntimeError as exc:  # every trial failed
            raise CLIError(f"every configuration failed ({exc})") from None
        ranked = _rank(result, space)
        best = {k: result.best_params[k] for k in space}
        print(f"\nRetraining the best configuration ({_fmt_trial(best)}) on all "
              f"{len(x):,} training samples and testing it:")
        result.refit(x, y)
        loss, acc = result.test(xt, yt)
    print(f"Test loss {loss:.4f} - test accuracy {acc:.4f}")
    if args.output:
        payload = {"method": args.method, "epochs": args.epochs, "trials": ranked,
                   "best": best, "test_loss": loss, "test_accuracy": acc}
        _shared.write_table(args.output, ranked, list(ranked[0]), json_payload=payload)
        print(f"Results written to {args.output}")
    return 0


def search_space(specs):
    """``--param`` values -> {name: list of values, or a fastopt.search
    distribution}."""
    space = {}
    for spec in specs:
        name, eq, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not name.isidentifier():
            raise CLIError(f"--param {spec!r}: expected NAME=V1,V2,... with NAME a compile, "
                           f"fit, MLP or optimizer argument")
        kind = values.split(":", 1)[0]
        if kind in _RANGES and ":" in values:
            space[name] = _range(spec, kind, values[len(kind) + 1:])
        else:
            space[name] = _values(spec, name, values)
    try:  # a name no configuration could use fails here, not as "failed" trials
        optimizers = space.get("optimizer", ["adam"])
        fsearch.check_arguments(list(space), optimizers)
    except ValueError as exc:
        raise CLIError(f"--param: {exc}; expected NAME=V1,V2,... with NAME a compile, fit, "
                       f"MLP or optimizer argument") from None
    return space or dict(DEFAULT_SPACE)


def _range(spec, kind, text):
    try:
        lo, hi = ((int if kind == "int" else float)(v) for v in text.split(":"))
    except ValueError:
        raise CLIError(f"--param {spec!r}: use NAME={kind}:LOW:HIGH") from None
    if kind == "log":
        check_number(lo, f"--param {spec!r}: LOW", minimum=0, min_open=True)
        check_number(hi, f"--param {spec!r}: HIGH", minimum=lo, min_open=True)
    return _RANGES[kind](lo, hi)


def _auto(text):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _values(spec, name, text):
    try:
        parsed = [SEARCH_PARAMS.get(name, _auto)(v) for v in text.split(",") if v]
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise CLIError(f"--param {spec!r}: {exc}") from None
    if name == "optimizer" and any(v not in _shared.OPTIMIZERS for v in parsed):
        raise CLIError(f"--param {spec!r}: optimizers are {', '.join(_shared.OPTIMIZERS)}")
    if not parsed:
        raise CLIError(f"--param {spec!r} lists no values")
    for v in parsed:  # a value no run could use fails here, not as a "failed" trial
        if name in ("lr", "learning_rate"):
            check_number(v, f"--param {spec!r}: lr", minimum=0, min_open=True)
        elif name in ("batch_size", "epochs"):
            check_int(v, f"--param {spec!r}: {name}", minimum=1)
    return parsed


def _grid_size(space):
    n = 1
    for values in space.values():
        n *= len(values) if isinstance(values, list) else 1
    return n


def _progress(row, n, space):
    trial = {k: row[k] for k in space}
    if row["status"] != "ok":
        print(f"  [{row['trial'] + 1}/{n}] {_fmt_trial(trial)}: failed "
              f"({row.get('error', 'non-finite score')})", flush=True)
    else:
        print(f"  [{row['trial'] + 1}/{n}] {_fmt_trial(trial)}: val_accuracy "
              f"{row['val_accuracy']:.4f}", flush=True)


def _rank(result, space):
    """The result's table as the command's rows (the searched values, the
    validation accuracy and loss, seconds), printed best first."""
    ranked = [{**{k: row[k] for k in space}, "val_accuracy": row.get("val_accuracy", row["score"]),
               "val_loss": row.get("val_loss", float("nan")), "seconds": row["seconds"]}
              for row in result.table]
    print("\nrank  val_acc   val_loss  configuration")
    for i, r in enumerate(ranked, 1):
        print(f"{i:4d}  {r['val_accuracy']:.4f}  {r['val_loss']:9.4f}  "
              f"{_fmt_trial({k: r[k] for k in space})}")
    return ranked


def _fmt_trial(trial):
    return ", ".join(f"{k}={_fmt_value(v)}" for k, v in trial.items())


def _fmt_value(v):
    if isinstance(v, (list, tuple)):
        return "-".join(map(str, v))
    return f"{v:.4g}" if isinstance(v, float) else str(v)
