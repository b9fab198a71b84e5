"""Claims: a file in a pair's folder saying which process computes the pair, so that any number of sweep launches
on one output folder share the pairs and never run one twice at the same time.

A claim is made with O_CREAT | O_EXCL (atomic on a local disk and on NFS v3 or later) and holds the owner's host,
pid, the time its process was created and a token; its modification time is the owner's heartbeat, touched every
HEARTBEAT seconds by a thread. A claim belongs to a live owner only while its heartbeat is younger than `stale`
seconds and, on the same host, while the process with its pid is the one that wrote it (same creation time: a pid
is reused after its process ends, by any process, e.g. pid 1 after a container restart). Any other claim is taken
over. Taking over first renames the old claim away, which only one process can do, so two processes never both
take over one claim.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Optional

from ..errors import OutputError
from .processes import start_time_of

CLAIM = ".claim"
HEARTBEAT = 20.0  # seconds between touches of a held claim
STALE = 300.0  # default: a claim untouched this long belongs to nobody
SAME_PROCESS = 1.0  # seconds: creation times closer than this are one process (a claimant lives longer)


@dataclass
class Claim:
    path: str
    token: str


def read(path: str) -> Optional[dict]:
    """The claim's owner (host, pid, started, token), or None when there is no readable claim."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def owner_alive(path: str, info: Optional[dict], stale: float) -> bool:
    """Whether the claim's owner may still be computing: its heartbeat is younger than `stale` seconds and, on this
    host, its process is alive and is the one that wrote the claim. An unreadable claim that is recent is someone
    still writing it."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        return False
    if info is None or not isinstance(info.get("pid"), int):
        return age < 10.0
    if age >= stale:
        return False
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process: its creation time still tells whether it is the owner
        pass
    written_by = info.get("pid_started")
    if not isinstance(written_by, (int, float)):  # a claim of an older version: pid and heartbeat only
        return True
    started = start_time_of(info["pid"])
    if started is None:  # it ended just now, or there is no /proc here to tell (then the pid has to do)
        return start_time_of("self") is None
    return abs(started - written_by) < SAME_PROCESS


def describe(info: Optional[dict]) -> str:
    return f"{info.get('host')}:{info.get('pid')}" if info else "another process"


def take(folder: str, stale: float = STALE, name: str = CLAIM) -> tuple[Optional[Claim], Optional[dict]]:
    """Claim `folder` for this process: (the claim, None), or (None, the live owner's record)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    token = uuid.uuid4().hex
    record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "pid_started": start_time_of("self"),
                         "started": time.time(), "token": token})
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            info = read(path)
            if owner_alive(path, info, stale):
                return None, info
            aside = f"{path}.gone-{token}"
            try:
                os.rename(path, aside)  # only one process can move the dead owner's claim away
                os.unlink(aside)
            except OSError:
                pass  # another process took it over first; look again
            continue
        try:
            with os.fdopen(fd, "w") as f:
                f.write(record)
        except OSError as e:  # a full disk: an empty claim would look like one being written, for 10 s
            os.unlink(path)
            raise OutputError(f"cannot write {path} ({e.strerror or e})") from None
        return Claim(path, token), None
    return None, read(path)


def release(claim: Optional[Claim]) -> None:
    """Remove the claim if it is still ours (it may have been taken over after a long stall)."""
    if claim is None:
        return
    info = read(claim.path)
    if info is not None and info.get("token") == claim.token:
        try:
            os.unlink(claim.path)
        except OSError:
            pass


class Heartbeat:
    """Touches the claims this process holds every HEARTBEAT seconds, from a daemon thread."""

    def __init__(self, every: float = HEARTBEAT):
        self.every = every
        self.held: dict[str, Claim] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="nst-claims", daemon=True)
        self.thread.start()

    def hold(self, claim: Claim) -> None:
        with self.lock:
            self.held[claim.path] = claim

    def drop(self, claim: Optional[Claim]) -> None:
        if claim is None:
            return
        with self.lock:
            self.held.pop(claim.path, None)
        release(claim)

    def _run(self) -> None:
        while not self.stopped.wait(self.every):
            with self.lock:
                paths = list(self.held)
            for path in paths:
                try:
                    os.utime(path)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop touching and release every claim still held."""
        self.stopped.set()
        with self.lock:
            held, self.held = list(self.held.values()), {}
        for claim in held:
            release(claim)
