import os
import sys

# The helper modules in tests/support/ (reference.py, rules.py) are imported by
# name.  fastopt itself comes from the installed package: pytest runs with
# --import-mode=importlib (pyproject.toml), so the source tree is not put on
# sys.path, and an unbuilt checkout would fail with fastopt's ImportError.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
