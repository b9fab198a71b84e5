"""Config: schema defaults, overrides, presets, and one-line errors that name the key."""

import os

import pytest

from nst.config import layers_of, load_config, scale_sizes, steps_per_scale
from nst.errors import ConfigError
from helpers import ROOT


def test_showcase_config_loads_with_overrides():
    cfg = load_config(f"{ROOT}/configs/starry.yaml", ["data.size=256", "trainer.max_steps=100"])
    assert cfg.data.size == 256 and cfg.trainer.max_steps == 100
    assert cfg.data.style.endswith("starry_night.jpg")
    assert layers_of(cfg) == (["conv4_2"], ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"])


def test_seed_preset_and_per_list_override():
    cfg = load_config(None, ["model.preset=seed"])
    assert layers_of(cfg)[0] == ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]
    cfg = load_config(None, ["model.preset=seed", "model.content_layers=[conv4_1]"])
    assert layers_of(cfg) == (["conv4_1"], ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"])


@pytest.mark.parametrize("override, words", [
    (["data.sise=3"], ["data.sise"]),
    (["data.size=big"], ["data.size", "big"]),
    (["data.size=0"], ["data.size", "positive"]),
    (["model.style_layers=[conv1_1,conv9_9]"], ["model.style_layers", "conv9_9"]),
    (["model.weights=vgg16"], ["model.weights", "vgg16"]),
    (["loss.style_weight=-1"], ["loss.style_weight", ">= 0"]),
    (["optim.name=sgd"], ["optim.name", "sgd"]),
    (["logger.mode=loud"], ["logger.mode", "loud"]),
    (["model.style_layer_weights=[1,2]"], ["model.style_layer_weights", "2 weights for 5"]),
    (["data.style=[a.jpg,b.jpg]", "data.style_weights=[1]"], ["data.style_weights", "1 weights for 2"]),
    (["trainer.precision=16-mixed"], ["16-mixed", "L-BFGS"]),
    (["size=3"], ["size"]),
])
def test_config_errors_name_the_key_in_one_line(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, override)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(str(bad))


def test_scales_run_coarse_to_fine_and_share_the_steps():
    sqrt2 = "scales.factor=1.4142135623730951"
    cfg = load_config(None, ["data.size=512", "scales.min=128", "scales.steps=50", "trainer.max_steps=400", sqrt2])
    assert scale_sizes(cfg) == [128, 181, 256, 362, 512]
    assert steps_per_scale(cfg) == [50, 50, 50, 50, 200]
    # Fewer steps: the coarse scales give way, the full size keeps at least 40%.
    cfg = load_config(None, ["data.size=512", "scales.min=128", "scales.steps=50", "trainer.max_steps=100", sqrt2])
    assert steps_per_scale(cfg) == [15, 15, 15, 15, 40]
    assert steps_per_scale(load_config(None, ["data.size=128"])) == [150]  # data.size <= scales.min: one scale
    with pytest.raises(ConfigError, match="trainer.max_steps: 3 steps are too few for 5 scales"):
        steps_per_scale(load_config(None, ["data.size=512", "scales.min=128", "trainer.max_steps=3", sqrt2]))
    default = load_config(None, [])  # the showcase's schedule: 192 -> 384 px, 60 + 90 steps
    assert scale_sizes(default) == [192, 384] and steps_per_scale(default) == [60, 90]


def test_train_py_refuses_a_sweep_config_instead_of_ignoring_its_pairs(capsys):
    from nst.cli import main
    assert main(["--config", f"{ROOT}/configs/sweep.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sweep:") and "python -m nst.sweep" in err and "\n" not in err


def test_the_wandb_sweep_drives_train_py_with_schema_keys_into_a_folder_per_value(tmp_path):
    import yaml
    from helpers import CONTENT, STYLE
    from helpers.train import train
    sweep = yaml.safe_load(open(os.path.join(ROOT, "configs", "wandb_sweep.yaml")))
    assert sweep["program"] == "train.py" and "configs/wandb_run.yaml" in sweep["command"]
    for key, spec in sweep["parameters"].items():
        for value in spec["values"]:
            cfg = load_config(os.path.join(ROOT, "configs", "wandb_run.yaml"), [f"{key}={value}"])
            assert cfg.output.dir == f"outputs/wandb_sweep/style_weight-{float(value)}"
    # what the agent runs, from a folder of its own
    proc = train(["--config", os.path.join(ROOT, "configs", "wandb_run.yaml"), "--loss.style_weight=10",
                  f"--data.content={CONTENT}", f"--data.style={STYLE}", "--data.size=48", "--trainer.max_steps=2",
                  "--model.weights=random", "--logger.mode=disabled"], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "outputs" / "wandb_sweep" / "style_weight-10.0" / "final.png").exists()
