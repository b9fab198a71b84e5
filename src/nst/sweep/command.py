"""`python -m nst.sweep`: load the sweep config, plan the pairs, compute this process's share and whatever else
no process has claimed, and, as the last process to finish, write the summary."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from typing import NoReturn, Optional

from omegaconf import DictConfig

from ..commandline import SWEEP_DESCRIPTION, SWEEP_EPILOG, parse
from ..config import load_config, to_yaml
from ..errors import ConfigError, Interrupted, UserError, exit_line
from ..runner.interrupt import SignalGuard
from ..runner.loop import quiet_device_lines
from . import claims
from .batch import run_share
from .claims import Heartbeat
from .plan import Pair, plan, sweep_name
from .processes import (Dist, die_with_launcher, dist_info, independent_process_logging, pick_device,
                        process_start_time, say)
from .join import join_chunks
from .report import Result, finalize

SUMMARY_CLAIM = ".summary.claim"  # held while one process writes the summary


def main(argv: Optional[list[str]] = None, prog: str = "python -m nst.sweep") -> int:
    args = parse(sys.argv[1:] if argv is None else argv, prog, SWEEP_DESCRIPTION, SWEEP_EPILOG)
    d = dist_info()
    try:
        cfg = load_config(args.config, args.overrides)
        if args.print_config:
            if d.rank == 0:
                print(to_yaml(cfg), end="")
            return 0
        pairs = plan(cfg)
        try:
            os.makedirs(cfg.output.dir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"output.dir: cannot create {cfg.output.dir} ({e.strerror or e})") from None
        try:  # an existing folder may be read-only (a file of a name of its own: ranks probe at once)
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=cfg.output.dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise ConfigError(f"output.dir: cannot write to {cfg.output.dir} ({e.strerror or e})") from None
    except UserError as e:
        status, line = exit_line(e)
        if d.rank == 0:
            print(line, file=sys.stderr)
        return status
    since = process_start_time()  # not after the imports: they take a different time in every process
    independent_process_logging()
    quiet_device_lines()
    die_with_launcher(d)
    device = pick_device(cfg, d)
    if d.rank == 0:
        say(d, f"sweep '{sweep_name(cfg)}': {len(pairs)} pairs over {d.world_size} process(es) "
                f"({d.launcher}), output in {cfg.output.dir}")
    say(d, f"{len(pairs[d.rank::d.world_size])} pairs on {'cuda:%d' % device if device is not None else 'cpu'}, "
           f"then any pair no other process has claimed")
    heartbeat = Heartbeat()
    try:
        with SignalGuard():  # between batches too, a signal ends the sweep through Interrupted: claims released
            results = run_share(cfg, pairs, d, device, heartbeat, since)
    except (KeyboardInterrupt, Interrupted) as e:  # Ctrl-C, or SIGTERM (e.g. a SLURM time limit, a lost launcher)
        status, line = exit_line(e)
        say(d, f"{line}\nrun the same command again to finish the sweep: complete pairs are skipped, "
                f"an interrupted one goes on from its checkpoint")
        return status
    except UserError as e:  # a claim that cannot be written (a full disk)
        status, line = exit_line(e)
        print(line, file=sys.stderr, flush=True)
        return status
    finally:
        heartbeat.close()
    try:
        return report(cfg, pairs, results, d, since)
    except UserError as e:  # summary.csv or the contact sheet cannot be written (a full disk)
        status, line = exit_line(e)
        print(line, file=sys.stderr, flush=True)
        return status


# A whole line (a rank's prefix, then the line, then where the summary went): a pair's own output that happens to
# contain the words cannot pass for it.
SUMMARY_LINE = re.compile(r"^(?:\[rank \d+/\d+\] )?sweep '(?P<name>[^\n]*?)': (?P<done>\d+) done, "
                          r"(?P<cached>\d+) already complete, (?P<failed>\d+) failed, (?P<todo>\d+) not computed, "
                          r"in (?P<seconds>\d+(?:\.\d+)?) s(?: -> [^\n]*)?$", re.MULTILINE)


def summary_line(name: str, counts: dict[str, int], seconds: float) -> str:
    """The sweep's closing line (SUMMARY_LINE reads it back: make bench-gpu takes its figures from it)."""
    return (f"sweep '{name}': {counts['done']} done, {counts['cached']} already complete, {counts['failed']} failed, "
            f"{counts['todo']} not computed, in {seconds:.1f} s")


def parse_summary_line(text: str) -> Optional[dict]:
    """The counts and seconds of the last closing line in a sweep's output, or None."""
    found = list(SUMMARY_LINE.finditer(text))
    if not found:
        return None
    m = found[-1].groupdict()
    return {"name": m["name"], **{k: int(m[k]) for k in ("done", "cached", "failed", "todo")},
            "seconds": float(m["seconds"])}


def report(cfg: DictConfig, pairs: list[Pair], results: list[Result], d: Dist, since: float) -> int:
    """The last process to finish writes summary.csv, the contact sheet and the W&B table from what is on disk;
    the others say who is still at work. Exit status 1 when a pair of this process (or, for the writer, of the
    sweep) failed or is left undone."""
    own_failed = any(r.status == "failed" for r in results)
    busy = []
    for p in pairs:
        path = os.path.join(p.dir, claims.CLAIM)
        info = claims.read(path)
        if claims.owner_alive(path, info, cfg.sweep.stale_after):
            busy.append(f"{p.name} ({claims.describe(info)})")
    if busy:  # live processes with fresh heartbeats: the last of them to finish writes the summary
        say(d, f"{len(busy)} pair(s) still being computed by other processes (the last to finish writes the "
               f"summary): {', '.join(busy)}")
        return 1 if own_failed else 0
    writing, owner = claims.take(cfg.output.dir, cfg.sweep.stale_after, name=SUMMARY_CLAIM)
    if writing is None:
        say(d, f"{claims.describe(owner)} is writing the summary")
        return 1 if own_failed else 0
    try:
        rows = finalize(cfg, pairs, results, since)
        joined = join_chunks(cfg, pairs, rows)  # a clip's chunks (video.chunk) into one final.mp4
    finally:
        claims.release(writing)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("done", "cached", "failed", "todo")}
    say(d, f"{summary_line(sweep_name(cfg), counts, time.time() - since)} -> "
            f"{os.path.join(cfg.output.dir, 'summary.csv')}, {os.path.join(cfg.output.dir, 'contact_sheet.png')}")
    for row in rows:
        if row["status"] in ("failed", "todo"):
            say(d, f"  {row['status']}: {row['pair']}: {row['error']}")
    for line in joined:
        say(d, f"  {line}")
    return 1 if counts["failed"] or counts["todo"] else 0


def entry() -> NoReturn:
    """The nst-sweep command."""
    from ..commandline import exit_now
    exit_now(main(prog="nst-sweep"))
