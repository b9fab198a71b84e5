"""What every command line shares (train.py, `nst`, `python -m nst.sweep`, nst-sweep): one argument parser
(--config FILE, key=value overrides, --help with every config key) and one fast exit."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn


def parse(argv: list[str], prog: str, description: str, epilog: str) -> argparse.Namespace:
    """--config FILE (or the name of an example config) and key=value overrides; --key=value and --key value are
    the same overrides (what a W&B sweep agent passes). --help lists every config key with its default and
    meaning; --list-configs the example configs; --print-config asks for the resolved config instead of a run.
    Torch-free: the help answers at once."""
    if any(a in ("-h", "--help") for a in argv):
        from .helptext import key_lines
        epilog = f"{epilog}\n\nconfig keys, their defaults and meanings:\n{key_lines()}"
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", help="YAML config file, or the name of an example config: "
                                               "starry, large, color, video, ... (--list-configs)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (file, then overrides) as YAML and exit")
    parser.add_argument("--list-configs", action="store_true",
                        help="list the example configs that come with nst (--config NAME) and exit")
    parser.add_argument("overrides", nargs="*", help="key=value overrides (or --key=value, --key value)")
    args = parser.parse_args(as_overrides(argv, parser))
    if args.list_configs:
        from .paths import config_list
        print(config_list())
        parser.exit(0)
    return args


def as_overrides(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """--key=value and --key value turned into key=value; --config, -c and --help left to argparse."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0]
        if not arg.startswith("--") or name in ("config", "help", "print-config", "list-configs") or not name:
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


SWEEP_DESCRIPTION = "Style transfer for many content/style pairs (an example: --config sweep)."
SWEEP_EPILOG = ("Launch with torchrun --nproc_per_node=N (one process per GPU) or srun; overrides are key=value pairs of "
                "the config schema, e.g. data.size=256 'sweep.styles=[assets/the_scream.jpg]'.")


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
