"""The tests' own process starter (helpers/forks.py): a process forked from the pre-imported Python behaves as
`python SCRIPT` started with subprocess would (pid, cwd, environment, arguments, streams, exit status)."""

import os
import signal
import sys

from helpers import forks

SCRIPT = """
import os, sys, time, torch
print(os.getpid(), os.getcwd(), os.environ.get("NST_PROBE"), sys.argv[1:], torch.get_num_threads(), __name__)
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    raise RuntimeError("boom")
if sys.argv[1] == "wait":
    time.sleep(60)
sys.exit(int(sys.argv[1]))
"""


def test_a_forked_process_has_its_own_pid_cwd_environment_arguments_and_exit_status(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "NST_PROBE": "seen", "OMP_NUM_THREADS": "1"}
    p = forks.popen([str(script), "3", "x y"], cwd=str(tmp_path), env=env)
    assert isinstance(p, forks.Forked) == (os.environ.get("NST_TEST_FORK", "1") != "0")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 3 and err == "to stderr\n", err
    pid, cwd, probe, *rest = out.split(maxsplit=3)
    assert int(pid) == p.pid != os.getpid() and cwd == str(tmp_path) and probe == "seen"
    assert rest == ["['3', 'x y'] 1 __main__\n"]

    failed = forks.run([str(script), "raise"], env=env)
    assert failed.returncode == 1 and failed.stderr.rstrip().endswith("RuntimeError: boom"), failed.stderr

    waiting = forks.popen([str(script), "wait"], env=env, stdout=forks.DEVNULL, stderr=forks.STDOUT)
    assert waiting.poll() is None
    waiting.send_signal(signal.SIGKILL)
    assert waiting.wait(timeout=60) == -signal.SIGKILL


def test_a_module_runs_as_python_m_does(tmp_path):
    proc = forks.run(["-m", "nst.sweep", "--help"], env={**os.environ})
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m nst.sweep"), proc.stderr
    assert sys.executable in proc.args
