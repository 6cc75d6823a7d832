"""The ``fastopt`` command line (also ``python -m fastopt``).

``fastopt`` with no arguments trains the default model, the 784-32-64-128-256-10
MLP with Adam on the bundled MNIST, and says what it is doing.
"""
import argparse
import csv
import inspect
import itertools
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

import fastopt

DEFAULT_HIDDEN = "32,64,128,256"
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad")
SCHEDULES = ("none", "exponential", "inverse-time", "cosine", "step")

# command-line flag -> Keras-style optimizer argument
_OPT_FLAGS = {"lr": "learning_rate", "momentum": "momentum", "beta1": "beta_1",
              "beta2": "beta_2", "epsilon": "epsilon", "rho": "rho",
              "weight_decay": "weight_decay", "nesterov": "nesterov", "amsgrad": "amsgrad",
              "centered": "centered", "clipnorm": "clipnorm"}


class CLIError(Exception):
    """An error reported as one line, with exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- shared helpers --------------------------------------------------------------

def _hidden(text):
    try:
        sizes = [int(s) for s in text.replace("-", ",").split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"hidden sizes must be integers like 32,64, "
                                         f"got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be >= 1, got {text!r}")
    return sizes


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _load_data(data, limit=None):
    (x, y), (xt, yt) = fastopt.datasets.load_mnist(data)
    if limit:
        x, y = x[:limit], y[:limit]
    # scaled once to [0, 1] float32, as the learning material's x / 255.0
    return ((x.reshape(len(x), -1).astype(np.float32) / np.float32(255), y),
            (xt.reshape(len(xt), -1).astype(np.float32) / np.float32(255), yt))


def _threads(n):
    """Limit BLAS and OpenMP threads (threadpoolctl), or do nothing."""
    if n is None:
        import contextlib

        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def _make_optimizer(name, options):
    """A Keras-compatible optimizer from the command line's flags."""
    cls = fastopt.optim.keras.get_class(name)
    accepted = inspect.signature(cls).parameters
    kwargs = {}
    for flag, value in options.items():
        if value is None or value is False:
            continue
        arg = _OPT_FLAGS[flag]
        if arg not in accepted:
            raise CLIError(f"--{flag.replace('_', '-')} does not apply to the {name} optimizer")
        kwargs[arg] = value
    return cls(**kwargs)


def _schedule(spec, lr, steps_per_epoch, epochs):
    """A Keras-style schedule from ``name[:key=value,...]``, in optimizer steps."""
    name, _, rest = spec.partition(":")
    if name not in SCHEDULES:
        raise CLIError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        try:
            params[key.strip()] = float(value) if eq else None
        except ValueError:
            raise CLIError(f"--schedule option {key} needs a number, got {value!r}") from None
        if not eq:
            raise CLIError(f"--schedule options are key=value, got {item!r}")
    S = fastopt.schedules
    try:
        if name == "none":
            sched = None
        elif name in ("exponential", "inverse-time"):  # rate per `epochs` epochs
            cls = S.ExponentialDecay if name == "exponential" else S.InverseTimeDecay
            sched = cls(lr, steps_per_epoch * params.pop("epochs", 1),
                        params.pop("rate", 0.9 if name == "exponential" else 0.5),
                        staircase=bool(params.pop("staircase", 0)))
        elif name == "step":  # multiply by gamma every `every` epochs
            every = params.pop("every", max(1, epochs // 3))
            sched = S.ExponentialDecay(lr, steps_per_epoch * every, params.pop("gamma", 0.1),
                                       staircase=True)
        else:  # cosine over the whole run, after an optional linear warm-up
            warmup = int(params.pop("warmup_epochs", 0) * steps_per_epoch)
            alpha = params.pop("alpha", 0.0)
            total = steps_per_epoch * epochs
            sched = (S.CosineDecay(0.0, max(total - warmup, 1), alpha=alpha,
                                   warmup_target=lr, warmup_steps=warmup) if warmup
                     else S.CosineDecay(lr, total, alpha=alpha))
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--schedule {spec}: {exc}") from None
    if params:
        raise CLIError(f"--schedule {name} does not take {', '.join(sorted(params))}")
    return sched


def _write_history(path, history):
    keys = list(history.history)
    rows = [{"epoch": e + 1, **{k: history.history[k][i] for k in keys},
             "seconds": history.epoch_seconds[i]} for i, e in enumerate(history.epoch)]
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)
    elif path.endswith(".csv"):
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch", *keys, "seconds"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise CLIError(f"--history {path}: use a .json or .csv file name")


def _require_matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'fastopt[plot]'") from None


def _plot(path, history, title):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    h = history.history
    epochs = [e + 1 for e in history.epoch]
    metrics = [m for m in ("loss", "accuracy") if m in h]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.plot(epochs, h[metric], "o-", label="training")
        if "val_" + metric in h:
            ax.plot(epochs, h["val_" + metric], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- train -------------------------------------------------------------------------

def _train_config(args):
    return {"data": args.data, "hidden": args.hidden, "activation": args.activation,
            "optimizer": args.optimizer,
            "optimizer_options": {k: getattr(args, k) for k in _OPT_FLAGS},
            "batch_size": args.batch_size, "epochs": args.epochs,
            "validation_split": args.validation_split, "schedule": args.schedule,
            "seed": args.seed, "limit": args.limit, "early_stopping": args.early_stopping}


def _cmd_train(args):
    if args.plot:
        _require_matplotlib()
    if args.history and not args.history.endswith((".json", ".csv")):
        raise CLIError(f"--history {args.history}: use a .json or .csv file name")
    resumed = None
    if args.resume:
        resumed = fastopt.checkpoint.load(args.resume)
        cfg = dict(resumed.extra or {})
        if "hidden" not in cfg:
            raise CLIError(f"{args.resume}: was not written by `fastopt train`")
        if args.epochs_given:
            cfg["epochs"] = args.epochs
    else:
        cfg = _train_config(args)
    (x, y), (xt, yt) = _load_data(cfg["data"], cfg["limit"])
    sizes = [x.shape[1], *cfg["hidden"], 10]
    n_train = math.ceil(len(x) * (1 - cfg["validation_split"]))
    steps = math.ceil(n_train / cfg["batch_size"])
    if resumed:
        model = resumed.model
        print(f"Resuming {'-'.join(map(str, sizes))} from {args.resume} after epoch "
              f"{resumed.epoch} of {cfg['epochs']}")
    else:
        model = fastopt.MLP(sizes, activation=cfg["activation"], seed=cfg["seed"])
        options = dict(cfg["optimizer_options"])
        opt = _make_optimizer(cfg["optimizer"], options)
        sched = _schedule(cfg["schedule"], opt.learning_rate, steps, cfg["epochs"])
        if sched is not None:
            opt.learning_rate = sched
        model.compile(opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        print(f"Training the {'-'.join(map(str, sizes))} MLP ({model.params.size:,} "
              f"parameters, {cfg['activation']}) on "
              f"{'the bundled MNIST' if cfg['data'] is None else cfg['data']}: "
              f"{cfg['optimizer']} (lr {opt.param_groups[0]['lr'] if sched is None else sched}), "
              f"batch {cfg['batch_size']}, {cfg['epochs']} epochs, "
              f"{n_train:,} training / {len(x) - n_train:,} validation samples, seed "
              f"{cfg['seed']}")
    callbacks = []
    if cfg["early_stopping"]:
        callbacks.append(fastopt.callbacks.EarlyStopping(
            "val_loss" if cfg["validation_split"] else "loss",
            patience=cfg["early_stopping"], restore_best_weights=True))
    verbose = 1 if sys.stderr.isatty() and not args.quiet else (0 if args.quiet else 2)
    checkpoint = args.checkpoint  # main() defaults it to --resume's file
    with _threads(args.threads):
        start = time.perf_counter()
        if checkpoint:  # the checkpoint also keeps this run's settings, for --resume
            callbacks.append(fastopt.callbacks.ModelCheckpoint(checkpoint, extra=cfg))
        history = model.fit(x, y, batch_size=cfg["batch_size"], epochs=cfg["epochs"],
                            validation_split=cfg["validation_split"], verbose=verbose,
                            callbacks=callbacks, initial_epoch=resumed.epoch if resumed else 0)
        seconds = time.perf_counter() - start
        loss, acc = model.evaluate(xt, yt)
    print(f"Test loss {loss:.4f} - test accuracy {acc:.4f} ({round(acc * len(xt)):,}/"
          f"{len(xt):,}) - training took {seconds:.1f}s")
    if args.history:
        _write_history(args.history, history)
        print(f"History written to {args.history}")
    if args.plot:
        _plot(args.plot, history, f"MLP {'-'.join(map(str, sizes))}, {cfg['optimizer']}")
        print(f"Training curves written to {args.plot}")
    if args.save:
        model.save(args.save)
        print(f"Model written to {args.save}")
    return 0


# -- evaluate / predict ------------------------------------------------------------------

def _load_model(path):
    """A saved model or a checkpoint, compiled for evaluation."""
    if not os.path.isfile(path):
        raise CLIError(f"{path}: no such model file")
    try:
        model = fastopt.checkpoint.load(path).model
    except ValueError:
        try:
            model = fastopt.MLP.load(path)
        except ValueError:
            raise CLIError(f"{path}: neither a model saved by fastopt (`train --save`) nor "
                           f"a checkpoint") from None
        model.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if model.output != "softmax":
        raise CLIError(f"{path}: a classifier with a softmax output is expected")
    return model


def _cmd_evaluate(args):
    model = _load_model(args.model)
    _, (xt, yt) = _load_data(args.data)
    if xt.shape[1] != model.layer_sizes[0]:
        raise CLIError(f"the model takes {model.layer_sizes[0]} inputs, the images have "
                       f"{xt.shape[1]} pixels")
    loss, acc = model.evaluate(xt, yt)
    pred = model.predict(xt).argmax(1)
    print(f"{args.model}: MLP {'-'.join(map(str, model.layer_sizes))} on "
          f"{len(xt):,} test images")
    print(f"  loss {loss:.4f}   accuracy {acc:.4f} ({int((pred == yt).sum()):,}/{len(yt):,})")
    print("  class  images  accuracy  most often mistaken for")
    for c in range(model.layer_sizes[-1]):
        mask = yt == c
        if not mask.any():
            continue
        wrong = np.bincount(pred[mask & (pred != c)], minlength=model.layer_sizes[-1])
        confused = f"{wrong.argmax()} ({wrong.max()})" if wrong.any() else "-"
        print(f"  {c:5d}  {int(mask.sum()):6d}  {np.mean(pred[mask] == c):8.4f}  {confused}")
    return 0


def _read_images(path, invert):
    if path.endswith(".npy"):
        try:
            images = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CLIError(f"{path}: not a readable .npy file ({exc})") from None
        if images.ndim == 2:
            images = images[None]
        images = images.astype(np.float32) / (255 if images.dtype == np.uint8 else 1)
    elif path.lower().endswith(".png"):
        try:
            import matplotlib.image as mpimg
        except ImportError:
            raise CLIError("reading PNG images needs matplotlib: pip install 'fastopt[plot]'") \
                from None
        try:
            image = mpimg.imread(path)
        except (OSError, ValueError, SyntaxError) as exc:
            raise CLIError(f"{path}: not a readable PNG ({exc})") from None
        if image.ndim == 3:
            image = image[..., :3].mean(axis=2)
        images = image[None].astype(np.float32)
    else:
        raise CLIError(f"{path}: images must be .npy arrays or .png files")
    if invert:
        images = 1 - images
    return images.reshape(len(images), -1)


def _cmd_predict(args):
    model = _load_model(args.model)
    items = []
    for path in args.images:
        if not os.path.exists(path):
            raise CLIError(f"{path}: no such file")
        images = _read_images(path, args.invert)
        items += [(f"{path}[{i}]" if len(images) > 1 else path, img, None)
                  for i, img in enumerate(images)]
    if args.test_index:
        _, (xt, yt) = _load_data(args.data)
        for i in args.test_index:
            if not 0 <= i < len(xt):
                raise CLIError(f"--test-index {i} is outside the {len(xt):,} test images")
            items.append((f"test[{i}]", xt[i], int(yt[i])))
    if not items:
        raise CLIError("nothing to predict: give image files or --test-index")
    x = np.stack([img for _, img, _ in items])
    if x.shape[1] != model.layer_sizes[0]:
        raise CLIError(f"the model takes {model.layer_sizes[0]} inputs, the images have "
                       f"{x.shape[1]} pixels")
    probs = model.predict(x)
    for (name, _, label), p in zip(items, probs):
        top = np.argsort(-p)[:args.top]
        ranked = ", ".join(f"{c} {p[c]:.1%}" for c in top)
        truth = "" if label is None else f"   label {label}" + ("" if top[0] == label
                                                              else "  (wrong)")
        print(f"{name}: {top[0]}   ({ranked}){truth}")
    return 0


# -- search ----------------------------------------------------------------------------------

_SEARCH_PARAMS = {"lr": float, "batch_size": int, "optimizer": str, "hidden": _hidden,
                  "activation": str}


def _search_space(specs):
    space = {}
    for spec in specs:
        name, eq, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or name not in _SEARCH_PARAMS:
            raise CLIError(f"--param {spec!r}: expected NAME=V1,V2,... with NAME one of "
                           f"{', '.join(_SEARCH_PARAMS)}")
        if name == "lr" and values.startswith("log:"):
            try:
                lo, hi = (float(v) for v in values[4:].split(":"))
            except ValueError:
                raise CLIError(f"--param {spec!r}: use lr=log:LOW:HIGH") from None
            if not 0 < lo < hi:
                raise CLIError(f"--param {spec!r}: need 0 < LOW < HIGH")
            space[name] = ("log", lo, hi)
            continue
        try:
            parsed = [_SEARCH_PARAMS[name](v) for v in values.split(",") if v] \
                if name != "hidden" else [_hidden(v) for v in values.split(",") if v]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise CLIError(f"--param {spec!r}: {exc}") from None
        if name == "optimizer" and any(v not in OPTIMIZERS for v in parsed):
            raise CLIError(f"--param {spec!r}: optimizers are {', '.join(OPTIMIZERS)}")
        if not parsed:
            raise CLIError(f"--param {spec!r} lists no values")
        space[name] = parsed
    defaults = {"lr": [1e-3, 3e-3], "optimizer": ["adam", "rmsprop"]}
    return space or defaults


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


def _cmd_search(args):
    if args.output and not args.output.endswith((".json", ".csv")):
        raise CLIError(f"--output {args.output}: use a .json or .csv file name")
    space = _search_space(args.param)
    (x, y), (xt, yt) = _load_data(args.data, args.limit)
    rng = np.random.default_rng(args.seed)
    trials = list(_trials(space, args.method, args.trials, rng))
    print(f"{args.method.capitalize()} search: {len(trials)} configurations, {args.epochs} "
          f"epoch(s) each, scored by validation accuracy on the last "
          f"{args.validation_split:.0%} of {len(x):,} training samples (never the test set)")

    def build(trial):
        hidden = trial.get("hidden", _hidden(DEFAULT_HIDDEN))
        model = fastopt.MLP([x.shape[1], *hidden, 10], activation=trial.get("activation",
                                                                            "relu"),
                            seed=args.seed)
        opt = _make_optimizer(trial.get("optimizer", "adam"), {"lr": trial.get("lr")})
        model.compile(opt, metrics=["accuracy"])
        return model

    results = []
    with _threads(args.threads):
        for k, trial in enumerate(trials, 1):
            try:
                model = build(trial)
                start = time.perf_counter()
                hist = model.fit(x, y, batch_size=trial.get("batch_size", 32),
                                 epochs=args.epochs, validation_split=args.validation_split,
                                 verbose=0)
            except (ValueError, FloatingPointError) as exc:
                print(f"  [{k}/{len(trials)}] {trial}: failed ({exc})")
                results.append({**trial, "val_accuracy": float("nan"),
                                "val_loss": float("nan"), "seconds": 0.0})
                continue
            h = hist.history
            results.append({**trial, "val_accuracy": h["val_accuracy"][-1],
                            "val_loss": h["val_loss"][-1],
                            "seconds": time.perf_counter() - start})
            print(f"  [{k}/{len(trials)}] {_fmt_trial(trial)}: val_accuracy "
                  f"{h['val_accuracy'][-1]:.4f}", flush=True)
        ranked = sorted(results, key=lambda r: -np.nan_to_num(r["val_accuracy"], nan=-1))
        print("\nrank  val_acc   val_loss  configuration")
        for i, r in enumerate(ranked, 1):
            trial = {k: r[k] for k in space}
            print(f"{i:4d}  {r['val_accuracy']:.4f}  {r['val_loss']:9.4f}  {_fmt_trial(trial)}")
        best = {k: ranked[0][k] for k in space}
        if math.isnan(ranked[0]["val_accuracy"]):
            raise CLIError("every configuration failed")
        print(f"\nRetraining the best configuration ({_fmt_trial(best)}) on all "
              f"{len(x):,} training samples and testing it:")
        model = build(best)
        model.fit(x, y, batch_size=best.get("batch_size", 32), epochs=args.epochs, verbose=0)
        loss, acc = model.evaluate(xt, yt)
    print(f"Test loss {loss:.4f} - test accuracy {acc:.4f}")
    if args.output:
        payload = {"method": args.method, "epochs": args.epochs, "trials": ranked,
                   "best": best, "test_loss": loss, "test_accuracy": acc}
        if args.output.endswith(".json"):
            with open(args.output, "w") as f:
                json.dump(payload, f, indent=1, default=str)
        else:
            with open(args.output, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(ranked[0]))
                writer.writeheader()
                writer.writerows({k: (json.dumps(v) if isinstance(v, list) else v)
                                  for k, v in r.items()} for r in ranked)
        print(f"Results written to {args.output}")
    return 0


def _fmt_trial(trial):
    return ", ".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, list) else v:}"
                     for k, v in trial.items())


# -- bench -----------------------------------------------------------------------------------------

def _cmd_bench(args):
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


# -- info ---------------------------------------------------------------------------------------

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
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            fn(rep + 1)
            best = min(best, time.perf_counter() - t0)
        times[name] = best
    print(f"\nAdam step on {n:,} float32 elements (best of {args.repeats}):")
    for name, t in times.items():
        print(f"  {name:14s} {t * 1e3:8.3f} ms  {28 * n / t / 1e9:6.1f} GB/s effective")
    print(f"  speed-up over NumPy: {times['NumPy'] / times['fastopt.adam_']:.1f}x")
    return 0


# -- the parser ------------------------------------------------------------------------------------

def build_parser():
    parser = _Parser(
        prog="fastopt",
        description="Fused in-place optimizer kernels, and an MLP trainer for MNIST built on "
                    "them. With no command, trains the default model.",
        epilog="examples:\n"
               "  fastopt                                   train the default model\n"
               "  fastopt train --optimizer sgd --lr 0.01 --momentum 0.9 --epochs 5\n"
               "  fastopt train --save model.npz --history h.csv --plot curves.png\n"
               "  fastopt evaluate model.npz\n"
               "  fastopt predict model.npz --test-index 0,1,2\n"
               "  fastopt search --param lr=1e-3,3e-3 --param batch_size=32,128 --epochs 1\n"
               "  fastopt bench --quick                     (from a source checkout)\n"
               "  fastopt info",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser(
        "train", help="train the MLP on MNIST",
        description="Train an MLP on MNIST (the bundled copy, or --data DIR) with a "
                    "Keras-compatible optimizer, then report the test loss and accuracy.",
        epilog="examples:\n"
               "  fastopt train\n"
               "  fastopt train --hidden 128,64 --optimizer rmsprop --lr 1e-3 --epochs 5\n"
               "  fastopt train --schedule cosine:warmup_epochs=1 --epochs 10\n"
               "  fastopt train --epochs 10 --checkpoint run.npz   # then, if interrupted:\n"
               "  fastopt train --resume run.npz\n"
               "schedules (per optimizer step; options after ':'):\n"
               "  exponential:rate=0.9,epochs=1   inverse-time:rate=0.5,epochs=1\n"
               "  step:every=3,gamma=0.1          cosine:warmup_epochs=1,alpha=0",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--data", metavar="DIR",
                   help="directory with the four MNIST IDX files (default: the bundled copy)")
    t.add_argument("--hidden", type=_hidden, default=_hidden(DEFAULT_HIDDEN), metavar="SIZES",
                   help=f"hidden layer sizes (default {DEFAULT_HIDDEN})")
    t.add_argument("--activation", choices=("relu", "tanh", "sigmoid"), default="relu")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    t.add_argument("--lr", type=float, help="learning rate (default: the optimizer's Keras "
                                            "default)")
    t.add_argument("--momentum", type=float, help="sgd, rmsprop")
    t.add_argument("--beta1", type=float, help="adam, adamw")
    t.add_argument("--beta2", type=float, help="adam, adamw")
    t.add_argument("--epsilon", type=float, help="adam, adamw, rmsprop, adagrad")
    t.add_argument("--rho", type=float, help="rmsprop")
    t.add_argument("--weight-decay", type=float, help="decoupled weight decay")
    t.add_argument("--clipnorm", type=float, help="clip each gradient tensor to this norm")
    t.add_argument("--nesterov", action="store_true", help="sgd")
    t.add_argument("--amsgrad", action="store_true", help="adam, adamw")
    t.add_argument("--centered", action="store_true", help="rmsprop")
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs in total (default 10)")
    t.add_argument("--validation-split", type=_fraction, default=0.1,
                   help="last fraction of the training set held out (default 0.1)")
    t.add_argument("--schedule", default="none", metavar="NAME[:k=v,...]",
                   help=f"learning-rate schedule: {', '.join(SCHEDULES)}")
    t.add_argument("--early-stopping", type=_positive_int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation loss, "
                        "keeping the best weights")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=_positive_int, help="BLAS and OpenMP threads")
    t.add_argument("--limit", type=_positive_int, metavar="N",
                   help="train on the first N training images only")
    t.add_argument("--history", metavar="FILE", help="write the history (.json or .csv)")
    t.add_argument("--plot", metavar="FILE", help="write training curves (.png; needs "
                                                  "matplotlib)")
    t.add_argument("--save", metavar="FILE", help="write the trained model (.npz)")
    t.add_argument("--checkpoint", metavar="FILE",
                   help="write a resumable checkpoint after every epoch")
    t.add_argument("--resume", metavar="FILE", help="continue from a checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a saved model on the MNIST test set",
                       description="Loss, accuracy and per-class accuracy of a saved model "
                                   "(or checkpoint) on the MNIST test set.",
                       epilog="example:\n  fastopt evaluate model.npz --data ~/mnist",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("model", help="a file written by `fastopt train --save` or --checkpoint")
    e.add_argument("--data", metavar="DIR")
    e.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="classify images with a saved model",
                       description="Predicted digit and top probabilities for images: .npy "
                                   "arrays (N, 28, 28) or (28, 28), PNG files (needs "
                                   "matplotlib), or MNIST test images by index.",
                       epilog="examples:\n  fastopt predict model.npz --test-index 0,1,2\n"
                              "  fastopt predict model.npz digits.npy",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("images", nargs="*", help=".npy or .png files")
    p.add_argument("--test-index", type=lambda s: [int(v) for v in s.split(",")],
                   metavar="I,J,...", help="MNIST test images to classify")
    p.add_argument("--data", metavar="DIR")
    p.add_argument("--top", type=_positive_int, default=3)
    p.add_argument("--invert", action="store_true",
                   help="invert grey levels (for dark digits on a light background)")
    p.set_defaults(func=_cmd_predict)

    s = sub.add_parser(
        "search", help="grid or random hyperparameter search",
        description="Search learning rate, batch size, optimizer, hidden sizes and activation, "
                    "scoring each configuration on a validation split (never the test set); "
                    "the best one is retrained on the whole training set and tested.",
        epilog="examples:\n"
               "  fastopt search --param lr=1e-3,3e-3 --param optimizer=adam,sgd\n"
               "  fastopt search --method random --trials 8 --param lr=log:1e-4:1e-2 "
               "--param hidden=64,128-64\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--method", choices=("grid", "random"), default="grid")
    s.add_argument("--trials", type=_positive_int, default=8, help="random search trials")
    s.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2",
                   help=f"values to try; NAME one of {', '.join(_SEARCH_PARAMS)}")
    s.add_argument("--epochs", type=_positive_int, default=1)
    s.add_argument("--validation-split", type=_fraction, default=0.1)
    s.add_argument("--limit", type=_positive_int, metavar="N")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=_positive_int)
    s.add_argument("--data", metavar="DIR")
    s.add_argument("--output", metavar="FILE", help="write all results (.json or .csv)")
    s.set_defaults(func=_cmd_search)

    b = sub.add_parser("bench", help="run the benchmark comparisons and print their table",
                       description="Run bench/ (pytest-benchmark: fastopt against NumPy, "
                                   "PyTorch and scikit-learn) from a source checkout, then "
                                   "print the markdown report with the targets.",
                       epilog="examples:\n  fastopt bench --quick\n"
                              "  fastopt bench --markdown BENCHMARKS.md --png bench.png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--quick", action="store_true",
                   help="sizes up to 1M, one thread, 6,000 training samples")
    b.add_argument("--source", default=".", metavar="DIR", help="the source checkout")
    b.add_argument("-k", metavar="EXPR", help="only benchmarks matching EXPR (pytest -k)")
    b.add_argument("--json", metavar="FILE", help="keep the raw pytest-benchmark JSON here")
    b.add_argument("--markdown", metavar="FILE", help="write the report here")
    b.add_argument("--png", metavar="FILE", help="write a chart of the speed-ups here")
    b.set_defaults(func=_cmd_bench)

    i = sub.add_parser("info", help="show how fastopt was built; time one Adam step",
                       description=_cmd_info.__doc__)
    i.add_argument("--size", type=_positive_int, default=1 << 20)
    i.add_argument("--repeats", type=_positive_int, default=20)
    i.set_defaults(func=_cmd_info)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        # no command: train (the default model, or with the flags given)
        print("fastopt: no command given, so training the default model "
              "(see `fastopt --help` for the others).")
        argv = ["train", *argv]
    args = parser.parse_args(argv)
    if args.command == "train":
        args.epochs_given = args.epochs is not None
        if args.epochs is None:
            args.epochs = 10
        if args.resume and args.checkpoint is None:
            args.checkpoint = args.resume
    try:
        return args.func(args)
    except CLIError as exc:
        print(f"fastopt: error: {exc}", file=sys.stderr)
    except (fastopt.datasets.DataFileError, ValueError, TypeError, FileNotFoundError,
            FloatingPointError, OSError) as exc:
        print(f"fastopt: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("fastopt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1


if __name__ == "__main__":
    sys.exit(main())
