"""`make bench-counts`: host syncs and aten ops per step of the training loop, counted on any device (the CPU's
proxies for GPU stalls and kernel launches; see bench/counting.py for what is counted and how)."""

from __future__ import annotations

import argparse
import sys

from .counting import loop_counts
from ..runner.hardware import describe_device
from ..runner.loop import quiet_device_lines
from .common import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.counts",
                                description="Host syncs and aten ops per step of the training loop (CPU proxies).")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--histories", type=int, nargs="+", default=[5, 50])
    p.add_argument("--log-every", type=int, nargs="+", default=[1, 10])
    p.add_argument("--out", default="outputs/bench_counts.json")
    args = p.parse_args(argv)
    quiet_device_lines()
    rows = [loop_counts(args.size, args.steps, h, e) for h in args.histories for e in args.log_every]
    print(f"per step of the training loop on {describe_device()}, {args.size} px (two scales, a periodic checkpoint "
          f"every 20 steps), {args.steps} steps:")
    print(f"{'history':>7} {'log_every':>9} {'host syncs':>10} {'device ops':>10} {'host ops':>8}")
    for r in rows:
        print(f"{r['history']:>7} {r['log_every']:>9} {r['syncs_per_step']:>10.3f} {r['ops_per_step']:>10.1f} "
              f"{r['host_ops_per_step']:>8.1f}")
    write_report({"device": describe_device(), "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
