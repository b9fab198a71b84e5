"""The documentation names only what exists: every file path and every `make` target in README.md and docs/*.md.

Fast and torch-free: it reads text files only.

Which strings are paths:
- every relative link and image target, `[text](path#anchor)`: the file relative to the document, and the
  anchor a heading of the file it points to;
- every other word with a slash that starts at a folder of the repository (`configs/`, `src/nst/...`,
  `docs/...`, `tests/...`) or of the package (`model/lbfgs.py` is src/nst/model/lbfgs.py), or that ends in a
  source or document suffix (.py, .yaml, .md, .toml): it must exist relative to the repository, the document's
  folder or src/nst.
A path that .gitignore ignores (outputs/, .venv/, *.ckpt, ...) is written by a run, not kept in the repository,
and is not checked; nor are globs and placeholders (`photos/*.jpg`, `<output.dir>/...`, `$TORCH_HOME/...`).
"""

from __future__ import annotations

import fnmatch
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "src", "nst")
CHECKED_SUFFIXES = (".py", ".yaml", ".yml", ".md", ".toml")

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
# A path: parts of word characters, dots and hyphens joined by slashes, not part of a longer token (a glob, a
# placeholder, a variable): the characters around it must not be path characters or * ? < > $ { } ~.
PATH = re.compile(r"(?<![\w./*?<>${}~\\-])([\w.-]+(?:/[\w.-]+)*/?)(?![\w./*?<>${}~-])")
MAKE = re.compile(r"\bmake((?:\s+[A-Z_]+=\S+)*)\s+([a-z][\w-]*)")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
MAKE_TARGET = re.compile(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", re.M)


def documents() -> list[str]:
    docs = os.path.join(ROOT, "docs")
    return ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(docs) if f.endswith(".md"))


def read(rel: str) -> str:
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def ignore_patterns() -> list[str]:
    return [line.strip() for line in read(".gitignore").splitlines() if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .gitignore ignores the path: a pattern `x/` ignores a folder named x and all below it, any other
    pattern a file or folder whose name matches it."""
    parts = [p for p in path.split("/") if p]
    folders = parts if path.endswith("/") else parts[:-1]
    for pattern in patterns:
        if pattern.endswith("/"):
            if any(fnmatch.fnmatch(p, pattern.rstrip("/")) for p in folders):
                return True
        elif any(fnmatch.fnmatch(p, pattern) for p in parts):
            return True
    return False


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(rel: str) -> set[str]:
    text = re.sub(r"```.*?```", "", read(rel), flags=re.S)
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M):
        s = slug(heading)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def links(rel: str) -> list[str]:
    text = read(rel)
    return [t for t in LINK.findall(text) if not URL.match(t) and not t.startswith("mailto:")]


def top_folders() -> set[str]:
    """The folders a repository path starts with: the repository's own (not ignored, not hidden) and the
    package's subpackages."""
    patterns = ignore_patterns()
    repo = {d for d in os.listdir(ROOT) if os.path.isdir(os.path.join(ROOT, d)) and not d.startswith(".")
            and not ignored(d + "/", patterns)}
    package = {d for d in os.listdir(PACKAGE) if os.path.isdir(os.path.join(PACKAGE, d)) and d != "__pycache__"}
    return repo | package


def named_paths(rel: str) -> list[str]:
    """The words of a document that name repository files (see the module's docstring)."""
    text = URL.sub(" ", read(rel))
    folders, patterns = top_folders(), ignore_patterns()
    out = []
    for path in PATH.findall(text):
        if "/" not in path or path.startswith("/") or ignored(path, patterns):
            continue
        first = path.split("/")[0]
        if first in folders or path.rstrip("/").endswith(CHECKED_SUFFIXES):
            out.append(path)
    return out


def exists(path: str, rel: str) -> bool:
    bases = (ROOT, os.path.join(ROOT, os.path.dirname(rel)), PACKAGE)
    return any(os.path.exists(os.path.join(base, path)) for base in bases)


def makefile_targets() -> set[str]:
    return set(MAKE_TARGET.findall(read("Makefile")))


def make_targets(rel: str) -> list[str]:
    """`make TARGET` in code spans and code blocks (prose uses "make" as a verb)."""
    return [m.group(2) for code in CODE.findall(read(rel)) for m in MAKE.finditer(code)]


@pytest.mark.parametrize("rel", documents())
def test_every_link_points_to_a_file_and_heading_that_exist(rel):
    broken = []
    for target in links(rel):
        path, _, anchor = target.partition("#")
        file = os.path.normpath(os.path.join(os.path.dirname(rel), path)) if path else rel
        if not os.path.exists(os.path.join(ROOT, file)):
            broken.append(f"{target}: no file {file}")
        elif anchor and file.endswith(".md") and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file}")
    assert not broken, f"{rel}: broken links: {broken}"


@pytest.mark.parametrize("rel", documents())
def test_every_named_path_exists(rel):
    missing = sorted({p for p in named_paths(rel) if not exists(p, rel)})
    assert not missing, f"{rel} names files that are not in the repository: {missing}"


@pytest.mark.parametrize("rel", documents())
def test_every_make_target_named_is_in_the_makefile(rel):
    named = make_targets(rel)
    unknown = sorted(set(named) - makefile_targets())
    assert not unknown, f"{rel} names make targets the Makefile does not have: {unknown}"


def test_the_checks_see_paths_and_targets():
    """The rules above find what they are meant to, so that an empty match cannot pass for a clean page."""
    readme = named_paths("README.md")
    assert "configs/starry.yaml" in readme and "src/nst/schema.py" in readme
    assert not any(p.startswith(("outputs/", ".venv/")) for p in readme)
    assert {"run", "test"} <= set(make_targets("README.md"))
    assert ignored("outputs/starry/final.png", ignore_patterns()) and not ignored("docs/sweep.md", ignore_patterns())
    text = "see `photos/*.jpg`, <output.dir>/x.png, $TORCH_HOME/hub/y.pth and configs/x.yaml"
    assert [p for p in PATH.findall(text) if "/" in p] == ["configs/x.yaml"]
    assert not exists("configs/nope.yaml", "README.md")


def test_the_layout_names_every_module():
    """docs/layout.md lists every module of the package, so a new one cannot go unmentioned."""
    layout = re.search(r"```(.*?)```", read("docs/layout.md"), flags=re.S)
    assert layout, "docs/layout.md has no code block"
    modules = {f for _, _, files in os.walk(PACKAGE) for f in files
               if f.endswith(".py") and f not in ("__init__.py", "__main__.py")}
    missing = sorted(m for m in modules if not re.search(rf"(?<![\w.]){re.escape(m)}\b", layout.group(1)))
    assert not missing, f"docs/layout.md leaves out {missing}"
