"""`python -m nst.bench.graphs`: what torch.compile and CUDA graphs would save on the VGG19 floor, setup included.

A coarse-to-fine run has a few fixed shapes (one per scale), each optimized for 60 to 80 steps, so a technique
that cuts the per-pass time pays only if its one-off cost (compiling, capturing) is repaid within those steps.
This measures, on a GPU, the floor pass (VGG19 to conv5_1, forward + input gradient, bf16 autocast,
channels-last) eagerly, under torch.compile, and replayed from a CUDA graph, with the one-off cost of each and
the number of passes after which it breaks even.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from .common import content_hw, median_ms, write_report
from .speed import floor_network


def _timed(fn, repeats: int = 30) -> float:
    return median_ms(fn, repeats, warmup=3)


def measure(size: int) -> dict:
    torch.backends.cudnn.benchmark = False
    net = floor_network("cuda")
    h, w = content_hw(size)
    x = torch.rand(1, 3, h, w, device="cuda", requires_grad=True)

    def step(model):
        x.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = model(x.contiguous(memory_format=torch.channels_last))
        y.float().sum().backward()

    out = {"size": size, "hw": [h, w], "eager_ms": _timed(lambda: step(net))}

    start = time.perf_counter()
    compiled = torch.compile(net)
    step(compiled)
    torch.cuda.synchronize()
    out["compile_seconds"] = time.perf_counter() - start
    out["compiled_ms"] = _timed(lambda: step(compiled))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    start = time.perf_counter()
    with torch.cuda.stream(side):
        for _ in range(3):
            step(net)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    x.grad = None
    with torch.cuda.graph(graph):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = net(x.contiguous(memory_format=torch.channels_last))
        y.float().sum().backward()
    torch.cuda.synchronize()
    out["capture_seconds"] = time.perf_counter() - start
    out["graph_ms"] = _timed(graph.replay)
    for name in ("compiled", "graph"):
        saved = out["eager_ms"] - out[f"{name}_ms"]
        setup = out["compile_seconds" if name == "compiled" else "capture_seconds"]
        out[f"{name}_break_even_passes"] = round(setup * 1000 / saved) if saved > 0 else None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.graphs", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, nargs="+", default=[512])
    p.add_argument("--out", default="outputs/bench_graphs.json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("python -m nst.bench.graphs measures CUDA graphs: it needs a CUDA GPU", file=sys.stderr)
        return 2
    rows = [measure(size) for size in args.size]
    for r in rows:
        print(f"{r['size']} px: eager {r['eager_ms']:.2f} ms; torch.compile {r['compiled_ms']:.2f} ms after "
              f"{r['compile_seconds']:.1f} s (even after {r['compiled_break_even_passes']} passes); CUDA graph "
              f"{r['graph_ms']:.2f} ms after {r['capture_seconds']:.2f} s (even after {r['graph_break_even_passes']})")
    write_report({"device": torch.cuda.get_device_name(0), "rows": rows}, args.out)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
