"""Claims (nst.sweep.claims): sweeps launched separately on one folder share its pairs and run none twice, a dead
owner's claim is taken over, nothing waits for a process that never comes, and workers die with their launcher."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time

import pytest
from PIL import Image

from helpers import ROOT
from helpers.wandb_records import offline_runs
from nst.sweep import claims
from nst.sweep.processes import start_time_of
from helpers.sweeps import CONTENTS, PAIRS, STYLES, TORCHRUN, env_for, ran, start, summary, tiny


def wait_for_a_claim(out, proc) -> None:
    """Until `proc` holds a claim on a pair of the sweep in `out` (or has ended), whatever the machine's speed."""
    while proc.poll() is None:
        if any(os.path.exists(out / name / claims.CLAIM) for name in PAIRS):
            return
        time.sleep(0.05)


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_take_release_and_take_over(tmp_path):
    claim, owner = claims.take(str(tmp_path))
    assert claim is not None and owner is None
    again, owner = claims.take(str(tmp_path))  # this process is alive: the claim holds
    assert again is None and owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    claims.release(claim)
    assert not os.path.exists(claim.path)

    path = tmp_path / claims.CLAIM
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "token": "x"}))
    claim, _ = claims.take(str(tmp_path))  # same host, dead pid: taken over
    assert claim is not None and json.loads(path.read_text())["pid"] == os.getpid()
    claims.release(claim)

    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "y"}))
    assert claims.take(str(tmp_path), stale=60)[0] is None  # another host, recent heartbeat: alive
    old = time.time() - 120
    os.utime(path, (old, old))
    claim, _ = claims.take(str(tmp_path), stale=60)  # another host, heartbeat stopped: taken over
    assert claim is not None
    claims.release(claim)


def test_a_claim_is_alive_only_while_its_writer_lives_and_beats(tmp_path):
    """A pid is reused once its process ends: a claim naming a live pid belongs to a live owner only if that
    process is the one that wrote it (same creation time) and the heartbeat is fresh."""
    path = tmp_path / claims.CLAIM
    host = socket.gethostname()
    init_started = start_time_of(1)
    assert init_started is not None

    def write(record: dict, age: float = 0.0) -> None:
        path.write_text(json.dumps({"host": host, "token": "t", **record}))
        then = time.time() - age
        os.utime(path, (then, then))

    write({"pid": 1, "pid_started": init_started})  # pid 1 wrote it, and beats: alive
    assert claims.take(str(tmp_path), stale=60)[0] is None
    write({"pid": 1, "pid_started": init_started}, age=120)  # same process, heartbeat stopped: gone
    claim, _ = claims.take(str(tmp_path), stale=60)
    assert claim is not None
    claims.release(claim)
    write({"pid": 1, "pid_started": init_started - 3600})  # pid 1 is another process now: gone
    claim, _ = claims.take(str(tmp_path), stale=60)
    assert claim is not None
    claims.release(claim)
    # a dead process's claim whose pid is this process's: not refused as "this process is alive"
    write({"pid": os.getpid(), "pid_started": start_time_of("self") - 3600})
    claim, _ = claims.take(str(tmp_path), stale=60)
    assert claim is not None and json.loads(path.read_text())["pid_started"] == start_time_of("self")
    claims.release(claim)
    write({"pid": 1, "started": 0}, age=7200)  # an older version's claim: its heartbeat still counts
    claim, _ = claims.take(str(tmp_path), stale=60)
    assert claim is not None
    claims.release(claim)


def test_a_claim_on_a_reused_pid_with_an_old_heartbeat_does_not_block_the_pair(tmp_path):
    """pid 1 is alive (in a container, after a restart, it is some other program): the pair is computed."""
    out = tmp_path / "sweep"
    (out / PAIRS[0]).mkdir(parents=True)
    claim = out / PAIRS[0] / claims.CLAIM
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": 1, "started": 0, "token": "x"}))
    old = time.time() - 7200
    os.utime(claim, (old, old))
    proc = start(tmp_path, *tiny(out, contents=CONTENTS[:1], styles=STYLES[:1], mode="disabled"))
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log[-2000:]
    assert ran(log) == [PAIRS[0]] and "still being computed" not in log
    assert [r["status"] for r in summary(out)] == ["done"] and not claim.exists()


def test_two_sweeps_on_one_folder_compute_every_pair_once(tmp_path):
    out = tmp_path / "sweep"
    args = tiny(out, "trainer.max_steps=10")
    first = start(tmp_path, *args)
    wait_for_a_claim(out, first)  # the second launch starts while the first holds a pair
    second = start(tmp_path, *args)
    logs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], logs[0][-2000:] + logs[1][-2000:]
    assert sorted(ran(logs[0]) + ran(logs[1])) == sorted(PAIRS)  # 4 pairs, 4 runs in all
    assert len([r for r in offline_runs(str(out)) if r.job_type == "pair"]) == 4
    rows = summary(out)
    assert [r["pair"] for r in rows] == PAIRS and {r["status"] for r in rows} == {"done"}
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # every claim released
    assert all(not os.path.exists(out / name / claims.CLAIM) for name in PAIRS)


def test_a_dead_owners_claim_is_taken_over_and_a_live_ones_is_left_alone(tmp_path):
    out = tmp_path / "sweep"
    args = tiny(out, contents=CONTENTS[:1], styles=STYLES[:1], mode="disabled")
    (out / PAIRS[0]).mkdir(parents=True)
    claim = out / PAIRS[0] / claims.CLAIM
    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": "alive"}))
    proc = start(tmp_path, *args)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log[-2000:]
    assert ran(log) == [] and f"computed by {socket.gethostname()}:{os.getpid()}, skipped" in log
    assert f"still being computed by other processes (the last to finish writes the summary): {PAIRS[0]} " \
           f"({socket.gethostname()}:{os.getpid()})" in log and not (out / "summary.csv").exists()

    claim.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid(), "token": "dead"}))
    proc = start(tmp_path, *args)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, log[-2000:]
    assert ran(log) == [PAIRS[0]] and not claim.exists()
    assert [r["status"] for r in summary(out)] == ["done"]


def test_a_process_whose_peer_never_comes_does_the_peers_pairs_and_does_not_wait(tmp_path):
    out = tmp_path / "sweep"
    env = env_for(tmp_path, RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2")
    proc = start(tmp_path, *tiny(out, mode="disabled", contents=CONTENTS[:1]), env=env)
    log = proc.communicate(timeout=300)[0]  # no rendezvous, no meeting: nothing to wait for
    assert proc.returncode == 0, log[-2000:]
    assert sorted(ran(log)) == sorted(PAIRS[:2])  # its own pair and the one rank 1 never came for
    assert {r["status"] for r in summary(out)} == {"done"}


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if os.path.exists(f"/proc/{p}") and "zombie" not in open(f"/proc/{p}/status").read()]


def _workers_of(out) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and str(out).encode() in open(f"/proc/{pid}/cmdline", "rb").read() and \
                    b"nst.sweep" in open(f"/proc/{pid}/cmdline", "rb").read():
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.slow  # torchrun and two workers: ~10 CPU-seconds; the default suite's torchrun test is in test_sweep.py
def test_workers_stop_and_keep_their_pairs_when_the_launcher_is_killed(tmp_path):
    out = tmp_path / "sweep"
    launcher = subprocess.Popen([*TORCHRUN, "--nproc_per_node=2", "-m", "nst.sweep",
                                 *tiny(out, "trainer.max_steps=400", "output.save_every=1", mode="disabled")],
                                cwd=ROOT, env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120  # until both workers are optimizing
    while time.time() < deadline and sum(os.path.exists(out / n / "step_00001.png") for n in PAIRS) < 2:
        time.sleep(0.2)
    workers = [p for p in _workers_of(out) if p != launcher.pid]
    assert len(workers) == 2, workers
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.time() + 120
    while _alive(workers) and time.time() < deadline:
        time.sleep(0.5)
    assert _alive(workers) == []  # they got SIGUSR1 when their launcher died
    interrupted = [n for n in PAIRS if (out / n / "interrupted.png").exists()]
    assert len(interrupted) == 2 and all((out / n / "last.ckpt").exists() for n in interrupted)
    assert all(not (out / n / claims.CLAIM).exists() for n in PAIRS)  # released on the way out


def _wait_for_a_half_done_pair(out, launcher, names, skip: int) -> None:
    """Until a pair has a periodic checkpoint but no final.png (the moment a kill loses work), passing over the
    first `skip` such moments; or until the launch ends. An event, not a time: a slow or loaded machine only takes
    longer to get there."""
    seen = set()
    while launcher.poll() is None:
        half = {n for n in names if (out / n / "last.ckpt").exists() and not (out / n / "final.png").exists()}
        if half - seen:
            if len(seen) >= skip:
                return
            seen |= half
        time.sleep(0.02)


@pytest.mark.slow
def test_random_kills_then_a_relaunch_leave_every_pair_complete_and_no_process_behind(tmp_path):
    """A 3 x 2 sweep, two workers, SIGKILLed four times at random moments (the launcher, the workers or both),
    then run to the end: every pair complete, every image readable, no claim or temporary file left, no process
    of the sweep alive, and the pairs that were half done went on from their periodic checkpoints."""
    out = tmp_path / "sweep"
    contents = CONTENTS + ["assets/hoovertowernight.jpg"]
    args = [*TORCHRUN, "--nproc_per_node=2", "-m", "nst.sweep",
            *tiny(out, "trainer.max_steps=60", "output.checkpoint_every=10", contents=contents, mode="disabled")]
    names = [f"{c}__{s}" for c in ("tubingen", "golden_gate", "hoovertowernight") for s in ("starry_night", "the_scream")]
    rng = random.Random(4)
    for round_ in range(4):
        with open(tmp_path / f"launch{round_}.log", "w") as log:
            launcher = subprocess.Popen(args, cwd=ROOT, env=env_for(tmp_path), stdout=log, stderr=subprocess.STDOUT)
            _wait_for_a_half_done_pair(out, launcher, names, skip=rng.randrange(3))
            victims = {"launcher": [launcher.pid], "workers": _workers_of(out),
                       "both": [launcher.pid, *_workers_of(out)]}
            for pid in victims[("launcher", "workers", "both")[round_ % 3]]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            launcher.wait()
        deadline = time.time() + 120
        while _alive(_workers_of(out)) and time.time() < deadline:
            time.sleep(0.5)
        assert _alive(_workers_of(out)) == []
    final = subprocess.run(args, cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout[-3000:]
    rows = summary(out)
    assert [r["pair"] for r in rows] == names and {r["status"] for r in rows} <= {"done", "cached"}
    for name in names:
        with Image.open(out / name / "final.png") as im:
            im.load()
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files
                 if f.endswith(".tmp") or f.startswith(".claim") or f.startswith(".summary")]
    assert leftovers == [] and _alive(_workers_of(out)) == []
    logs = final.stdout + "".join((tmp_path / f"launch{i}.log").read_text() for i in range(4))
    assert "resuming from last.ckpt" in logs  # a half-done pair went on instead of starting over
