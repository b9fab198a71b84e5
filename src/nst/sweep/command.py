"""`python -m nst.sweep`: load the sweep config, plan the pairs, run this process's share, meet, report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

from ..config import load_config
from ..errors import ConfigError, UserError
from ..runner.interrupt import Interrupted
from .batch import run_share, say
from .plan import plan, sweep_name
from .processes import Meeting, dist_info, independent_process_logging, pick_device
from .report import finalize


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nst.sweep", description="Style transfer for many content/style pairs (see configs/sweep.yaml).",
        epilog="Launch with torchrun --nproc_per_node=N (one process per GPU) or srun; overrides are key=value "
               "pairs of the config schema, e.g. data.size=256 'sweep.styles=[assets/the_scream.jpg]'.")
    parser.add_argument("--config", "-c", help="YAML config file with a sweep section")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    d = dist_info()
    try:
        cfg = load_config(args.config, args.overrides)
        if cfg.trainer.devices not in (1, "1", "auto"):
            raise ConfigError(f"trainer.devices: a sweep runs each pair on one device (got {cfg.trainer.devices}); "
                              f"use one process per GPU instead (torchrun --nproc_per_node, make sweep NPROC=)")
        pairs = plan(cfg)
        os.makedirs(cfg.output.dir, exist_ok=True)
    except UserError as e:
        if d.rank == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if d.rank == 0:
            print(f"error: output.dir: cannot create {cfg.output.dir} ({e.strerror or e})", file=sys.stderr)
        return 2
    start = time.time()
    independent_process_logging()
    device = pick_device(cfg, d)
    if d.rank == 0:
        say(d, f"sweep '{sweep_name(cfg)}': {len(pairs)} pairs over {d.world_size} process(es) "
                f"({d.launcher}), output in {cfg.output.dir}")
    say(d, f"{len(pairs[d.rank::d.world_size])} pairs on {'cuda:%d' % device if device is not None else 'cpu'}")
    meeting = Meeting(d)
    try:
        results = run_share(cfg, pairs, d, device)
        gathered = meeting.gather(results)
    except (KeyboardInterrupt, Interrupted) as e:  # Ctrl-C, or SIGTERM (e.g. a SLURM time limit)
        message = e.message if isinstance(e, Interrupted) else "interrupted"
        say(d, f"{message}\nrun the same command again to finish the sweep: complete pairs are skipped, "
                f"an interrupted one goes on from its checkpoint")
        return e.exit_code if isinstance(e, Interrupted) else 130
    finally:
        meeting.close()
    if d.rank != 0:
        return 0
    rows = finalize(cfg, pairs, [r for rank_results in gathered for r in rank_results])
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "cached", "failed")}
    say(d, f"sweep '{sweep_name(cfg)}': {counts['done']} done, {counts['cached']} already complete, "
            f"{counts['failed']} failed, in {time.time() - start:.1f} s -> {os.path.join(cfg.output.dir, 'summary.csv')}, "
            f"{os.path.join(cfg.output.dir, 'contact_sheet.png')}")
    for row in rows:
        if row["status"] == "failed":
            say(d, f"  failed: {row['pair']}: {row['error']}")
    return 1 if counts["failed"] else 0

