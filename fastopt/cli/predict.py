"""``fastopt predict``: the predicted digit and top probabilities of images
(.npy arrays, PNG files, or MNIST test images by index)."""
import os

import numpy as np

from fastopt._validate import check_int
import fastopt.cli._shared as _shared
from fastopt.cli._shared import CLIError


def add_parser(sub):
    p = _shared.add_command(
        sub, "predict", help="classify images with a saved model",
        description="Predicted digit and top probabilities for images: .npy arrays "
                    "(N, 28, 28) or (28, 28), PNG files (needs matplotlib), or MNIST test "
                    "images by index. Options may come before, between or after the files.",
        epilog="examples:\n  fastopt predict model.npz --test-index 0,1,2\n"
               "  fastopt predict model.npz digits.npy\n"
               "  fastopt predict model.npz --top 5 d0.png d1.png")
    p.add_argument("model")
    p.add_argument("images", nargs="*", help=".npy or .png files")
    p.add_argument("--test-index", type=_shared.int_list, metavar="I,J,...",
                   help="MNIST test images to classify")
    _shared.add_data_option(p)
    p.add_argument("--top", type=_shared.positive_int, default=3)
    p.add_argument("--invert", action="store_true",
                   help="invert grey levels (for dark digits on a light background)")
    p.set_defaults(func=run)


def run(args):
    model = _shared.load_model(args.model)
    items = _file_items(args.images, args.invert)
    if args.test_index:
        items += _test_items(args.test_index, args.data)
    if not items:
        raise CLIError("nothing to predict: give image files or --test-index")
    x = np.stack([img for _, img, _ in items])
    _shared.check_inputs(model, x)
    probs = model.predict(x)
    for (name, _, label), p in zip(items, probs):
        top = np.argsort(-p)[:args.top]
        ranked = ", ".join(f"{c} {p[c]:.1%}" for c in top)
        truth = "" if label is None else f"   label {label}" + ("" if top[0] == label
                                                              else "  (wrong)")
        print(f"{name}: {top[0]}   ({ranked}){truth}")
    return 0


def _file_items(paths, invert):
    """(name, flat image, None) for every image in the files."""
    items = []
    for path in paths:
        if not os.path.exists(path):
            raise CLIError(f"{path}: no such file")
        images = _read_images(path, invert)
        items += [(f"{path}[{i}]" if len(images) > 1 else path, img, None)
                  for i, img in enumerate(images)]
    return items


def _test_items(indices, data):
    """(name, flat image, label) for the MNIST test images at ``indices``."""
    _, (xt, yt) = _shared.load_data(data)
    for i in indices:
        check_int(i, "--test-index", minimum=0, maximum=len(xt) - 1)
    return [(f"test[{i}]", xt[i], int(yt[i])) for i in indices]


def _read_images(path, invert):
    if path.endswith(".npy"):
        images = _read_npy(path)
    elif path.lower().endswith(".png"):
        images = _read_png(path)
    else:
        raise CLIError(f"{path}: images must be .npy arrays or .png files")
    if invert:
        images = 1 - images
    return images.reshape(len(images), -1)


def _read_npy(path):
    """(N, H, W) float32 images from a .npy file, uint8 scaled to [0, 1]."""
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CLIError(f"{path}: not a readable .npy file ({exc})") from None
    if images.ndim == 2:
        images = images[None]
    return images.astype(np.float32) / (255 if images.dtype == np.uint8 else 1)


def _read_png(path):
    """A (1, H, W) float32 grey image from a PNG (colour channels averaged)."""
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
    return image[None].astype(np.float32)
