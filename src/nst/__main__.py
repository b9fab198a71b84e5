"""`python -m nst`: the same as the `nst` command (train.py's command line; `python -m nst sweep` for sweeps)."""

from .cli import entry

entry()
