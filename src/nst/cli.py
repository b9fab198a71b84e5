"""The command lines, train.py and `python -m nst.sweep`: one argument parser, and one way of turning what went
wrong into a line on stderr and an exit status (errors.exit_line)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from .errors import ConfigError, exit_line

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


def main(argv: list[str], prog: str = "train.py") -> int:
    args = parse(argv, prog, "Neural style transfer (Gatys et al.).",
                 "Overrides are key=value pairs of the config schema, e.g. data.size=256 trainer.max_steps=100."
                 + ("\n`nst sweep ...` (or nst-sweep) runs a sweep: nst sweep --help." if prog == "nst" else ""))
    try:
        # Imported here so that argument errors answer at once, not after seconds of torch and Lightning.
        from .config import load_config, to_yaml
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            print(to_yaml(cfg), end="")
            return 0
        from .runner.run import run
        if cfg.sweep.contents or cfg.sweep.styles or cfg.sweep.pairs:
            raise ConfigError(f"sweep: {args.config or 'this config'} describes a sweep of many pairs; run it with "
                              f"make sweep CONFIG={args.config} or python -m nst.sweep --config {args.config}")
        from .video.io import is_video
        if is_video(cfg.data.content):
            if cfg.masks.content:
                raise ConfigError("masks.content: masks are for still images; a video cannot use them yet")
            from .video.run import describe, run_video
            result = run_video(cfg)
        else:
            result = run(cfg)
    except BaseException as e:
        ended = exit_line(e)
        if ended is None:
            raise
        print(ended[1], file=sys.stderr)
        return ended[0]
    if not hasattr(result, "image"):  # a video
        print(describe(result))
        return 0
    m = result.metrics
    print(f"wrote {result.run_dir}/final.png ({m['size'][1]}x{m['size'][0]}) in {m['seconds']:.1f} s: "
          f"loss {m['loss']:.4g} (content {m['content_loss']:.4g}, style {m['style_loss']:.4g}), "
          f"{m['steps']} steps, {m['evaluations']} evaluations")
    return 0


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


def entry() -> NoReturn:
    """The `nst` command and `python -m nst`: train.py's command line; `nst sweep ...` is `nst-sweep ...`."""
    argv = sys.argv[1:]
    if argv[:1] == ["sweep"]:
        from .sweep.command import main as sweep_main
        exit_now(sweep_main(argv[1:], prog="nst sweep"))
    exit_now(main(argv, prog="nst"))
