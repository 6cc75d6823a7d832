"""The reference frameworks the parity tests drive, imported on demand."""
import os

import pytest


def keras_on_torch():
    """Keras 3 on its torch backend (the test is skipped without it)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("these tests drive Keras on its torch backend")
    return keras
