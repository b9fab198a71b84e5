"""What ends a command early: errors a user can fix (one line, exit status 2) and interruption by a signal
(128 + the signal number)."""

from __future__ import annotations

import re
import signal


def first_line(e: BaseException, limit: int | None = None, typed: bool = False) -> str:
    """An exception's message cut to its first line (and `limit` characters), or its type name if empty.

    typed=True puts the type name first unless it is a UserError (whose message says it all): a pair that failed
    with "RuntimeError: ..." is a bug or a machine problem, not bad input."""
    text = str(e).strip()
    line = text.splitlines()[0][:limit] if text else ""
    if typed and not isinstance(e, UserError):
        return f"{type(e).__name__}: {line}" if line else type(e).__name__
    return line or type(e).__name__


def load_failure(e: BaseException, limit: int = 120) -> str:
    """Why torch.load(weights_only=True) refused a file, in this program's words rather than PyTorch's."""
    if "weights only" in str(e).lower():
        return "it holds Python objects besides tensors, which are never loaded: loading them could run code"
    return first_line(e, limit)


class UserError(Exception):
    """Bad input: the message names the key or file and the problem."""


class ConfigError(UserError):
    """A config key has a bad value or a named resource (weights, layer) does not exist."""


class ImageError(UserError):
    """An image file is missing, unreadable or unusable."""


class TrainingError(UserError):
    """Optimization cannot go on (for example the loss became NaN)."""


class OutputError(UserError, OSError):
    """An output cannot be written (disk full, no permission): the message names the file.

    Also an OSError, so code that already handles failed writes keeps doing so."""


class Interrupted(BaseException):
    """The run was stopped by a signal; the message says what was kept and how to resume."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"interrupted by {signal_name(signum)}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    @property
    def message(self) -> str:
        return str(self)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_line(e: BaseException) -> tuple[int, str] | None:
    """The exit status and the one line to print for what ended a command, or None for a bug (let it raise)."""
    if isinstance(e, UserError):
        return 2, f"error: {e}"
    if isinstance(e, Interrupted):
        return e.exit_code, e.message  # what was kept and how to resume
    if isinstance(e, KeyboardInterrupt):  # Ctrl-C before a run took the signal over
        return 130, "interrupted"
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e):
        size = re.search(r"allocate (\d+) bytes", str(e))
        what = f"an allocation of {int(size.group(1)) / 2**20:.0f} MB failed" if size else first_line(e, 160)
        return 2, (f"error: out of memory ({what}): lower data.size or optim.history, or give the process more "
                   f"memory (ulimit -v, the container's or the job's limit)")
    return None
