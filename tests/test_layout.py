"""The package's layout rules, read from every import statement of src/nst (function-level ones too, relative
imports resolved). Fast and torch-free: it parses source files only.

Areas, lowest first; a module may import its own area and the ones below it, never a higher one:
  base (errors, files, images, paths) < model < schema, config, commandline, keys < runner < video < sweep
  < bench, cli, api.
`schema` and `config` sit above `model` because they check layer names and weight sources against model/layers.py, and
model/ never sees the config. `commandline` (the argument parser and the fast exit that train.py and the sweep
share) reads the schema for --help, and `keys` (which config keys matter) resolves layers with it, so both
stand with `config`. `__main__` modules (the package's and each subpackage's) are entry points and may
import anything but bench/.

Every rule is asserted: each checker function below returns what breaks its rule (an empty list: it holds).
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
PACKAGE = "nst"
AREAS = {"errors": 0, "files": 0, "images": 0, "paths": 0, "model": 1, "masks": 1,
         "schema": 2, "config": 2, "commandline": 2, "keys": 2, "helptext": 2,
         "runner": 3, "video": 4, "sweep": 5,
         "bench": 6, "cli": 6, "api": 6, "masks_showcase": 6, "print_showcase": 6, "__init__": 6, "__main__": 6}
SRC_LINES, TEST_LINES = 350, 400


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. nst.runner.run
    target: str  # the module imported: nst.runner.checkpoint, or an outside one such as wandb
    name: str  # the name taken from it (`from x import name`), "" for `import x`
    line: int
    local: bool  # inside a function or class body, not at the top of the module


def source_files() -> dict[str, str]:
    """Module name -> file path, for every module of the package (a package's own name for its __init__)."""
    found = {}
    for folder, _, files in os.walk(os.path.join(SRC, PACKAGE)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                parts = os.path.relpath(path, SRC)[:-3].split(os.sep)
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return dict(sorted(found.items()))


def is_package(module: str, files: dict[str, str]) -> bool:
    return files.get(module, "").endswith("__init__.py")


def imports(files: dict[str, str] | None = None) -> list[Import]:
    """Every import statement of the package, wherever it stands; `from .x import y` counts as an import of
    the module x.y when y is a module, else of x."""
    files = files or source_files()
    found = []
    for module, path in files.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        package = module if is_package(module, files) else module.rpartition(".")[0]
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(module, a.name, "", node.lineno, id(node) not in top) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                origin = ".".join(base + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f"{origin}.{a.name}"
                    target = sub if sub in files else origin
                    found.append(Import(module, target, "" if target == sub else a.name, node.lineno,
                                        id(node) not in top))
    return found


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def internal(files: dict[str, str] | None = None) -> list[Import]:
    files = files or source_files()
    return [i for i in imports(files) if i.target in files]


def where(i: Import) -> str:
    return f"{i.module}:{i.line} imports {i.target}{'.' + i.name if i.name else ''}"


def cycles(edges: list[Import]) -> list[list[str]]:
    """The import circles: each strongly connected component of more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for i in edges:
        if i.target != i.module:
            graph.setdefault(i.module, set()).add(i.target)
            graph.setdefault(i.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def upward_imports() -> list[str]:
    """Imports of a higher area from a lower one (`__main__` modules exempt)."""
    return [where(i) for i in internal()
            if not i.module.endswith("__main__") and AREAS[area(i.module)] < AREAS[area(i.target)]]


def bench_imports() -> list[str]:
    return [where(i) for i in internal() if area(i.target) == "bench" and area(i.module) != "bench"]


def underscore_imports(files: dict[str, str] | None = None) -> list[str]:
    """`from x import _name` where x is another module (a package's own __init__ taking a private name from
    one of its modules counts too)."""
    return [where(i) for i in imports(files) if i.name.startswith("_") and not i.name.startswith("__")]


def test_the_checker_reads_function_level_and_relative_imports():
    found = {(i.module, i.target, i.name): i for i in imports()}
    late = found[("nst.cli", "nst.config", "load_config")]  # inside main(), two dots resolved
    assert late.local
    assert ("nst.runner.run", "nst.runner.checkpoint", "") in found  # `from . import checkpoint`: a module
    assert ("nst.model.module", "nst.images", "fit_size") in found  # `from ..images import fit_size`
    assert any(i.target == "wandb" and i.local for i in imports())  # `import wandb` inside a function


def test_the_checker_finds_a_circle():
    def edge(a, b):
        return Import(a, b, "", 1, False)
    assert cycles([edge("a", "b"), edge("b", "c"), edge("c", "a"), edge("c", "d")]) == [["a", "b", "c"]]
    assert cycles([edge("a", "b"), edge("b", "c")]) == []


def test_no_import_circles():
    assert cycles(internal()) == []


def test_no_lower_area_imports_a_higher_one():
    assert set(map(area, source_files())) <= set(AREAS), "a new top-level module needs a place in AREAS"
    assert upward_imports() == []


def test_no_underscore_names_imported_across_modules():
    assert underscore_imports() == []


def test_the_tests_import_no_underscore_names_either():
    files = {}
    for folder, _, names in os.walk(os.path.join(ROOT, "tests")):
        for f in names:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3]
                files[rel.replace(os.sep, ".")] = os.path.join(folder, f)
    assert underscore_imports(files) == []


def test_nothing_outside_bench_imports_bench():
    assert bench_imports() == []


def test_one_module_outside_bench_calls_fit():
    """runner/loop.py's `fit` is the seam: image runs, a sweep's batches, video frames and the benchmarks go
    through it, and video/ builds its frames with the seam's API, not with runner/run.py's helpers."""
    assert fit_callers() == []
    assert {f.split(":")[0] for f in fit_callers(every=True)} == {"nst.runner.loop"}
    assert [where(i) for i in internal() if area(i.module) == "video" and i.target == "nst.runner.run"] == []


def test_no_src_file_is_over_the_limit():
    assert long_files("src", SRC_LINES) == []

def wandb_importers() -> list[str]:
    """wandb imported by one module only."""
    found = sorted({i.module for i in imports() if i.target.split(".")[0] == "wandb"})
    return found if len(found) > 1 else []


def test_wandb_is_imported_by_one_module_only():
    assert wandb_importers() == []
    found = [i for i in imports() if i.target.split(".")[0] == "wandb"]
    assert {i.module for i in found} == {"nst.runner.wandb"}
    assert all(i.local for i in found), "wandb takes half a second to import: only inside the functions that log"


def test_no_test_file_is_over_the_limit():
    assert long_files("tests", TEST_LINES) == []


# More checkers. Each returns what breaks its rule; an empty list means the rule holds.


def fit_callers(every: bool = False) -> list[str]:
    """`.fit(` called in one module outside bench/ (calls, not the word in a docstring); `every`: all the calls."""
    found = []
    for module, path in source_files().items():
        if area(module) != "bench":
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            found += [f"{module}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, ast.Call)
                      and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"]
    return found if every or len({f.split(":")[0] for f in found}) > 1 else []


def long_files(folder: str, limit: int) -> list[str]:
    found = []
    for base, _, files in os.walk(os.path.join(ROOT, folder)):
        for f in sorted(files):
            if f.endswith(".py"):
                with open(os.path.join(base, f), encoding="utf-8") as text:
                    n = sum(1 for _ in text)
                if n > limit:
                    found.append(f"{os.path.relpath(os.path.join(base, f), ROOT)}: {n} lines")
    return sorted(found)
