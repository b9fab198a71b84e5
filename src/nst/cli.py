"""train.py's command line and the `nst` command: a run of one image or one video. What went wrong becomes a line
on stderr and an exit status (errors.exit_line); the argument parser and the fast exit, which the sweep's command
shares, are in commandline.py."""

from __future__ import annotations

import sys
from typing import NoReturn

from .commandline import SWEEP_DESCRIPTION, SWEEP_EPILOG, exit_now, parse
from .errors import ConfigError, exit_line


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
        from .runner.loop import quiet_device_lines
        from .runner.run import run
        quiet_device_lines()
        if cfg.sweep.contents or cfg.sweep.styles or cfg.sweep.pairs:
            raise ConfigError(f"sweep: {args.config or 'this config'} describes a sweep of many pairs; run it with "
                              f"make sweep CONFIG={args.config} or python -m nst.sweep --config {args.config}")
        from .video.decode import is_video
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


def entry() -> NoReturn:
    """The `nst` command and `python -m nst`: train.py's command line; `nst sweep ...` is `nst-sweep ...`."""
    argv = sys.argv[1:]
    if argv[:1] == ["sweep"] and any(a in ("-h", "--help", "--list-configs") for a in argv):
        parse(argv[1:], "nst sweep", SWEEP_DESCRIPTION, SWEEP_EPILOG)  # answers without importing torch
    if argv[:1] == ["sweep"]:
        from .sweep.command import main as sweep_main
        exit_now(sweep_main(argv[1:], prog="nst sweep"))
    exit_now(main(argv, prog="nst"))
