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


@pytest.fixture
def one_torch_thread():
    """Deterministic and fast on a shared machine: torch on one thread
    (a test module uses it with ``pytestmark = pytest.mark.usefixtures``
    after ``from frameworks import one_torch_thread``)."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
