"""Errors a user can fix. The command line prints them as one line and exits with status 2."""

from __future__ import annotations


def first_line(e: BaseException, limit: int | None = None, typed: bool = False) -> str:
    """An exception's message cut to its first line (and `limit` characters), or its type name if empty.

    typed=True puts the type name first unless it is a UserError (whose message says it all): a pair that failed
    with "RuntimeError: ..." is a bug or a machine problem, not bad input."""
    text = str(e).strip()
    line = text.splitlines()[0][:limit] if text else ""
    if typed and not isinstance(e, UserError):
        return f"{type(e).__name__}: {line}" if line else type(e).__name__
    return line or type(e).__name__


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
