"""The package's shape: no import cycles among fastopt's modules (counting
imports inside functions), short functions and modules.

All read the installed package's sources with ``ast``.  The layering test
holds the tree to the picture in docs/architecture.md: a module imports only
modules of its own layer or of the layers below it.
"""
import ast
from pathlib import Path

import fastopt

ROOT = Path(fastopt.__file__).parent
_MAX_FUNCTION_LINES = 60
_MAX_MODULE_LINES = 400
# The layers of docs/architecture.md, lowest first; a module belongs to the
# layer of the longest prefix that names it.
_LAYERS = (
    ("fastopt._validate", "fastopt._objectives", "fastopt._io", "fastopt._openmp",
     "fastopt._placement", "fastopt.datasets"),
    ("fastopt.optim", "fastopt.distributed"),
    ("fastopt.training",),
    ("fastopt", "fastopt.callbacks", "fastopt.checkpoint", "fastopt.layers", "fastopt.losses",
     "fastopt.metrics", "fastopt.schedules", "fastopt.search"),
    ("fastopt.cli", "fastopt.__main__", "fastopt.viz", "fastopt.torch"),
)


def _modules():
    """Dotted module name -> source path, for every .py file of fastopt."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(module, path, modules):
    """The fastopt modules ``module`` imports anywhere in its source: a
    ``from package import name`` counts as importing the submodule
    ``package.name`` when there is one, else ``package``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules and n != module)
    return found


def _cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imported(m, p, modules) for m, p in modules.items()}
    assert "fastopt.training.model" in graph  # the walk sees the package
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _layer(module):
    """The index in _LAYERS of ``module``'s layer."""
    best, found = -1, None
    for i, layer in enumerate(_LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found is not None, f"{module} is in no layer of docs/architecture.md"
    return found


def test_no_module_imports_a_higher_layer():
    modules = _modules()
    upward = [f"{m} imports {n}" for m, p in modules.items()
              for n in sorted(_imported(m, p, modules)) if _layer(n) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_functions_and_modules_are_short():
    too_long = []
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > _MAX_MODULE_LINES:
            too_long.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > _MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {lines} lines")
    assert not too_long, "\n".join(too_long)
