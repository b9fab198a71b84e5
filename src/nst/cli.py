"""Command line: `--config FILE key=value ...`; user errors become one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys

from .errors import ConfigError, UserError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="train.py", description="Neural style transfer (Gatys et al.).",
                                     epilog="Overrides are key=value pairs of the config schema, "
                                            "e.g. data.size=256 trainer.max_steps=100.")
    parser.add_argument("--config", "-c", help="YAML config file (defaults: src/nst/config.py)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        from .config import load_config
        from .runner.run import run
        cfg = load_config(args.config, args.overrides)
        if cfg.sweep.contents or cfg.sweep.styles or cfg.sweep.pairs:
            raise ConfigError(f"sweep: {args.config or 'this config'} describes a sweep of many pairs; run it with "
                              f"make sweep CONFIG={args.config} or python -m nst.sweep --config {args.config}")
        result = run(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before a run started (run() handles it from there on)
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException as e:
        from .runner.interrupt import Interrupted
        if not isinstance(e, Interrupted):
            raise
        print(e.message, file=sys.stderr)  # what was kept and how to resume
        return e.exit_code
    m = result.metrics
    print(f"wrote {result.run_dir}/final.png ({m['size'][1]}x{m['size'][0]}) in {m['seconds']:.1f} s: "
          f"loss {m['loss']:.4g} (content {m['content_loss']:.4g}, style {m['style_loss']:.4g}), "
          f"{m['steps']} steps, {m['evaluations']} evaluations")
    return 0
