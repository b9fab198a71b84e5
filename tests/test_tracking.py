"""W&B mode selection (nst.runner.tracking): never a login prompt, never a hang; the user's WANDB_MODE wins."""

import pytest

from nst.runner import tracking


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))


def test_auto_is_offline_without_credentials_and_online_with_them(no_credentials, monkeypatch):
    assert tracking.resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.resolve_mode("auto") == "online"


@pytest.mark.parametrize("env, mode", [("disabled", "disabled"), ("offline", "offline"), ("dryrun", "offline"),
                                       ("online", "online"), ("run", "online")])
def test_wandb_mode_in_the_environment_decides_auto(no_credentials, monkeypatch, env, mode):
    monkeypatch.setenv("WANDB_MODE", env)
    assert tracking.resolve_mode("auto") == mode


def test_an_explicit_mode_is_taken_as_it_is(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.resolve_mode("offline") == "offline"


def test_disabled_starts_no_run(no_credentials, tmp_path):
    from nst.config import load_config
    cfg = load_config(None, ["logger.mode=disabled", f"output.dir={tmp_path}"])
    assert tracking.start_run(cfg, str(tmp_path)) is None
    assert not (tmp_path / "wandb").exists()
