"""Many content/style pairs in one command, on every GPU (or CPU process) there is, grouped for W&B.

    python -m nst.sweep --config configs/sweep.yaml                          # one process
    torchrun --nproc_per_node=4 -m nst.sweep --config configs/sweep.yaml     # one process per GPU
    srun --ntasks-per-node=4 --gpus-per-node=4 python -m nst.sweep --config configs/sweep.yaml

The pairs are `sweep.contents x sweep.styles` (paths or globs) or an explicit `sweep.pairs` list; every other
key is a single run's (shared defaults). Pairs are independent optimizations, not one distributed model: each
process reads its rank and world size from the launcher (torchrun, else SLURM), takes `pairs[rank::world]`, then
any pair no other process has claimed, and optimizes them with single-device Trainers on cuda:LOCAL_RANK (or the
CPU), up to `sweep.batch` pairs of one size at a time as one batch. Nothing is averaged between processes and no
process waits for another; the last to finish writes `summary.csv`, `contact_sheet.png` and a W&B Table from
what is on disk. Separate launches on one output folder share the pairs the same way (sweep/claims.py).

Each pair writes `<output.dir>/<content-stem>__<style-stem>/` (final.png, metrics.json, config.yaml) and logs
one W&B run (group = sweep name, job_type = pair). Rerunning skips pairs whose outputs are complete and were
made with the same settings, so a killed sweep finishes where it stopped. A pair that fails (a bad image, a
NaN loss, out of memory) gets a `failed` row with its error and does not stop the others; the exit status is
then 1. Config errors exit with status 2 and one line `error: ...`.
"""

import sys

try:  # torch and Lightning: seconds of imports, during which Ctrl-C must not print a traceback
    from .command import main
    from .plan import Pair, pair_config, plan, state, sweep_name
    from .processes import Dist, dist_info
except KeyboardInterrupt:
    if sys.argv[:1] != ["-m"]:  # imported by a program: its Ctrl-C is its own
        raise
    print("interrupted", file=sys.stderr)  # python -m nst.sweep (sys.argv[0] is "-m" while it is being found)
    raise SystemExit(130) from None

__all__ = ["Dist", "Pair", "dist_info", "main", "pair_config", "plan", "state", "sweep_name"]
