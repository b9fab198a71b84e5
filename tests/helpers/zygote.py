"""A Python that imports torch, Lightning and nst once, then forks a copy of itself for every `python train.py
...` or `python -m MODULE ...` the tests start (tests/helpers/forks.py is the client).

Each copy is a real process with its own pid, standard streams, signals, threads and exit status; it only skips
the ~3.5 s of imports every fresh interpreter pays. Usage: python zygote.py FOLDER: it listens on FOLDER/socket
and writes FOLDER/state, "ready" once it serves or the reason it does not.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import runpy
import select
import socket
import sys

# Not wandb (0.3 s): it makes temporary folders when imported, which the first copy to end would delete for all.
PRELOAD = ("torch", "lightning.pytorch", "PIL.Image", "omegaconf", "nst.cli", "nst.config", "nst.runner.run",
           "nst.sweep.command", "nst.video.run")


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def unsafe() -> str | None:
    """Why forking this process would not be safe, or None."""
    import numpy  # noqa: F401  its OpenBLAS starts a thread pool, which stops and restarts itself around a fork
    blas = threads()
    for name in PRELOAD:
        importlib.import_module(name)
    if threads() != blas:  # a copy forked while any other thread runs could deadlock
        return f"{threads() - blas} threads started by the imports"
    if sys.modules["torch"].cuda.is_initialized():  # a fork could not use CUDA again
        return "CUDA was initialized by the imports"
    if "wandb" in sys.modules:  # see PRELOAD
        return "wandb was imported: its temporary folders would be deleted by the first copy to end"
    return None


def set_state(folder: str, text: str) -> None:
    with open(os.path.join(folder, "state.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(folder, "state.tmp"), os.path.join(folder, "state"))


def serve(folder: str):
    """Fork for each request; returns (request, fds) in the forked child only. The server itself never returns:
    it ends when its parent (the test session) does."""
    parent = os.getppid()
    try:
        reason = unsafe()
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}"
    if reason is not None:
        set_state(folder, f"not serving: {reason}")
        sys.exit(f"zygote: {reason}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(os.path.join(folder, "socket"))
    listener.listen(64)
    set_state(folder, "ready")
    waiting: dict[int, socket.socket] = {}  # child pid -> the connection its exit status goes to
    while os.getppid() == parent:
        if select.select([listener], [], [], 0.02)[0]:
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for other in waiting.values():
                    other.close()
                return json.loads(message), fds
            for fd in fds:
                os.close(fd)
            waiting[pid] = conn
            tell(conn, pid)
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                tell(conn, status)
                conn.close()
    sys.exit(0)


def tell(conn: socket.socket, number: int) -> None:
    try:
        conn.send(str(number).encode())
    except OSError:  # a test that stopped waiting (it timed out) closed its end: nobody to tell
        pass


def become(request: dict, fds: list[int]) -> None:
    """Turn this fork into `python ARGV` started in `cwd` with `env` and the given standard streams."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for name, value in request["limits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    count = os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS")
    if count:  # the zygote started without either, so without them the copy keeps torch's default
        import torch
        torch.set_num_threads(int(count))
    argv = request["argv"]
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        sys.path[0] = os.getcwd()
        runpy._run_module_as_main(argv[1], alter_argv=True)  # what `python -m` itself calls
    else:
        script = os.path.abspath(argv[0])
        sys.argv = [script, *argv[1:]]
        sys.path[0] = os.path.dirname(script)
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    become(*serve(sys.argv[1]))
