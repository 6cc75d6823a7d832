"""Datasets: MNIST in its standard IDX format.

``load_mnist()`` returns what ``keras.datasets.mnist.load_data()`` returns,
from a copy of MNIST shipped inside fastopt (no network needed), or from any
directory holding the four standard IDX files, gzip-compressed or not.
"""
import gzip
import math
import os
from importlib import resources

import numpy as np

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# IDX type codes (third byte of the magic number) -> dtype of the data
_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_ELEMENTS = 1 << 31  # no IDX file we read holds more; guards absurd headers


class DataFileError(ValueError):
    """A data file is missing, truncated, oversized or not what it claims."""


def _open(path):
    with open(path, "rb") as f:
        head = f.read(2)
    if head == _GZIP_MAGIC:
        return gzip.open(path, "rb")
    if path.endswith(".gz"):
        raise DataFileError(f"{path}: named .gz but is not gzip-compressed")
    return open(path, "rb")


def read_idx(path, expect_ndim=None):
    """Read one IDX file (optionally gzip-compressed) into a NumPy array.

    The header is validated: magic number, data type, number of dimensions
    (``expect_ndim``), and a payload of exactly the size the header states
    (truncated and oversized files are rejected).  Errors are
    :class:`DataFileError` naming the file.
    """
    path = os.fspath(path)
    try:
        f = _open(path)
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataFileError(f"{path}: is a directory, not an IDX file") from None
    try:
        with f:
            header = f.read(4)
            if len(header) < 4 or header[:2] != b"\x00\x00" or header[2] not in _IDX_DTYPES:
                raise DataFileError(f"{path}: not an IDX file (bad magic number "
                                    f"{header.hex() or 'empty'})")
            dtype, ndim = _IDX_DTYPES[header[2]], header[3]
            if expect_ndim is not None and ndim != expect_ndim:
                raise DataFileError(f"{path}: expected {expect_ndim} dimensions in the "
                                    f"header, found {ndim}")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DataFileError(f"{path}: truncated header")
            shape = tuple(int(d) for d in np.frombuffer(dims_raw, ">u4"))
            count = math.prod(shape)  # exact: a hostile header must not overflow
            if count > _MAX_ELEMENTS:
                raise DataFileError(f"{path}: header claims {count:,} elements, "
                                    f"more than any IDX file this reader accepts")
            nbytes = count * dtype.itemsize
            data = f.read(nbytes + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFileError(f"{path}: could not be read ({exc})") from None
    if len(data) < nbytes:
        raise DataFileError(f"{path}: truncated: header promises {nbytes:,} bytes of data "
                            f"for shape {shape}, found {len(data):,}")
    if len(data) > nbytes:
        raise DataFileError(f"{path}: has data past the {nbytes:,} bytes its header "
                            f"declares for shape {shape}")
    # astype copies: a writable array in native byte order
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise DataFileError(f"{directory}: has no {stem} (nor {stem}.gz)")


def load_mnist(path=None):
    """MNIST as ``(x_train, y_train), (x_test, y_test)``.

    Exactly as ``keras.datasets.mnist.load_data()``: uint8 images of shape
    (N, 28, 28) and uint8 labels of shape (N,), 60,000 for training and
    10,000 for test.  With no ``path``, the copy shipped inside fastopt is
    used (CC BY-SA 3.0, Y. LeCun, C. Cortes, C. J. C. Burges).  Otherwise
    ``path`` is a directory with the four standard files
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
    ``.gz``), which may be any dataset in MNIST's format.
    """
    if path is None:
        with resources.as_file(resources.files("fastopt") / "data" / "mnist") as bundled:
            return load_mnist(bundled)
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise DataFileError(f"{directory}: not a directory (expected one holding the four "
                            f"MNIST IDX files)")
    arrays = {}
    for key, stem in MNIST_FILES.items():
        file = _find(directory, stem)
        arrays[key] = read_idx(file, expect_ndim=3 if key.startswith("x") else 1)
        arrays[key + "_file"] = file
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise DataFileError(f"{arrays['x_' + split + '_file']}: expected uint8 data")
        if len(x) != len(y):
            raise DataFileError(f"{arrays['x_' + split + '_file']} holds {len(x):,} images "
                                f"but {arrays['y_' + split + '_file']} holds {len(y):,} labels")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
