"""``fastopt compare``: train the same MLP from the same initial weights once
per optimizer, batch size or learning rate; print the table of final losses and
accuracies, seconds per epoch and updates, and draw the curves (``--plot``)."""
import argparse

import fastopt.cli._shared as _shared
from fastopt.cli.paths import OPTIMIZER_HELP, require_plotting
from fastopt.viz import _specs, compare
from fastopt.viz.compare import DEFAULT_OPTIMIZERS, TABLE_COLUMNS

DEFAULT_HIDDEN = "128"


def add_parser(sub):
    c = _shared.add_command(
        sub, "compare", help="compare optimizers, batch sizes or learning rates on MNIST",
        description="Train the same MLP from the same initial weights once per optimizer "
                    "(or per batch size, or per learning rate), print a table of the final "
                    "training/validation/test loss and accuracy, seconds per epoch and "
                    "updates, and draw loss and accuracy against epochs, updates and seconds.",
        epilog="examples:\n"
               "  fastopt compare --optimizers sgd,momentum,adagrad,rmsprop,adam --epochs 5 "
               "--plot compare.png\n"
               "  fastopt compare --batch-sizes 60000,1,128 --optimizer sgd --epochs 3 "
               "--plot batches.png\n"
               "  fastopt compare --lrs 1e-1,1e-2,1e-3 --optimizer sgd --opt sgd:momentum=0.9\n")
    varied = c.add_mutually_exclusive_group()
    varied.add_argument("--optimizers", help=f"{OPTIMIZER_HELP} (the default: "
                                             f"{','.join(DEFAULT_OPTIMIZERS)})")
    varied.add_argument("--batch-sizes", type=_shared.int_list, metavar="B1,B2,...",
                        help="compare batch sizes (60000 or more: batch gradient descent)")
    varied.add_argument("--lrs", type=_float_list, metavar="LR1,LR2,...",
                        help="compare learning rates")
    c.add_argument("--optimizer", default="sgd",
                   help="the optimizer of a --batch-sizes or --lrs comparison (default sgd)")
    c.add_argument("--opt", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="settings of one optimizer (e.g. adam:lr=3e-3); repeatable")
    c.add_argument("--batch-size", type=_shared.positive_int, default=128,
                   help="batch size of an optimizer or learning-rate comparison (default 128)")
    c.add_argument("--hidden", type=_shared.hidden_sizes,
                   default=_shared.hidden_sizes(DEFAULT_HIDDEN), metavar="SIZES",
                   help=f"hidden layer sizes (default {DEFAULT_HIDDEN})")
    _shared.add_run_options(c, epochs=5, epochs_help="epochs per run (default 5)")
    c.add_argument("--plot", metavar="FILE", help="draw the curves (.png; needs matplotlib)")
    c.add_argument("--output", metavar="FILE", help="write the table (.json or .csv)")
    c.set_defaults(func=run)


def _float_list(text):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 1e-1,1e-2, got {text!r}") from None


def tuned(specs, opts):
    """``specs`` with each ``--opt name:settings`` replacing the spec of that
    name (or appended, for an optimizer comparison that lacks it)."""
    specs = list(specs)
    for opt in opts:
        name, _ = _specs.parse(opt)
        names = [_specs.parse(s)[0] for s in specs]
        if name in names:
            specs[names.index(name)] = opt
        else:
            specs.append(opt)
    return specs


def run(args):
    require_plotting(("--plot", args.plot))
    _shared.check_table_path("--output", args.output)
    name = _specs.parse(args.optimizer)[0]
    optimizer = tuned([args.optimizer], [o for o in args.opt if _specs.parse(o)[0] == name])[0]
    optimizers = None
    if args.batch_sizes is None and args.lrs is None:
        base = _specs.split(args.optimizers) if args.optimizers else DEFAULT_OPTIMIZERS
        optimizers = tuned(base, args.opt)
    with _shared.thread_limit(args.threads):
        result = compare(optimizers, batch_sizes=args.batch_sizes, lrs=args.lrs,
                         optimizer=optimizer, batch_size=args.batch_size, epochs=args.epochs,
                         hidden=args.hidden, data=args.data, limit=args.limit,
                         validation_split=args.validation_split, seed=args.seed,
                         draw=bool(args.plot))
    print_table(result)
    if args.output:
        _shared.write_table(args.output, result["table"], list(TABLE_COLUMNS))
        print(f"Table written to {args.output}")
    if args.plot:
        result["figure"].savefig(args.plot, dpi=100)
        print(f"Curves drawn to {args.plot}")
    return 0


def print_table(result):
    """The comparison table, one line per run."""
    print(result["title"] + ":")
    width = max(len(r["run"]) for r in result["table"]) + 2
    heads = ("loss", "acc", "val_loss", "val_acc", "test_loss", "test_acc", "s/epoch", "updates")
    print(f"{'run':<{width}}" + "".join(f"{h:>10}" for h in heads))
    for row in result["table"]:
        values = [row.get(k, float("nan")) for k in TABLE_COLUMNS[1:8]]
        print(f"{row['run']:<{width}}" + "".join(f"{v:>10.4f}" for v in values)
              + f"{row['updates']:>10,}")
