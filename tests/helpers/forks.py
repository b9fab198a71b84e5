"""Starting `python train.py ...` and `python -m nst.sweep ...` for the tests: forked from a pre-imported Python
(tests/helpers/zygote.py) when one is running, else as a plain subprocess.

A forked process is a real process (own pid, streams, signals, exit status); what it skips is the ~3.5 s of torch
and Lightning imports, which made up about half of the suite's time. The tests that are about starting a Python
(packaging, torchrun, imports interrupted, process start times) start one with subprocess themselves.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from helpers import ROOT

PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL

# Settings a Python reads when it starts, before any of our code: a fork inherits the zygote's, so a command
# asking for others gets a plain subprocess. (Thread counts and PYTHONDONTWRITEBYTECODE the fork sets itself;
# LD_LIBRARY_PATH is left out: OpenCV adds its own folder to it when imported, in the tests' process too.)
_AT_STARTUP = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED", "PYTHONWARNINGS", "PYTHONSAFEPATH",
               "PYTHONOPTIMIZE", "LD_PRELOAD")
_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Lightning takes its process's rank from the first of these when it is imported: the zygote's is 0.
_RANK_AT_IMPORT = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _rank_at_import(env: dict) -> int:
    return next((int(env[k]) for k in _RANK_AT_IMPORT if k in env), 0)


class Zygote:
    """The pre-imported Python of one test session, shared by pytest-xdist's workers: the session's first process
    starts it before collecting the tests (start), the workers find its folder in NST_TEST_ZYGOTE (attach). The
    folder holds its socket, its state ("ready" or why not) and the environment it started with."""

    def __init__(self, folder: str, process: subprocess.Popen | None = None):
        self.folder, self.process = folder, process
        self.path = os.path.join(folder, "socket")
        with open(os.path.join(folder, "env.json")) as f:
            self.env = json.load(f)
        self._ready = None

    @classmethod
    def start(cls) -> "Zygote":
        folder = tempfile.mkdtemp(prefix="nst-zygote-")
        env = {k: v for k, v in os.environ.items() if k not in _THREADS}
        with open(os.path.join(folder, "env.json"), "w") as f:
            json.dump(env, f)
        process = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "helpers", "zygote.py"), folder],
                                   cwd=ROOT, env=env, stdin=DEVNULL, stdout=DEVNULL)
        os.environ["NST_TEST_ZYGOTE"] = folder  # for the workers, started after this
        return cls(folder, process)

    def ready(self) -> bool:
        """Whether it serves; the first command waits for its imports (seconds), or for its failure."""
        deadline = time.monotonic() + 600
        while self._ready is None:
            try:
                with open(os.path.join(self.folder, "state")) as f:
                    self._ready = f.read() == "ready"
            except FileNotFoundError:
                if (self.process is not None and self.process.poll() is not None) or time.monotonic() > deadline:
                    self._ready = False
                time.sleep(0.02)
        return self._ready

    def serves(self, env: dict) -> bool:
        return all(env.get(k) == self.env.get(k) for k in _AT_STARTUP) and _rank_at_import(env) == 0 \
            and self.ready()

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            shutil.rmtree(self.folder, ignore_errors=True)


_zygote: Zygote | None = None


def start_zygote() -> None:
    """In the session's first process (pytest_configure): start the zygote unless NST_TEST_FORK=0."""
    global _zygote
    if os.environ.get("NST_TEST_FORK", "1") != "0":
        _zygote = Zygote.start()


def stop_zygote() -> None:
    global _zygote
    if _zygote is not None:
        _zygote.close()
        _zygote = None


def _the_zygote() -> Zygote | None:
    global _zygote
    if _zygote is None and os.environ.get("NST_TEST_ZYGOTE") and os.environ.get("NST_TEST_FORK", "1") != "0":
        _zygote = Zygote(os.environ["NST_TEST_ZYGOTE"])  # a pytest-xdist worker: the controller's zygote
    return _zygote


def popen(argv: list[str], cwd: str = ROOT, env: dict | None = None, stdout=PIPE, stderr=PIPE, text: bool = True,
          limits: dict[str, int] | None = None):
    """subprocess.Popen([sys.executable, *argv], ...) or its forked equivalent (same attributes the tests use).
    `limits`: resource limits for the process, e.g. {"RLIMIT_FSIZE": 3000}."""
    env = dict(os.environ if env is None else env)
    limits = dict(limits or {})
    zygote = _the_zygote()
    if zygote is not None and zygote.serves(env):
        return Forked(zygote.path, argv, cwd, env, stdout, stderr, text, limits)
    return subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=text,
                            preexec_fn=(lambda: set_limits(limits)) if limits else None)


def set_limits(limits: dict[str, int]) -> None:
    import resource
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def run(argv: list[str], cwd: str = ROOT, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """subprocess.run([sys.executable, *argv], capture_output=True, text=True), forked when it can be."""
    p = popen(argv, cwd=cwd, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    return subprocess.CompletedProcess([sys.executable, *argv], p.returncode, out, err)


class Forked:
    """The part of subprocess.Popen the tests use (pid, poll, wait, communicate, send_signal, kill), for a
    process the zygote forked: its exit status comes over the zygote's socket, not from waitpid."""

    def __init__(self, path, argv, cwd, env, stdout, stderr, text, limits):
        self.args = [sys.executable, *argv]
        self.returncode = None
        self.text = text
        null = os.open(os.devnull, os.O_RDWR)
        theirs = [null]  # the child's ends: closed here once the zygote has them
        self._pipes = {}

        def end(kind, name, inherited):
            if kind == PIPE:
                self._pipes[name], w = os.pipe()
                theirs.append(w)
                return w
            if kind == DEVNULL:
                return null
            if kind is None:
                return inherited
            return kind if isinstance(kind, int) else kind.fileno()

        out = end(stdout, "stdout", 1)
        err = out if stderr == STDOUT else end(stderr, "stderr", 2)
        self._chunks = {name: [] for name in self._pipes}
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._sock.connect(path)
            request = json.dumps({"argv": argv, "cwd": os.fspath(cwd), "env": env, "limits": limits}).encode()
            socket.send_fds(self._sock, [request], [null, out, err])
            self.pid = int(self._sock.recv(64))
        finally:
            for fd in theirs:
                os.close(fd)

    def _status(self, timeout) -> int | None:
        if self.returncode is None:
            self._sock.settimeout(timeout)
            try:
                data = self._sock.recv(64)
            except (TimeoutError, BlockingIOError):
                return None
            if not data:
                raise RuntimeError(f"the zygote that forked {self.args} is gone")
            self.returncode = os.waitstatus_to_exitcode(int(data))
            self._sock.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._status(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None):
        """Read the pipes to their end, then the exit status, within `timeout` seconds: (stdout, stderr), text
        with universal newlines as subprocess gives it. After a timeout, a later call goes on where it stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            for name, fd in self._pipes.items():
                sel.register(fd, selectors.EVENT_READ, name)
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        self._chunks[key.data].append(data)
                    else:
                        sel.unregister(key.fd)
                        os.close(self._pipes.pop(key.data))
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        results = []
        for name in ("stdout", "stderr"):
            data = b"".join(self._chunks[name]) if name in self._chunks else None
            if data is not None and self.text:
                data = data.decode().replace("\r\n", "\n").replace("\r", "\n")
            results.append(data)
        return tuple(results)
