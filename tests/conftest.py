import os
import sys

# The helper modules beside the tests (reference.py, rules.py) are imported by
# name.  fastopt itself comes from the installed package: pytest runs with
# --import-mode=importlib (pyproject.toml), so the source tree is not put on
# sys.path, and an unbuilt checkout would fail with fastopt's ImportError.
sys.path.insert(0, os.path.dirname(__file__))
