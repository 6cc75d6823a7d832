"""``fastopt paths``: run optimizers, through the same fused kernels that train
networks, over a 2-parameter test function; print where each got to, and draw
the paths over the contour map (``--plot``) or animate them (``--gif``)."""
import argparse

import fastopt.cli._shared as _shared
from fastopt.cli._shared import CLIError
from fastopt.viz import FUNCTIONS, paths
from fastopt.viz import _plot
from fastopt.viz.paths import DEFAULT_OPTIMIZERS

OPTIMIZER_HELP = ("comma-separated names: sgd, momentum (SGD with 0.9), nesterov, adagrad, "
                  "rmsprop, adam, adamw; each tunable as name:key=value (e.g. "
                  "adam:lr=3e-3,beta2=0.99)")


def add_parser(sub):
    p = _shared.add_command(
        sub, "paths", help="draw optimizer paths over a test function",
        description="Run each optimizer, through fastopt's fused kernels on a 2-parameter "
                    "float32 buffer (the gradient computed in float64), over a classic test "
                    "function, and draw the paths over its contour map with the loss "
                    "against steps.",
        epilog="examples:\n"
               "  fastopt paths --function rosenbrock --optimizers sgd,momentum,nesterov,"
               "adagrad,rmsprop,adam --steps 500 --plot paths.png\n"
               "  fastopt paths --function bumpy --gif paths.gif\n"
               f"functions: {', '.join(f'{n} ({f.story})' for n, f in FUNCTIONS.items())}")
    p.add_argument("--function", choices=tuple(FUNCTIONS), default="rosenbrock")
    p.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS), help=OPTIMIZER_HELP)
    p.add_argument("--steps", type=_shared.positive_int,
                   help="steps (default: the function's)")
    p.add_argument("--lr", type=float, help="one learning rate for all (default: each "
                                            "optimizer's for this function)")
    p.add_argument("--start", type=_point, metavar="X,Y", help="starting point")
    p.add_argument("--convention", choices=("torch", "keras"), default="torch")
    p.add_argument("--plot", metavar="FILE", help="draw the paths (.png; needs matplotlib)")
    p.add_argument("--gif", metavar="FILE", help="animate the paths (.gif; needs matplotlib)")
    p.set_defaults(func=run)


def _point(text):
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y like -1.5,2, got {text!r}") \
            from None
    return x, y


def require_plotting(*flags):
    """CLIError unless matplotlib is installed, when one of ``flags``
    ((flag, value) pairs) asks for a picture: checked before any work."""
    asked = [flag for flag, value in flags if value]
    if asked and not _plot.matplotlib_available():
        raise CLIError(f"{asked[0]} needs matplotlib: {_plot.PLOT_HINT}")


def run(args):
    require_plotting(("--plot", args.plot), ("--gif", args.gif))
    result = paths(args.function, args.optimizers, steps=args.steps, start=args.start,
                   lr=args.lr, convention=args.convention, draw=bool(args.plot))
    print(f"{FUNCTIONS[args.function].title}, {args.convention} convention:")
    print(f"{'optimizer':<28} {'lr':>9} {'steps':>6} {'final x':>10} {'final y':>10} "
          f"{'final f':>11}")
    for label in result["optimizers"]:
        run_ = result[label]
        (x, y), loss = run_["path"][-1], run_["loss"][-1]
        note = "  (diverged)" if run_["diverged"] else ""
        print(f"{label:<28} {run_['settings']['lr']:>9.3g} {len(run_['path']) - 1:>6} "
              f"{x:>10.4f} {y:>10.4f} {loss:>11.4g}{note}")
    if args.plot:
        result["figure"].savefig(args.plot, dpi=100)
        print(f"Paths drawn to {args.plot}")
    if args.gif:
        _plot.animate_paths(result, args.gif)
        print(f"Animation written to {args.gif}")
    return 0
