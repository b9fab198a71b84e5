"""Ctrl-C, SIGTERM and SIGHUP: stop at the end of the current step, keep the image and a checkpoint, exit cleanly.

A run moves through three phases, and a signal means something different in each:

* before optimization (reading images, loading weights): nothing to keep, so stop at once;
* during optimization: finish the current step (the target image and the optimizer state are then consistent),
  then stop; `run` writes interrupted.png and last.ckpt. A second signal stops at once, without waiting for the
  step (interrupted.png then holds the last completed step, and no checkpoint is written);
* while outputs are written: finish writing, then stop.

SIGHUP (the terminal closed, the SSH session lost) is treated like SIGTERM.

SIGUSR1 asks for the same stop but never escalates: a sweep worker gets it when its launcher dies (several at
once: one per thread of the launcher), and SLURM sends it ahead of a time limit with `--signal=USR1@120`.

Stopping raises `Interrupted`, a BaseException (like KeyboardInterrupt, it is not swallowed by `except
Exception`) but not a KeyboardInterrupt, which Lightning would turn into `sys.exit(1)`. The command line turns
it into exit status 128 + the signal number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP, 138 for SIGUSR1.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

import lightning as L

from ..errors import Interrupted, signal_name

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
GENTLE = (signal.SIGUSR1,)  # a request to stop at the next step boundary, however often it comes


class SignalGuard:
    """Owns SIGINT, SIGTERM, SIGHUP and SIGUSR1 for the length of a run (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None  # the first signal received
        self.count = 0
        self.phase = "immediate"  # immediate | step | hold (run.py moves it along; see the module docstring)
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame) -> None:
        if signum not in GENTLE:
            self.count += 1
        if self.signum is None:
            self.signum = signum
        if self.phase == "immediate":
            raise Interrupted(signum, f"interrupted by {signal_name(signum)} before optimization started")
        if self.phase == "step" and self.count > 1:
            raise Interrupted(signum)
        # step (first signal) and hold: remembered, acted on at the next safe point

    def install(self) -> None:
        """Take the signals (again: Lightning installs its own SIGTERM handler when training starts)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            previous = signal.signal(signum, self.handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def __enter__(self) -> "SignalGuard":
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


class StopOnSignal(L.Callback):
    """Ends training after the step during which a signal arrived (Trainer.should_stop, the usual way out).

    Lightning 2.x registers its own SIGTERM handler when fitting starts and only acts on it at the end of an
    epoch: here one epoch is the whole run, so SIGTERM would go unheard. The guard takes the signals back once
    training has started.
    """

    def __init__(self, guard: SignalGuard):
        self.guard = guard

    def on_train_start(self, trainer, module) -> None:
        self.guard.install()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.guard.requested:
            trainer.should_stop = True
