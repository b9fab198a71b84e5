"""W&B (nst.runner.wandb): mode selection: never a login prompt, never a hang; the user's WANDB_MODE wins."""

import pytest

from nst.runner import wandb as nst_wandb


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))


def test_auto_is_offline_without_credentials_and_online_with_them(no_credentials, monkeypatch):
    assert nst_wandb.resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert nst_wandb.resolve_mode("auto") == "online"


@pytest.mark.parametrize("env, mode", [("disabled", "disabled"), ("offline", "offline"), ("dryrun", "offline"),
                                       ("online", "online"), ("run", "online")])
def test_wandb_mode_in_the_environment_decides_auto(no_credentials, monkeypatch, env, mode):
    monkeypatch.setenv("WANDB_MODE", env)
    assert nst_wandb.resolve_mode("auto") == mode


def test_an_explicit_mode_is_taken_as_it_is(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert nst_wandb.resolve_mode("offline") == "offline"


def test_disabled_starts_no_run(no_credentials, tmp_path):
    from nst.config import load_config
    cfg = load_config(None, ["logger.mode=disabled", f"output.dir={tmp_path}"])
    assert nst_wandb.start_run(cfg, str(tmp_path)) is None
    assert not (tmp_path / "wandb").exists()


# ---- what reaches W&B: read back from the offline records -----------------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

import yaml  # noqa: E402

from helpers import CONTENT, ROOT, STYLE, forks  # noqa: E402
from helpers.sweeps import STYLES, summary, sweep  # noqa: E402
from helpers.sweeps import tiny as tiny_sweep  # noqa: E402
from helpers.wandb_records import offline_runs  # noqa: E402


def wandb_env(tmp_path, **extra) -> dict:
    """A user's environment with W&B's files in the test's folder, no key, no WANDB_MODE (logger.mode decides)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WANDB_") and k.lower() not in ("https_proxy", "http_proxy")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", HOME=str(tmp_path),
               NETRC=str(tmp_path / "no-netrc"), WANDB_SILENT="true", WANDB_DIR=str(tmp_path),
               WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
               WANDB_DATA_DIR=str(tmp_path / "wandb-data"))
    env.update(extra)
    return env


def small(out, *extra, steps=40) -> list[str]:
    return [f"data.content={CONTENT}", f"data.style={STYLE}", "data.size=32", "scales.min=0",
            f"trainer.max_steps={steps}", "model.weights=random", "trainer.precision=32", "trainer.accelerator=cpu",
            "logger.mode=offline", "logger.image_every=0", "trainer.enable_progress_bar=false", f"output.dir={out}",
            *extra]


def train_py(args, env):
    return forks.popen([os.path.join(ROOT, "train.py"), *args], env=env)


def done(p, timeout=240) -> subprocess.CompletedProcess:
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def parts(out) -> list:
    """The run's offline files in the order they were written (a resumed run adds one)."""
    return sorted(offline_runs(str(out)), key=lambda r: r.folder)


def test_interrupted_then_resumed_twice_is_one_wandb_run_with_the_right_exit_codes(tmp_path):
    out, env = tmp_path / "run", wandb_env(tmp_path)
    p = train_py(small(out, "output.save_every=1"), env)
    while not (out / "step_00005.png").exists() and p.poll() is None:  # an event, however slow the machine
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    proc = done(p)
    assert proc.returncode == 130, proc.stderr[-2000:]
    [first] = parts(out)
    assert first.exit_code == 1 and first.summary["stopped"] == "interrupted"  # not a finished-looking run
    assert "final/loss" not in first.summary and "loss" not in first.summary
    assert (out / "wandb_id").read_text().strip() == first.id
    import torch
    assert torch.load(out / "last.ckpt", weights_only=True)["nst"]["wandb_id"] == first.id  # in the checkpoint too

    proc = done(train_py(["--config", str(out / "config.yaml"), "resume=true", "output.save_every=0"], env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    first, second = parts(out)
    assert second.id == first.id and second.exit_code == 0
    assert min(second.history_steps) >= max(first.history_steps)  # it goes on where the first part stopped
    # the loss columns are the final float32 evaluation, not the last value logged; min_loss is the lowest logged
    assert second.summary["loss"] == second.summary["final/loss"] == metrics["loss"]
    assert second.summary["style_loss"] == metrics["style_loss"] and second.summary["stopped"] == "max_steps"
    assert second.summary["min_loss"] > 0 and second.metrics["loss"] == "none: true"
    assert second.config["used"]["precision"] == "32-true" and second.config["used"]["accelerator"] == "cpu"
    assert second.config["used"]["device"] and second.config["used"]["height"] == metrics["size"][0]
    assert f"W&B: offline run {first.id} (2 parts); upload with: wandb sync {out}/wandb/offline-run-*-{first.id}" \
        in proc.stdout.splitlines()

    # a finished run resumed with more steps: still the same W&B run, also when only the checkpoint has its id
    (out / "wandb_id").unlink()
    proc = done(train_py(["--config", str(out / "config.yaml"), "resume=true", "trainer.max_steps=45"], env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = parts(out)
    assert [r.id for r in runs] == [first.id] * 3 and [r.exit_code for r in runs] == [1, 0, 0]
    assert runs[2].summary["final/steps"] == 45

    # without resume=true the folder's next run is a new W&B run
    proc = done(train_py(small(out, steps=3), env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len({r.id for r in parts(out)}) == 2


def test_a_rerun_of_one_setting_versions_one_artifact_named_by_content_style_and_setting(tmp_path):
    env = wandb_env(tmp_path)
    procs = [train_py(small(tmp_path / name, *extra, steps=2), env)
             for name, extra in (("a", ()), ("b", ("logger.log_checkpoint=true",)), ("c", ("loss.style_weight=300",)))]
    for p in procs:
        proc = done(p)
        assert proc.returncode == 0, proc.stderr[-2000:]
    names = {name: offline_runs(str(tmp_path / name))[0].artifacts for name in "abc"}
    [name] = names["a"]
    assert names["b"] == [name, name.replace("final-", "ckpt-", 1)]  # logger.log_checkpoint: last.ckpt too
    assert names["c"] != names["a"]
    assert name.startswith("final-tubingen__starry_night-")
    meta = offline_runs(str(tmp_path / "a"))[0].artifact_metadata[name]
    assert meta["config_digest"] == name.rsplit("-", 1)[1] and meta["loss"] > 0


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_credentials_but_no_server_go_offline_at_once_and_say_so_in_one_line(tmp_path):
    out = tmp_path / "run"
    env = wandb_env(tmp_path, WANDB_API_KEY="x" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{closed_port()}")
    proc = done(train_py([*small(out, steps=2), "logger.mode=auto"], env))
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Went offline after the probe (the line below), not after wandb's 60 s init_timeout: told by what the run
    # says and wrote, not by the wall clock, which a busy machine stretches.
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("W&B: cannot reach 127.0.0.1:") and "offline" in lines[0], lines
    [run] = offline_runs(str(out))
    assert run.exit_code == 0 and "loss" in run.summary


def test_an_unwritable_wandb_data_dir_is_one_line_and_the_outputs_stay(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    out = tmp_path / "run"
    proc = done(train_py(small(out, steps=2), wandb_env(tmp_path, WANDB_DATA_DIR=str(tmp_path / "file.txt" / "sub"))))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("W&B: final.png not logged as an artifact"), proc.stderr
    assert {"final.png", "metrics.json", "config.yaml", "last.ckpt"} <= set(os.listdir(out))


def test_a_sweep_rerun_goes_on_with_its_one_summary_run_whose_config_says_what_it_is(tmp_path):
    out = tmp_path / "sweep"
    args = tiny_sweep(out, "sweep.grid={loss.style_weight: [3, 300]}", contents=[CONTENT], styles=STYLES[:1])
    for _ in range(2):  # the second time every pair is complete and skipped
        proc = sweep(tmp_path, *args)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert {r["status"] for r in summary(out)} == {"cached"}
    runs = offline_runs(str(out))
    summaries = [r for r in runs if r.job_type == "summary"]
    assert len(summaries) == 2 and len({r.id for r in summaries}) == 1  # one W&B run, logged twice
    config = summaries[0].config
    assert config["summary_of"] == "sweep" and config["grid"] == {"loss.style_weight": [3, 300]}
    assert "loss" not in config and summaries[1].summary["pairs_cached"] == 2
    pairs = [r for r in runs if r.job_type == "pair"]
    assert len(pairs) == 2 and {r.exit_code for r in pairs} == {0}
    assert sorted(r.config["loss"]["style_weight"] for r in pairs) == [3, 300]


def test_under_a_sweep_agent_the_config_is_flat_so_its_keys_and_ours_are_one(tmp_path):
    out = tmp_path / "run"
    proc = done(train_py(small(out, "loss.style_weight=3", steps=1), wandb_env(tmp_path, WANDB_SWEEP_ID="abcdefgh")))
    assert proc.returncode == 0, proc.stderr[-2000:]
    [record] = offline_runs(str(out))
    assert record.config.get("loss.style_weight") == 3 and "loss" not in record.config, sorted(record.config)


def test_a_failed_picture_ends_its_run_with_exit_code_1_and_says_why(tmp_path, monkeypatch):
    import wandb

    from nst.config import load_config
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = load_config(None, ["logger.mode=offline", f"output.dir={tmp_path}"])
    run = nst_wandb.start_run(cfg, str(tmp_path))
    nst_wandb.finish(run, types.SimpleNamespace(result=None, error="broke"))
    wandb.teardown()  # every record on disk before reading them
    [record] = offline_runs(str(tmp_path))
    assert record.exit_code == 1 and record.summary["stopped"] == "failed" and record.summary["error"] == "broke"


def test_the_wandb_sweep_ranks_by_the_final_loss_and_runs_the_projects_python():
    spec = yaml.safe_load(open(os.path.join(ROOT, "configs", "wandb_sweep.yaml")))
    assert spec["metric"] == {"name": "loss", "goal": "minimize"}
    assert spec["command"][1] == ".venv/bin/python" and "${interpreter}" not in spec["command"]


def test_a_table_makes_its_pictures_wandb_images_and_keeps_the_other_cells():
    import wandb
    from PIL import Image
    rows = ([name, Image.new("RGB", (8, 6), (200, 50, 50)) if name == "a" else None, 1.5] for name in ("a", "b"))
    table = nst_wandb.table(["pair", "result", "loss"], rows)
    (a, picture, loss), b = table.data
    assert (a, loss) == ("a", 1.5) and isinstance(picture, wandb.Image) and b == ["b", None, 1.5]
    assert nst_wandb.image(None) is None
    assert isinstance(nst_wandb.image(Image.new("RGB", (4, 4)), "caption"), wandb.Image)
