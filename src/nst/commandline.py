"""What every command line shares (train.py, `nst`, `python -m nst.sweep`, nst-sweep): one argument parser
(--config FILE, key=value overrides, --help with every config key) and one fast exit."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn


def parse(argv: list[str], prog: str, description: str, epilog: str) -> argparse.Namespace:
    """--config FILE and key=value overrides; --key=value and --key value are the same overrides (what a W&B
    sweep agent passes). --help lists every config key with its default; --print-config asks for the resolved
    config instead of a run."""
    if any(a in ("-h", "--help") for a in argv):  # the schema imports torch: only when the list is shown
        epilog = f"{epilog}\n\nconfig keys and their defaults:\n{config_keys()}"
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", help="YAML config file (defaults: the keys below)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (file, then overrides) as YAML and exit")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (or --key=value, --key value)")
    return parser.parse_args(as_overrides(argv, parser))


def config_keys() -> str:
    """`  key  default` for every key of the schema, one a line."""
    from omegaconf import OmegaConf

    from .config import Config

    def lines(node: dict, prefix: str = ""):
        for key, value in node.items():
            if isinstance(value, dict) and value:
                yield from lines(value, f"{prefix}{key}.")
            else:
                shown = OmegaConf.to_yaml({"v": value}).strip()[3:].strip() if value is not None else "null"
                yield f"  {prefix}{key:<{max(1, 30 - len(prefix))}} {shown}"
    return "\n".join(lines(OmegaConf.to_container(OmegaConf.structured(Config))))


def as_overrides(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """--key=value and --key value turned into key=value; --config, -c and --help left to argparse."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0]
        if not arg.startswith("--") or name in ("config", "help", "print-config") or not name:
            out.append(arg)
        elif "=" in arg:
            out.append(arg[2:])
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append(f"{name}={argv[i + 1]}")
            i += 1
        else:
            parser.error(f"{arg} needs a value (--{name}=VALUE or --{name} VALUE)")
        i += 1
    return out


def exit_now(code: int) -> NoReturn:
    """End a finished command without Python's interpreter teardown, which frees every module of torch and
    Lightning one by one: about 0.8 s on two cores, after every output is already written and closed.

    W&B's service is shut down first, as its atexit hook would; then the logs and streams are flushed. Only for
    a command's last line: nothing after it runs.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
