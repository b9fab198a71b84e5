"""nst installed from a wheel into a venv outside the checkout: the commands, and the showcase from anywhere."""

import os
import shutil
import site
import subprocess
import sys

import pytest

from helpers import ROOT


@pytest.mark.slow  # builds a wheel and a venv: about 14 s
def test_installed_nst_commands_work_outside_the_checkout(tmp_path):
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("building the wheel offline needs setuptools>=77 in this environment")
    tree = tmp_path / "tree"  # a copy: building leaves build/ and *.egg-info behind
    for name in ("src", "assets", "configs", "pyproject.toml", "README.md", "LICENSE"):
        (shutil.copytree if os.path.isdir(os.path.join(ROOT, name)) else shutil.copy)(
            os.path.join(ROOT, name), tree / name)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout on the path
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "whl"),
                    str(tree)], check=True, capture_output=True, timeout=240, env=clean)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120, env=clean)
    [wheel] = (tmp_path / "whl").glob("nst-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "-q", "install",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, timeout=240, env=clean)
    # the dependencies are this environment's (nothing is downloaded); nst itself only from the wheel
    [packages] = [p for p in (venv / "lib").glob("python*/site-packages")]
    (packages / "zz-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**clean, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}

    def run(*cmd):
        return subprocess.run([str(c) for c in cmd], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=240)

    for cmd in ([venv / "bin" / "nst", "--help"], [venv / "bin" / "python", "-m", "nst", "--help"]):
        proc = run(*cmd)
        assert proc.returncode == 0 and "data.content" in proc.stdout and "loss.style_weight" in proc.stdout, proc
    proc = run(venv / "bin" / "nst-sweep", "--help")
    assert proc.returncode == 0 and "sweep.contents" in proc.stdout, proc.stderr
    proc = run(venv / "bin" / "nst", "--print-config")
    assert proc.returncode == 0 and str(venv) in proc.stdout and "tubingen.jpg" in proc.stdout, proc.stderr
    proc = run(venv / "bin" / "nst", "--list-configs")  # the example configs come with the wheel
    assert proc.returncode == 0 and "starry" in proc.stdout and "video" in proc.stdout, proc.stderr
    proc = run(venv / "bin" / "nst", "--config", "starry", "--print-config")
    assert proc.returncode == 0 and "starry_night.jpg" in proc.stdout and str(venv) in proc.stdout, proc.stderr
    proc = run(venv / "bin" / "python", "-c", "import nst; print(nst.__file__)")
    assert proc.stdout.startswith(str(venv)), proc.stdout  # not the checkout's
    # the default content and style are the shipped showcase images
    proc = run(venv / "bin" / "nst", "data.size=32", "trainer.max_steps=2", "model.weights=random",
               "trainer.enable_progress_bar=false", "output.dir=out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (elsewhere / "out" / "final.png").exists()
