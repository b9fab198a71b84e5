"""`python -m nst.sweep`: load the sweep config, plan the pairs, run this process's share, meet, report."""

from __future__ import annotations

import os
import sys
import time
from typing import Optional

from ..cli import parse
from ..config import load_config
from ..errors import ConfigError, Interrupted, UserError, exit_line
from .batch import run_share, say
from .plan import plan, sweep_name
from .processes import Meeting, dist_info, independent_process_logging, pick_device
from .report import finalize


def main(argv: Optional[list[str]] = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv, "python -m nst.sweep",
                 "Style transfer for many content/style pairs (see configs/sweep.yaml).",
                 "Launch with torchrun --nproc_per_node=N (one process per GPU) or srun; overrides are key=value "
                 "pairs of the config schema, e.g. data.size=256 'sweep.styles=[assets/the_scream.jpg]'.")
    d = dist_info()
    try:
        cfg = load_config(args.config, args.overrides)
        if cfg.trainer.devices not in (1, "1", "auto"):
            raise ConfigError(f"trainer.devices: a sweep runs each pair on one device (got {cfg.trainer.devices}); "
                              f"use one process per GPU instead (torchrun --nproc_per_node, make sweep NPROC=)")
        pairs = plan(cfg)
        try:
            os.makedirs(cfg.output.dir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"output.dir: cannot create {cfg.output.dir} ({e.strerror or e})") from None
    except UserError as e:
        status, line = exit_line(e)
        if d.rank == 0:
            print(line, file=sys.stderr)
        return status
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
        status, line = exit_line(e)
        say(d, f"{line}\nrun the same command again to finish the sweep: complete pairs are skipped, "
                f"an interrupted one goes on from its checkpoint")
        return status
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

