"""`make bench-gpu`: every GPU figure of docs/benchmarks.md in one bounded run, for whoever has a GPU for a few minutes.

Each measurement is a command of this repo run as a subprocess with its own time limit; its output goes to
bench_gpu.log and its figures to bench_gpu.json as soon as it ends, so a run cut short still leaves what it
measured. Both go to $OUT when that is set (a lent GPU machine), else to outputs/; the runs' own outputs go to a
temporary folder. At most --budget seconds (450 by default).

    python -m nst.bench.gpu                  # everything
    python -m nst.bench.gpu --only floor run # some of it
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

SWEEP = ["--config", "configs/sweep.yaml", "data.size=512", "trainer.max_steps=200", "logger.mode=offline"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
# name: (seconds allowed, command); {work} is the folder for the runs' outputs
STEPS = {  # the most wanted first: a run cut short by its time budget still has them
    "device": (20, [sys.executable, "-c", "import torch, lightning; from nst.runner.hardware import describe_device; "
                                          "print(describe_device(), 'torch', torch.__version__, 'lightning', "
                                          "lightning.__version__)"]),
    "floor": (100, [sys.executable, "-m", "nst.bench", "--quick", "--sizes", "512", "1024", "2048", "--skip-pastiche",
                    "--out", "{work}/bench_speed.json"]),
    "run": (45, [sys.executable, "train.py", "--config", "configs/starry.yaml", "logger.mode=offline",
                 "output.dir={work}/run", "trainer.enable_progress_bar=false"]),
    "sweep_batched": (50, [sys.executable, "-m", "nst.sweep", *SWEEP, "sweep.batch=auto", "output.dir={work}/sweepb"]),
    "sweep_1_process": (90, [sys.executable, "-m", "nst.sweep", *SWEEP, "sweep.batch=1", "output.dir={work}/sweep1"]),
    "sweep_4_processes": (70, [*TORCHRUN, "--nproc_per_node=4", "-m", "nst.sweep", *SWEEP, "sweep.batch=1",
                                "output.dir={work}/sweep4"]),
    "gpu_tests": (90, [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"]),
    "batch_floor": (45, [sys.executable, "-m", "nst.bench.sweep", "--batch-probe", "--size", "512",
                         "--batches", "1", "4", "16", "32"]),
    "graphs": (75, [sys.executable, "-m", "nst.bench.graphs", "--size", "512"]),
    "run_cudnn_benchmark": (45, [sys.executable, "train.py", "--config", "configs/starry.yaml", "logger.mode=offline",
                                 "output.dir={work}/run_benchmark", "trainer.enable_progress_bar=false",
                                 "trainer.cudnn_benchmark=true"]),
}


def figures(name: str, work: str, log: str, seconds: float) -> dict:
    """The numbers a step's output or files hold."""
    found: dict = {"seconds": round(seconds, 1)}
    if name.startswith("run"):
        folder = os.path.join(work, "run" if name == "run" else "run_benchmark")
        with open(os.path.join(folder, "metrics.json")) as f:
            m = json.load(f)
        found.update(optimization_seconds=m["seconds"], command_seconds=round(seconds, 1), loss=m["loss"],
                     evaluations=m["evaluations"])
    elif name.startswith("sweep"):
        done = re.search(r"(\d+) done, (\d+) already complete, (\d+) failed, in ([\d.]+) s", log)
        if done:
            pairs = int(done.group(1))
            found.update(pairs=pairs, failed=int(done.group(3)), sweep_seconds=float(done.group(4)),
                         pairs_per_hour=round(pairs / seconds * 3600))
    elif name == "floor":
        with open(os.path.join(work, "bench_speed.json")) as f:
            found["sizes"] = {size: {"floor_ms": r["floor"]["ms"], "ours_ms_per_eval": r["ours"]["ms_per_eval"],
                                     "ours_over_floor": r["ours_over_floor"], "peak_mb": r["ours"]["peak_mb"]}
                              for size, r in json.load(f)["sizes"].items()}
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(STEPS), help="run only these measurements")
    p.add_argument("--out", default=os.environ.get("OUT") or "outputs", help="folder for the log and the report")
    p.add_argument("--budget", type=float, default=450, help="seconds for everything: later steps get what is left")
    p.add_argument("--work", help="folder for the runs' own outputs (default: a temporary folder), apart from --out, "
                                  "which gets only the report and the log")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    work = args.work or tempfile.mkdtemp(prefix="nst-bench-gpu-")
    log_path, report_path = os.path.join(args.out, "bench_gpu.log"), os.path.join(args.out, "bench_gpu.json")
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "steps": {}}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.abspath("src"), env.get("PYTHONPATH")]))
    began = time.time()
    for name in args.only or list(STEPS):
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
            try:
                proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      timeout=limit, env=env)
                text, status = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as e:
                text, status = (e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""), "timeout"
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
    print(f"wrote {report_path} and {log_path}")
    return 0 if all(s["status"] == 0 for s in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
