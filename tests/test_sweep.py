"""The sweep: content x style pairs over several processes (real torchrun, real W&B offline runs), resume,
failures, SLURM's variables, and the sweep config's errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from PIL import Image

from helpers import ROOT
from helpers.sweeps import CELL, CONTENTS, PAIRS, STYLES, env_for, ran, start, summary, sweep, tiny, torchrun
from helpers.wandb_records import offline_runs

def test_torchrun_two_processes_each_pair_once_grouped_in_wandb_and_a_rerun_redoes_only_a_lost_pair(tmp_path):
    out = tmp_path / "sweep"
    proc = torchrun(tmp_path, *tiny(out))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert sorted(ran(log)) == sorted(PAIRS)  # every pair exactly once
    # each rank starts with its share, pairs[rank::2], and both say so (which rank ends up with which pair
    # depends on who is first to claim: a rank that is done takes the other's unclaimed pairs)
    assert "[rank 0/2] 2 pairs on cpu" in log and "[rank 1/2] 2 pairs on cpu" in log
    for name in PAIRS:
        assert {"final.png", "metrics.json", "config.yaml"} <= set(os.listdir(out / name))

    runs = offline_runs(str(out))
    pair_runs = [r for r in runs if r.job_type == "pair"]
    assert len(pair_runs) == 4  # W&B works on rank 1 too (Lightning would hand it a dummy experiment)
    assert {r.group for r in pair_runs} == {"test-sweep"}
    assert sorted((t for r in pair_runs for t in r.tags if t.startswith("content:")), key=str) == \
        sorted(["content:tubingen"] * 2 + ["content:golden_gate"] * 2)
    for r in pair_runs:
        assert "pair" in r.config_keys and "loss" in r.history_keys and r.artifacts
    table_runs = [r for r in runs if r.job_type == "summary"]
    assert len(table_runs) == 1 and table_runs[0].group == "test-sweep"
    assert {"pairs/_type", "contact_sheet/_type"} <= table_runs[0].history_keys

    rows = summary(out)
    assert [r["pair"] for r in rows] == PAIRS
    assert {r["status"] for r in rows} == {"done"}
    for r in rows:
        assert float(r["loss"]) > 0 and float(r["style_loss"]) > 0 and float(r["seconds"]) > 0
        assert r["steps"] == "5"
    with Image.open(out / "contact_sheet.png") as sheet:
        # a header row (styles) and column (contents) around 2 x 2 results
        assert sheet.size == ((1 + len(STYLES)) * CELL, (1 + len(CONTENTS)) * CELL)

    # A killed sweep: one pair's outputs are gone. The rerun (one process) recomputes that pair and nothing else.
    redo = PAIRS[3]
    kept = {n: os.stat(out / n / "final.png").st_mtime_ns for n in PAIRS if n != redo}
    for f in os.listdir(out / redo):
        if os.path.isfile(out / redo / f):
            os.unlink(out / redo / f)
    proc = sweep(tmp_path, *tiny(out))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert ran(log) == [redo]
    assert len(re.findall(r": complete, skipped", log)) == 3
    assert {n: os.stat(out / n / "final.png").st_mtime_ns for n in kept} == kept
    rows = summary(out)
    assert [r["status"] for r in rows] == ["cached", "cached", "cached", "done"]
    assert all(r["loss"] for r in rows)  # cached pairs report their stored losses
    assert len([r for r in offline_runs(str(out / redo)) if r.job_type == "pair"]) == 2


def test_failing_pair_reported_changed_settings_redone_interrupted_pair_resumed(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    out = tmp_path / "sweep"
    args = tiny(out, contents=["assets/tubingen.jpg"], styles=["assets/starry_night.jpg", str(bad)], mode="disabled")
    proc = sweep(tmp_path, *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]  # not everything finished: say so
    rows = {r["pair"]: r for r in summary(out)}
    assert rows["tubingen__starry_night"]["status"] == "done"
    assert rows["tubingen__broken"]["status"] == "failed"
    assert "broken.jpg" in rows["tubingen__broken"]["error"] and "\n" not in rows["tubingen__broken"]["error"]
    assert (out / "tubingen__broken" / "error.txt").exists()
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size == (3 * CELL, 2 * CELL)

    # Other settings into the same folder: a complete pair made with the old ones is redone, not skipped.
    # SIGTERM (a SLURM time limit) once its first step is done: the sweep stops with 143 ...
    more = [*args, "trainer.max_steps=30", "output.save_every=1"]
    proc = start(tmp_path, *more)
    first_step = out / "tubingen__starry_night" / "step_00001.png"
    while not first_step.exists() and proc.poll() is None:  # an event, however slow the machine
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, log[-3000:]
    assert "running (settings changed (trainer.max_steps: 5 -> 30))" in log, log[-3000:]
    assert "interrupted by SIGTERM" in log and ran(log) == [], log[-3000:]
    # ... and the same command again goes on from the pair's checkpoint.
    proc = sweep(tmp_path, *more)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]
    assert "tubingen__starry_night: running (interrupted earlier, resuming from last.ckpt)" in log, log[-3000:]
    assert ran(log) == ["tubingen__starry_night"]
    assert summary(out)[0]["steps"] == "30"


def test_a_batched_sweep_makes_what_pair_by_pair_makes(tmp_path):
    """sweep.batch=4: four pairs of one size, one batch through VGG19. The same pairs, steps and (within 2%)
    final losses as sweep.batch=1, and each pair still has its own folder, outputs and W&B run. (Few steps:
    L-BFGS grows rounding differences along a run; see test_run.py,
    test_a_batch_makes_the_pictures_its_members_make_alone.)"""
    styles = STYLES + ["assets/shipwreck.jpg", "assets/woman-with-hat-matisse.jpg"]
    logs, rows = {}, {}
    for batch in (1, 4):
        out = tmp_path / f"batch{batch}"
        proc = sweep(tmp_path, *tiny(out, f"sweep.batch={batch}", "trainer.max_steps=6",
                                     contents=["assets/tubingen.jpg"], styles=styles,
                                     mode="offline" if batch == 4 else "disabled"))
        logs[batch] = proc.stdout + proc.stderr
        assert proc.returncode == 0, logs[batch][-3000:]
        rows[batch] = summary(out)
    assert len(ran(logs[4])) == 4 and logs[4].count("in batch 1/1 of 4") == 4
    assert [r["pair"] for r in rows[1]] == [r["pair"] for r in rows[4]] and len(rows[4]) == 4
    for one, four in zip(rows[1], rows[4]):
        assert one["status"] == four["status"] == "done" and one["steps"] == four["steps"] == "6"
        assert (one["batch"], four["batch"]) == ("1", "4")
        assert float(four["loss"]) == pytest.approx(float(one["loss"]), rel=0.02)
        assert {"final.png", "metrics.json", "config.yaml", "last.ckpt"} <= set(os.listdir(tmp_path / "batch4" / four["pair"]))
    pair_runs = [r for r in offline_runs(str(tmp_path / "batch4")) if r.job_type == "pair"]
    assert len(pair_runs) == 4 and all("loss" in r.history_keys and r.artifacts for r in pair_runs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_grid_of_settings_runs_every_pair_with_every_value_and_a_rerun_skips_them(tmp_path):
    out = tmp_path / "grid"
    args = tiny(out, "sweep.grid={loss.style_weight: [3, 300]}", "trainer.max_steps=12",
                contents=CONTENTS[:1], styles=STYLES[:1])
    proc = sweep(tmp_path, *args)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    names = ["tubingen__starry_night__style_weight-3", "tubingen__starry_night__style_weight-300"]
    assert sorted(ran(log)) == names
    rows = summary(out)
    assert [(r["pair"], r["loss.style_weight"], r["dir"], r["status"]) for r in rows] == \
        [(names[0], "3", names[0], "done"), (names[1], "300", names[1], "done")]
    # the higher weight is the more stylized picture: less style loss per unit of weight, more content loss
    low, high = rows
    assert float(high["style_loss"]) / 300 < float(low["style_loss"]) / 3
    assert float(high["content_loss"]) > float(low["content_loss"])
    runs = {r.name: r for r in offline_runs(str(out)) if r.job_type == "pair"}
    assert sorted(runs) == names and "loss.style_weight=300" in runs[names[1]].tags
    proc = sweep(tmp_path, *args)  # again: both complete, both skipped
    assert proc.returncode == 0 and ran(proc.stdout) == [] and proc.stdout.count("complete, skipped") == 2


def test_a_grid_value_its_key_cannot_take_is_one_line_exit_2_before_anything_runs(tmp_path, capsys, monkeypatch):
    from nst.sweep import main
    monkeypatch.chdir(ROOT)
    out = tmp_path / "grid"
    for grid, words in [("{loss.style_weight: [10, lots]}", "sweep.grid.loss.style_weight: 'lots'"),
                        ("{color.preserve: [none, sepia]}", "sweep.grid.color.preserve: 'sepia'"),
                        ("{data.content: [a.jpg]}", "sweep.grid.data.content: not a setting a grid can vary")]:
        assert main(["--config", "configs/sweep.yaml", f"output.dir={out}", f"sweep.grid={grid}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    assert not out.exists()


def test_slurm_variables_two_tasks(tmp_path):
    """What `srun --ntasks=2 python -m nst.sweep` sets. SLURM_NTASKS without SLURM_NTASKS_PER_NODE makes
    Lightning's SLURM environment raise: the pairs' Trainers must not see it."""
    out = tmp_path / "sweep"
    args = tiny(out, contents=["assets/tubingen.jpg"], mode="disabled")
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = env_for(tmp_path, SLURM_NTASKS="2", SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
                   SLURM_NODEID="0", SLURM_JOB_ID="4242", SLURM_JOB_NAME="nst-sweep", SLURM_NODELIST="localhost",
                   MASTER_PORT=port)
        procs.append(start(tmp_path, *args, env=env))
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert sorted(ran(logs[0]) + ran(logs[1])) == ["tubingen__starry_night", "tubingen__the_scream"]
    assert "(slurm)" in logs[0]
    assert [r["status"] for r in summary(out)] == ["done", "done"]


# ----------------------------------------------------------------------------- in-process: planning and errors

def _cfg(*overrides: str):
    from nst.config import load_config
    return load_config(os.path.join(ROOT, "configs", "sweep.yaml"), list(overrides))


def test_plan_cross_product_globs_explicit_pairs_and_duplicates(monkeypatch):
    from nst.sweep import plan
    monkeypatch.chdir(ROOT)
    pairs = plan(_cfg("output.dir=out", "sweep.contents=[assets/t*.jpg,assets/tubingen.jpg]",
                      "sweep.styles=[assets/starry_night.jpg,assets/s*.jpg]"))
    # the glob assets/t*.jpg is the_scream and tubingen; tubingen again and starry_night again count once
    assert [p.name for p in pairs] == ["the_scream__starry_night", "the_scream__shipwreck",
                                       "tubingen__starry_night", "tubingen__shipwreck"]
    assert [p.index for p in pairs] == [0, 1, 2, 3] and pairs[0].dir == os.path.join("out", pairs[0].name)
    pairs = plan(_cfg("sweep.contents=[]", "sweep.styles=[]",
                      "sweep.pairs=[[a/x.jpg,b/y.png],{content: a/z.jpg, style: b/y.png},[a/x.jpg,b/y.png]]"))
    assert [(p.content, p.style, p.name) for p in pairs] == [("a/x.jpg", "b/y.png", "x__y"),
                                                             ("a/z.jpg", "b/y.png", "z__y")]


@pytest.mark.parametrize("overrides, message", [
    (["sweep.contents=[]", "sweep.styles=[]"], "error: sweep: no pairs"),
    (["sweep.styles=[]"], "error: sweep.styles: needed too when sweep.contents is given"),
    (["sweep.contents=[assets/*.tif]"], "error: sweep.contents: 'assets/*.tif' matches no file"),
    (["sweep.pairs=[[a.jpg,b.jpg]]"], "error: sweep.pairs: give either sweep.pairs or sweep.contents"),
    (["sweep.contents=[]", "sweep.styles=[]", "sweep.pairs=[[a.jpg]]"], "error: sweep.pairs[0]: expected"),
    (["sweep.contents=[]", "sweep.styles=[]", "sweep.pairs=[[a/x.jpg,s.jpg],[b/x.jpg,s.jpg]]"],
     "would both write"),
    (["trainer.devices=2"], "error: trainer.devices: one run optimizes on one device"),
    (["sweep.cell=8"], "error: sweep.cell: must be >= 32"),
    (["sweep.colour=1"], "error: sweep.colour"),
])
def test_config_errors_are_one_line_and_exit_2(overrides, message, capsys, monkeypatch):
    from nst.sweep import main
    monkeypatch.chdir(ROOT)
    assert main(["--config", "configs/sweep.yaml", *overrides]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_rank_and_world_size_from_torchrun_slurm_or_nothing():
    from nst.sweep import Dist, dist_info
    assert dist_info({}) == Dist(0, 1, 0, 1, "none")
    assert dist_info({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                      "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}) == Dist(5, 8, 1, 4, "torchrun")
    assert dist_info({"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1",
                      "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "x"}) == Dist(3, 4, 1, 2, "slurm")
    # an interactive allocation (salloc bash) is not a launch of several tasks
    assert dist_info({"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "bash"}) == Dist()


def test_a_process_knows_when_it_was_created_not_when_its_imports_ended():
    """A pair counts as done in this launch when it finished after the process started, so the other ranks'
    first pairs are not taken for results of an earlier launch when one rank's imports are slow; and a pair an
    earlier launch finished just before this one started is not taken for this launch's (to /proc's 10 ms)."""
    code = ("import time; t = time.time(); import torch; after = time.time()\n"
            "from nst.sweep.processes import process_start_time\n"
            "print(process_start_time(), t, after)")
    before = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}).stdout.split()
    started, first_line, imported = map(float, out)
    assert before - 0.03 <= started <= first_line < imported


def test_a_full_disk_keeps_finished_pairs_done_and_a_summary_it_cannot_write_is_one_line(tmp_path):
    """A pair whose pictures are written but whose last.ckpt does not fit is done, not failed; a summary that
    cannot be written is one error line, exit 2, no traceback."""
    from helpers.disk import fill, small_disk
    with small_disk(tmp_path / "disk") as disk:
        out = os.path.join(disk, "sweep")
        args = tiny(out, "data.size=48", "optim.name=adam", "optim.lr=0.02", contents=CONTENTS[:1],
                    styles=STYLES[:1], mode="disabled")
        os.makedirs(out)
        fill(disk, leave=64_000)  # the pair's pictures and the summary fit, its 66 KB checkpoint does not
        proc = sweep(tmp_path, *args)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"{PAIRS[0]}: done in " in proc.stdout and \
            f"but output.dir: cannot write {out}/{PAIRS[0]}/last.ckpt (No space left on device)" in proc.stdout
        assert [r["status"] for r in summary(tmp_path / "disk" / "sweep")] == ["done"]

        os.rename(os.path.join(disk, "filler"), os.path.join(disk, "filler-1"))
        fill(disk, leave=4096)  # room for the summary's claim, not for summary.csv
        proc = sweep(tmp_path, *args)
        assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert proc.stderr.strip() == f"error: cannot write {out}/summary.csv (No space left on device)"
        assert "complete, skipped" in proc.stdout


def test_ctrl_c_during_the_imports_is_one_line_exit_130(tmp_path):
    """SIGINT while torch is being imported (seconds, before any handler of ours): no KeyboardInterrupt traceback.
    A sitecustomize on PYTHONPATH sends it at the first import of torch, whatever the machine's speed: to the
    importing thread itself (raise_signal: os.kill sends it to the process, whose kernel may hand it to any thread)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal, sys\n"
        "class Ctrl_C:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            sys.meta_path.remove(self)\n"
        "            signal.raise_signal(signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Ctrl_C())\n")
    env = env_for(tmp_path, PYTHONPATH=os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    proc = sweep(tmp_path, *tiny(tmp_path / "sweep", mode="disabled"), env=env)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert proc.stderr.strip() == "interrupted" and proc.stdout == ""
