"""``fastopt search``: grid or random hyperparameter search, each configuration
scored on a validation split (never the test set); the best one is retrained on
the whole training set and tested."""
import argparse
import itertools
import math
import time

import numpy as np

import fastopt
from fastopt._validate import check_int, check_number
import fastopt.cli._shared as _shared
from fastopt.cli._shared import CLIError

# --param NAME -> how one of its values is read
SEARCH_PARAMS = {"lr": float, "batch_size": int, "optimizer": str,
                 "hidden": _shared.hidden_sizes, "activation": str}
DEFAULT_SPACE = {"lr": [1e-3, 3e-3], "optimizer": ["adam", "rmsprop"]}


def add_parser(sub):
    s = _shared.add_command(
        sub, "search", help="grid or random hyperparameter search",
        description="Search learning rate, batch size, optimizer, hidden sizes and activation, "
                    "scoring each configuration on a validation split (never the test set); "
                    "the best one is retrained on the whole training set and tested.",
        epilog="examples:\n"
               "  fastopt search --param lr=1e-3,3e-3 --param optimizer=adam,sgd\n"
               "  fastopt search --method random --trials 8 --param lr=log:1e-4:1e-2 "
               "--param hidden=64,128-64\n")
    s.add_argument("--method", choices=("grid", "random"), default="grid")
    s.add_argument("--trials", type=_shared.positive_int, default=8, help="random search trials")
    s.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2",
                   help=f"values to try; NAME one of {', '.join(SEARCH_PARAMS)}")
    _shared.add_run_options(s, epochs=1, epochs_help="epochs per configuration (default 1)")
    s.add_argument("--output", metavar="FILE", help="write all results (.json or .csv)")
    s.set_defaults(func=run)


def run(args):
    _shared.check_table_path("--output", args.output)
    space = search_space(args.param)
    (x, y), (xt, yt) = _shared.load_data(args.data, args.limit)
    trials = list(_trials(space, args.method, args.trials, np.random.default_rng(args.seed)))
    print(f"{args.method.capitalize()} search: {len(trials)} configurations, {args.epochs} "
          f"epoch(s) each, scored by validation accuracy on the last "
          f"{args.validation_split:.0%} of {len(x):,} training samples (never the test set)")
    with _shared.thread_limit(args.threads):
        ranked = _rank([_score(k, trial, len(trials), x, y, args)
                        for k, trial in enumerate(trials, 1)], space)
        best = {k: ranked[0][k] for k in space}
        if math.isnan(ranked[0]["val_accuracy"]):
            raise CLIError("every configuration failed")
        print(f"\nRetraining the best configuration ({_fmt_trial(best)}) on all "
              f"{len(x):,} training samples and testing it:")
        model = _build(best, x.shape[1], args.seed)
        threads = args.threads or "auto"
        model.fit(x, y, batch_size=best.get("batch_size", 32), epochs=args.epochs, verbose=0,
                  threads=threads)
        loss, acc = model.evaluate(xt, yt, threads=threads)
    print(f"Test loss {loss:.4f} - test accuracy {acc:.4f}")
    if args.output:
        payload = {"method": args.method, "epochs": args.epochs, "trials": ranked,
                   "best": best, "test_loss": loss, "test_accuracy": acc}
        _shared.write_table(args.output, ranked, list(ranked[0]), json_payload=payload)
        print(f"Results written to {args.output}")
    return 0


def search_space(specs):
    """``--param`` values -> {name: list of values, or ("log", low, high)}."""
    space = {}
    for spec in specs:
        name, eq, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in SEARCH_PARAMS:
            raise CLIError(f"--param {spec!r}: expected NAME=V1,V2,... with NAME one of "
                           f"{', '.join(SEARCH_PARAMS)}")
        if name == "lr" and values.startswith("log:"):
            space[name] = _log_range(spec, values[4:])
        else:
            space[name] = _values(spec, name, values)
    return space or DEFAULT_SPACE


def _log_range(spec, text):
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise CLIError(f"--param {spec!r}: use lr=log:LOW:HIGH") from None
    check_number(lo, f"--param {spec!r}: LOW", minimum=0, min_open=True)
    check_number(hi, f"--param {spec!r}: HIGH", minimum=lo, min_open=True)
    return ("log", lo, hi)


def _values(spec, name, text):
    try:
        parsed = [SEARCH_PARAMS[name](v) for v in text.split(",") if v]
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise CLIError(f"--param {spec!r}: {exc}") from None
    if name == "optimizer" and any(v not in _shared.OPTIMIZERS for v in parsed):
        raise CLIError(f"--param {spec!r}: optimizers are {', '.join(_shared.OPTIMIZERS)}")
    if not parsed:
        raise CLIError(f"--param {spec!r} lists no values")
    for v in parsed:  # a value no run could use fails here, not as a "failed" trial
        if name == "lr":
            check_number(v, f"--param {spec!r}: lr", minimum=0, min_open=True)
        elif name == "batch_size":
            check_int(v, f"--param {spec!r}: batch_size", minimum=1)
    return parsed


def _trials(space, method, n, rng):
    names = list(space)
    if method == "grid":
        if any(isinstance(v, tuple) for v in space.values()):
            raise CLIError("grid search needs listed values; lr=log:... is for --method random")
        for values in itertools.product(*(space[k] for k in names)):
            yield dict(zip(names, values))
        return
    for _ in range(n):
        trial = {}
        for k in names:
            v = space[k]
            trial[k] = (float(np.exp(rng.uniform(np.log(v[1]), np.log(v[2]))))
                        if isinstance(v, tuple) else v[rng.integers(len(v))])
        yield trial


def _build(trial, n_inputs, seed):
    hidden = trial.get("hidden", _shared.hidden_sizes(_shared.DEFAULT_HIDDEN))
    model = fastopt.MLP([n_inputs, *hidden, 10], activation=trial.get("activation", "relu"),
                        seed=seed)
    opt = _shared.make_optimizer(trial.get("optimizer", "adam"), {"lr": trial.get("lr")})
    model.compile(opt, metrics=["accuracy"])
    return model


def _score(k, trial, n_trials, x, y, args):
    """Train one configuration; its result row (NaN scores if it failed)."""
    try:
        model = _build(trial, x.shape[1], args.seed)
        start = time.perf_counter()
        hist = model.fit(x, y, batch_size=trial.get("batch_size", 32), epochs=args.epochs,
                         validation_split=args.validation_split, verbose=0,
                         threads=args.threads or "auto")
    except (ValueError, FloatingPointError) as exc:
        print(f"  [{k}/{n_trials}] {trial}: failed ({exc})")
        return {**trial, "val_accuracy": float("nan"), "val_loss": float("nan"),
                "seconds": 0.0}
    h = hist.history
    result = {**trial, "val_accuracy": h["val_accuracy"][-1], "val_loss": h["val_loss"][-1],
              "seconds": time.perf_counter() - start}
    print(f"  [{k}/{n_trials}] {_fmt_trial(trial)}: val_accuracy "
          f"{h['val_accuracy'][-1]:.4f}", flush=True)
    return result


def _rank(results, space):
    """The results, best validation accuracy first (failed ones last), printed."""
    ranked = sorted(results, key=lambda r: -np.nan_to_num(r["val_accuracy"], nan=-1))
    print("\nrank  val_acc   val_loss  configuration")
    for i, r in enumerate(ranked, 1):
        trial = {k: r[k] for k in space}
        print(f"{i:4d}  {r['val_accuracy']:.4f}  {r['val_loss']:9.4f}  {_fmt_trial(trial)}")
    return ranked


def _fmt_trial(trial):
    return ", ".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, list) else v:}"
                     for k, v in trial.items())
