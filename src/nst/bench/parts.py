"""`make bench-parts`: where one evaluation's time goes, piece by piece; backs the notes in docs/benchmarks.md.

    python -m nst.bench.parts              # 512 px, about two minutes on 2 CPU cores
    python -m nst.bench.parts --size 256

Measures, at the content image's size: every VGG19 convolution up to conv5_1 (forward and input gradient, in
the precision and memory format training uses, as GFLOP/s); the Gram products of the style layers (forward and
backward); adding two gradients of the same layout against two of different layouts (what a loss gradient in
the wrong layout costs); and a whole evaluation of the real loss with glibc's default allocator against
`hardware.reuse_freed_memory`, each in a fresh process, with its minor page faults. Writes
outputs/bench_parts.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

import torch
import torch.nn.functional as F

from ..config import load_config
from ..model.gram import gram
from ..model.vgg import CONVS, LAYERS
from ..runner.hardware import cpu_has_fast_bf16, describe_device, resolve_precision, reuse_freed_memory
from ..runner.loop import module_for
from .common import CONTENT, MIN_BENCH_SIZE, STYLE, child, content_hw, median_ms, write_report

CL = "channels_last"


def _ms(fn, repeats: int = 10) -> float:
    return median_ms(fn, repeats, warmup=2)


def convolutions(h: int, w: int, dtype) -> list[dict]:

    rows = []
    for (block, index, cin, cout), name in zip(CONVS, LAYERS):
        scale = 2 ** (block - 1)
        x = torch.randn(1, cin, h // scale, w // scale).to(dtype).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(cout, cin, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
        grad = torch.randn(1, cout, *x.shape[-2:]).to(dtype).contiguous(memory_format=torch.channels_last)
        flops = 2 * cin * cout * 9 * x.shape[-2] * x.shape[-1]
        fwd = _ms(lambda: F.conv2d(x, weight, padding=1))
        bwd = _ms(lambda: torch.ops.aten.convolution_backward(grad, x, weight, [cout], [1, 1], [1, 1], [1, 1], False,
                                                              [0, 0], 1, [True, False, False]))
        rows.append({"layer": name, "forward_ms": fwd, "input_grad_ms": bwd,
                     "forward_gflops": flops / fwd / 1e6, "input_grad_gflops": flops / bwd / 1e6})
        if name == "conv5_1":
            break
    return rows


def grams(h: int, w: int, dtype) -> dict:

    out = {}
    for layer, channels, scale in (("conv1_1", 64, 1), ("conv2_1", 128, 2), ("conv3_1", 256, 4),
                                   ("conv4_1", 512, 8), ("conv5_1", 512, 16)):
        f = torch.randn(1, channels, h // scale, w // scale).to(dtype).contiguous(memory_format=torch.channels_last)
        f.requires_grad_()

        def forward_backward():
            (grad,) = torch.autograd.grad(gram(f).square().sum(), f)
            return grad
        out[layer] = _ms(forward_backward)
    return out


def layout_add(h: int, w: int, dtype) -> dict:
    out = {}
    for layer, channels, scale in (("conv1_1", 64, 1), ("conv4_2", 512, 8)):
        a = torch.randn(1, channels, h // scale, w // scale).to(dtype).contiguous(memory_format=torch.channels_last)
        b = torch.randn_like(a).contiguous(memory_format=torch.channels_last)
        other = b.contiguous()
        out[layer] = {"same_layout_ms": _ms(lambda: a + b), "mixed_layout_ms": _ms(lambda: a + other)}
    return out


def worker_evaluation(size: int, tuned: bool) -> dict:
    """The real loss (default config, caffe weights), forward and backward, timed per evaluation."""


    cfg = load_config(None, [f"data.size={size}", "scales.min=0", f"data.content={CONTENT}", f"data.style={STYLE}"])
    module = module_for(cfg)
    bf16 = resolve_precision("auto", "cpu").startswith("bf16")
    with reuse_freed_memory(tuned) as took:
        module.enter_scale(0)
        target = module.target

        def evaluation():
            target.grad = None
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, _ = module.losses(target)
            loss.sum().backward()
        for _ in range(3):
            evaluation()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ms = _ms(evaluation, repeats=8)  # 2 warm-up calls + 8 timed ones
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 10
    return {"ms": ms, "page_faults_per_evaluation": faults, "took": took,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nst.bench.parts", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--out", default="outputs/bench_parts.json")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.size < MIN_BENCH_SIZE:
        p.error(f"--size: at least {MIN_BENCH_SIZE} px (conv5_1 works at 1/16 of it)")
    if args.worker:
        print(json.dumps(worker_evaluation(int(args.worker[0]), bool(int(args.worker[1])))))
        return 0


    dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    h, w = content_hw(args.size)
    report: dict = {"device": describe_device(), "hw": [h, w], "dtype": str(dtype).removeprefix("torch.")}
    print(f"device: {report['device']}; {w}x{h}, {report['dtype']}, channels_last")

    report["convolutions"] = convolutions(h, w, dtype)
    print(f"\n{'layer':<8} {'fwd ms':>7} {'GFLOP/s':>8} {'grad ms':>8} {'GFLOP/s':>8}")
    for r in report["convolutions"]:
        print(f"{r['layer']:<8} {r['forward_ms']:7.2f} {r['forward_gflops']:8.0f} {r['input_grad_ms']:8.2f} "
              f"{r['input_grad_gflops']:8.0f}")
    total = sum(r["forward_ms"] + r["input_grad_ms"] for r in report["convolutions"])
    print(f"all convolutions, forward + input gradient: {total:.1f} ms")

    report["gram_forward_backward_ms"] = grams(h, w, dtype)
    print(f"\nGram forward + backward: {sum(report['gram_forward_backward_ms'].values()):.1f} ms in all ("
          + ", ".join(f"{k} {v:.2f}" for k, v in report["gram_forward_backward_ms"].items()) + ")")

    report["gradient_add"] = layout_add(h, w, dtype)
    for layer, r in report["gradient_add"].items():
        print(f"adding two gradients at {layer}'s size: same layout {r['same_layout_ms']:.2f} ms, "
              f"mixed layouts {r['mixed_layout_ms']:.2f} ms ({r['mixed_layout_ms'] / r['same_layout_ms']:.1f}x)")

    default, tuned = (child([str(args.size), str(int(tuned))], "nst.bench.parts") for tuned in (False, True))
    report["evaluation"] = {"glibc_default": default, "reuse_freed_memory": tuned}
    lines = [f"one evaluation of the loss: {default['ms']:.0f} ms with glibc's defaults "
             f"({default['page_faults_per_evaluation']:.0f} page faults)",
             f"{tuned['ms']:.0f} ms keeping freed memory ({tuned['page_faults_per_evaluation']:.0f} page faults): "
             f"{1 - tuned['ms'] / default['ms']:.1%} less",
             f"peak memory {default['peak_mb']:.0f} vs {tuned['peak_mb']:.0f} MB"]
    print("\n" + "; ".join(lines))
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
