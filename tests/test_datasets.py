"""MNIST loading and the IDX reader's validation."""
import gzip
import hashlib
import os
import shutil
import struct
from importlib import resources

import numpy as np
import pytest

from fastopt.datasets import MNIST_FILES, DataFileError, load_mnist, read_idx

# MD5 of the canonical uncompressed files: the well-known sums of the IDX files
# as their authors publish them (uncompressed, so independent of gzip's output)
CANONICAL_MD5 = {"x_train": "6bbc9ace898e44ae57da46a324031adb",
                 "y_train": "a25bea736e30d166cdddb491f175f624",
                 "x_test": "2646ac647ad5339dbf082846283269ea",
                 "y_test": "27ae3e4e09519cfbb04c329615203637"}


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def _bundled_dir():
    """fastopt/data/mnist of the installed package, as load_mnist() finds it."""
    return resources.files("fastopt") / "data" / "mnist"


def _sha256sums(text):
    """{file name: hex digest} from the lines of a SHA256SUMS file."""
    pairs = (line.split() for line in text.splitlines() if line.strip())
    return {name.lstrip("*"): digest for digest, name in pairs}


def _idx_bytes(array, magic_type=0x08):
    header = struct.pack(">BBBB", 0, 0, magic_type, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_bundled_mnist_is_keras_shaped(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert set(np.unique(y_train)) == set(range(10))
    assert y_train[:5].tolist() == [5, 0, 4, 1, 9]  # MNIST's well-known first labels
    assert x_train.flags.writeable and x_train.flags.c_contiguous


def test_bundled_mnist_is_byte_identical_to_canonical(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for key, array in arrays.items():
        raw = _idx_bytes(array)
        assert hashlib.md5(raw).hexdigest() == CANONICAL_MD5[key], key


def test_bundled_files_match_their_sha256sums():
    directory = _bundled_dir()
    sums = _sha256sums((directory / "SHA256SUMS").read_text())
    assert set(sums) == {stem + ".gz" for stem in MNIST_FILES.values()}
    for name, digest in sums.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest, name


def _write_dir(tmp_path, arrays, compress):
    for key, stem in MNIST_FILES.items():
        data = _idx_bytes(arrays[key])
        if compress:
            with gzip.open(tmp_path / (stem + ".gz"), "wb") as f:
                f.write(data)
        else:
            (tmp_path / stem).write_bytes(data)
    return tmp_path


def _small():
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 256, (7, 28, 28)), "y_train": rng.integers(0, 10, 7),
            "x_test": rng.integers(0, 256, (3, 28, 28)), "y_test": rng.integers(0, 10, 3)}


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_load_from_directory(tmp_path, compress):
    arrays = _small()
    (x_train, y_train), (x_test, y_test) = load_mnist(_write_dir(tmp_path, arrays, compress))
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_load_from_shared_copy():
    """An extra where the project's shared/ directory lies beside the checkout:
    its copy loads, and its files are the bundled ones byte for byte."""
    shared = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "mnist")
    if not os.path.isdir(shared):
        pytest.skip("shared/ is not beside this checkout")
    (x, y), _ = load_mnist(shared)
    assert x.shape == (60000, 28, 28)
    bundled = _sha256sums((_bundled_dir() / "SHA256SUMS").read_text())
    for name, digest in bundled.items():
        with open(os.path.join(shared, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name


def _corrupt(tmp_path, key, data):
    _write_dir(tmp_path, _small(), compress=False)
    path = tmp_path / MNIST_FILES[key]
    path.write_bytes(data(path.read_bytes()))
    return path


@pytest.mark.parametrize("key,mutate,match", [
    ("x_train", lambda b: b[:-10], "truncated: header promises"),
    ("y_train", lambda b: b + b"\x00", "has data past"),
    ("x_test", lambda b: b"\x00\x00\x08\x01" + b[4:], "expected 3 dimensions"),
    ("y_test", lambda b: b"\x12\x34" + b[2:], "bad magic number"),
    ("x_train", lambda b: b"", "bad magic number empty"),
    ("x_train", lambda b: b[:10], "truncated header"),
    ("x_train", lambda b: b[:4] + struct.pack(">III", 2**31, 2**31, 2**31) + b[16:],
     "more than any IDX file"),
])
def test_corrupt_files_are_named(tmp_path, key, mutate, match):
    path = _corrupt(tmp_path, key, mutate)
    with pytest.raises(DataFileError, match=match) as info:
        load_mnist(tmp_path)
    assert str(path) in str(info.value)


def test_count_mismatch_names_both_files(tmp_path):
    arrays = _small()
    arrays["y_train"] = arrays["y_train"][:5]
    _write_dir(tmp_path, arrays, compress=True)
    with pytest.raises(DataFileError, match=r"holds 7 images but .*train-labels.* holds 5"):
        load_mnist(tmp_path)


def test_gz_name_without_gzip_content(tmp_path):
    _write_dir(tmp_path, _small(), compress=False)
    stem = MNIST_FILES["x_train"]
    shutil.move(tmp_path / stem, tmp_path / (stem + ".gz"))
    with pytest.raises(DataFileError, match="named .gz but is not gzip-compressed"):
        load_mnist(tmp_path)


def test_truncated_gzip(tmp_path):
    _write_dir(tmp_path, _small(), compress=True)
    path = tmp_path / (MNIST_FILES["x_train"] + ".gz")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataFileError, match=str(path)):
        load_mnist(tmp_path)


def test_missing_files_and_directory(tmp_path):
    with pytest.raises(DataFileError, match="has no train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(DataFileError, match="not a directory"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(DataFileError, match="no such file"):
        read_idx(tmp_path / "nope")
