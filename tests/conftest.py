import os
import sys

import pytest

# The helper modules in tests/support/ (reference.py, rules.py) are imported by
# name.  fastopt itself comes from the installed package: pytest runs with
# --import-mode=importlib (pyproject.toml), so the source tree is not put on
# sys.path, and an unbuilt checkout would fail with fastopt's ImportError.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))


@pytest.fixture(params=[True, False], ids=["prefetch", "no-prefetch"])
def prefetch(request):
    """Both prefetch settings, whatever this CPU's default, restored after."""
    from fastopt import _kernels

    default = _kernels.build_info()["prefetch"]
    _kernels.set_prefetch(request.param)
    yield request.param
    _kernels.set_prefetch(default)
