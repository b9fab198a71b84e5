"""The README's commands run as written, on this checkout (the docs check: `make docs-check`, part of
`make test-slow`).

Every line of a ```bash block is a command. It runs from the repository root with overrides that make it tiny
(TINY: 32 px, 2 steps, random weights, W&B off, output in a temporary folder); a `make` line runs what
`make -n` says make would run, with TINY added to its ARGS. A line that says "not run by the docs check" (a GPU
sweep, the W&B agent, the test suite itself) is checked for syntax only. A ```console block's `$ ` line runs as
written and must print the lines shown. The ```python block runs with TINY added to stylize()'s arguments.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from helpers import ROOT

NOT_RUN = "not run by the docs check"
TINY = ["model.weights=random", "data.size=32", "trainer.max_steps=2", "scales.min=0", "trainer.precision=32",
        "logger.mode=disabled", "trainer.enable_progress_bar=false", "video.max_frames=2", "video.steps_later=1",
        "sweep.cell=32"]
BIN = os.path.dirname(sys.executable)


def blocks(kind: str) -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(rf"^```{kind}\n(.*?)^```", f.read(), flags=re.S | re.M)


def commands() -> list[str]:
    """Every command line of the README's bash blocks (comments kept: they carry the NOT_RUN mark)."""
    return [line.strip() for block in blocks("bash") for line in block.splitlines() if line.strip()]


def code_of(line: str) -> str:
    """The command without its trailing comment."""
    return re.split(r"\s+#\s", line, maxsplit=1)[0].strip()


def env() -> dict:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1",
            "WANDB_MODE": "disabled"}


def make_recipe(words: list[str]) -> list[str]:
    """What make would run for `make WORDS` (its stamp taken as up to date: no reinstall), one shell line each."""
    outer = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under make
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-o", ".venv/.installed", *words], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=outer)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line.strip()]


def with_tiny(words: list[str], out: str) -> list[str]:
    """The command's words with TINY (and an output folder of the test's) added: to ARGS for make."""
    tiny = [*TINY, f"output.dir={out}"]
    if words[0] != "make":
        return [*words, *tiny]
    args = [w for w in words if w.startswith("ARGS=")]
    rest = [w for w in words if not w.startswith("ARGS=")]
    given = args[0][len("ARGS="):] if args else ""
    return [*rest, "ARGS=" + " ".join([given, *tiny]).strip()]


def test_every_readme_command_is_run_or_marked_and_parses():
    """The syntax of every line, run or not; that the tiny runs see the lines this test sorts out."""
    lines = commands()
    assert any(line.startswith("make run") for line in lines) and any(NOT_RUN in line for line in lines)
    for line in lines:
        code = code_of(line)
        proc = subprocess.run(["bash", "-n", "-c", code], capture_output=True, text=True)
        assert proc.returncode == 0, (line, proc.stderr)
        if code.startswith("make "):  # the target exists and its variables parse
            words = shlex.split(code)
            assert make_recipe(words[1:]), line


@pytest.mark.slow
@pytest.mark.parametrize("line", [c for c in commands() if NOT_RUN not in c], ids=lambda c: code_of(c)[:50])
def test_a_readme_command_runs_as_written(line, tmp_path):
    words = with_tiny(shlex.split(code_of(line)), str(tmp_path / "out"))
    if words[0] == "make":
        script = "set -e\n" + "\n".join(make_recipe(words[1:]))
    elif words[0] == ".":
        script = code_of(line)
    else:
        script = shlex.join(words)
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (line, script, proc.stdout[-2000:], proc.stderr[-3000:])


@pytest.mark.slow
def test_the_readme_console_examples_print_what_they_show(tmp_path):
    [block] = blocks("console")
    command, *shown = block.strip().splitlines()
    assert command.startswith("$ ")
    proc = subprocess.run(["bash", "-c", command[2:]], cwd=str(tmp_path), env=env(), capture_output=True,
                          text=True, timeout=300)
    assert (proc.stdout + proc.stderr).strip().splitlines() == shown


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path):
    [block] = blocks("python")
    tiny = {k.replace(".", "__"): v for k, v in (o.split("=", 1) for o in TINY if not o.startswith("sweep."))}
    prelude = ("import nst\n"  # stylize() with TINY over the example's own arguments
               "TINY = {k: (int(v) if v.isdigit() else v) for k, v in %r.items()}\n"
               "full = nst.stylize\n"
               "nst.stylize = lambda *a, **k: full(*a, **{**k, **TINY})\n" % tiny)
    proc = subprocess.run([sys.executable, "-c", prelude + block], cwd=str(tmp_path), env=env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.listdir(tmp_path) == ["tubingen_starry.png"]
