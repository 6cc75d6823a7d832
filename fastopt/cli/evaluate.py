"""``fastopt evaluate``: loss, accuracy and per-class accuracy of a saved model
on the MNIST test set."""
import numpy as np

import fastopt.cli._shared as _shared


def add_parser(sub):
    e = _shared.add_command(
        sub, "evaluate", help="evaluate a saved model on the MNIST test set",
        description="Loss, accuracy and per-class accuracy of a saved model (or checkpoint) "
                    "on the MNIST test set.",
        epilog="example:\n  fastopt evaluate model.npz --data ~/mnist")
    e.add_argument("model", help="a file written by `fastopt train --save` or --checkpoint")
    _shared.add_data_option(e)
    e.set_defaults(func=run)


def run(args):
    model = _shared.load_model(args.model)
    _, (xt, yt) = _shared.load_data(args.data)
    _shared.check_inputs(model, xt)
    loss, acc = model.evaluate(xt, yt)
    pred = model.predict(xt).argmax(1)
    print(f"{args.model}: MLP {_shared.architecture(model.layer_sizes)} on "
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
