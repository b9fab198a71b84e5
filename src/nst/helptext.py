"""The config keys as `--help` shows them: every key of the schema with its default and its meaning.

The meaning is the comment that the schema (schema.py) gives the field, the one beside it or the comment lines right
above it, read from the schema's source (ast and tokenize): one place for it, not a second list.
"""

from __future__ import annotations

import ast
import io
import textwrap
import tokenize
from typing import Any, Iterator


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def _meaning(node: ast.AnnAssign, lines: list[str], comments: dict[int, str]) -> str:
    """The comment beside the field (on any of its lines), else the comment lines right above it, as one line."""
    for n in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        if n in comments and not lines[n - 1].lstrip().startswith("#"):
            return comments[n]
    above, n = [], node.lineno - 1
    while n >= 1 and lines[n - 1].lstrip().startswith("#"):
        above.insert(0, comments[n])
        n -= 1
    return " ".join(above)


def meanings(source: str | None = None, root: str = "Config") -> dict[str, str]:
    """Every leaf key of the schema (`data.size`, `seed`) -> its meaning ("" where the field has no comment),
    in the schema's order. `source`: schema.py's text (default: the installed module's)."""
    if source is None:
        from . import schema
        with open(schema.__file__, encoding="utf-8") as f:
            source = f.read()
    tree = ast.parse(source)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    lines, comments = source.splitlines(), _comments(source)

    def walk(cls: ast.ClassDef, prefix: str) -> Iterator[tuple[str, str]]:
        for node in cls.body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            kind = node.annotation
            if isinstance(kind, ast.Name) and kind.id in classes:  # a section: data, model, ...
                yield from walk(classes[kind.id], f"{prefix}{node.target.id}.")
            else:
                yield f"{prefix}{node.target.id}", _meaning(node, lines, comments)
    return dict(walk(classes[root], ""))


def shown(value: Any) -> str:
    """A default as one would write it in an override: lists as [a, b], null, true/false."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def defaults() -> dict[str, Any]:
    """Every leaf key of the schema -> its default."""
    from omegaconf import OmegaConf

    from .schema import Config

    sections = {k.split(".")[0] for k in meanings() if "." in k}  # data, model, ... (not sweep.grid, a dict)

    def flat(node: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for key, value in node.items():
            if isinstance(value, dict) and f"{prefix}{key}" in sections:
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    return dict(flat(OmegaConf.to_container(OmegaConf.structured(Config))))


def key_lines(width: int = 118) -> str:
    """`  key  default  meaning` for every key of the schema, the meaning wrapped under itself."""
    values, told = defaults(), meanings()
    key_w = max(map(len, values)) + 2
    default_w = 22
    out = []
    for key, value in values.items():
        default = shown(value)
        head = f"  {key:<{key_w}}{default:<{default_w}}"
        if len(default) >= default_w:
            head = f"  {key:<{key_w}}{default}  "
        meaning = told.get(key, "")
        indent = " " * (2 + key_w + default_w)
        wrapped = textwrap.wrap(meaning, max(40, width - len(head)), break_on_hyphens=False) or [""]
        out.append((head + wrapped[0]).rstrip())
        rest = textwrap.wrap(" ".join(wrapped[1:]), max(40, width - len(indent)), break_on_hyphens=False)
        out.extend(indent + line for line in rest)
    return "\n".join(out)
