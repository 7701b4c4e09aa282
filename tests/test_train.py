"""Training: determinism, run directory contents, config errors, the CLI commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from takeover.agents import load_agent
from takeover.agents.train import TrainConfig, train
from takeover.cli import app
from takeover.config import ConfigError

TINY = dict(total_timesteps=128, n_envs=2, n_steps=32, batch_size=32, n_epochs=1,
            net_arch=(8,), eval_freq=0, tensorboard=False, reference_obs=50)


def _weights(path):
    return load_agent(path).policy.state_dict()


def test_same_seed_same_weights_other_seed_different(tmp_path):
    a = _weights(train(TrainConfig(seed=3, out=str(tmp_path / "a"), **TINY)))
    b = _weights(train(TrainConfig(seed=3, out=str(tmp_path / "b"), **TINY)))
    c = _weights(train(TrainConfig(seed=4, out=str(tmp_path / "c"), **TINY)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_run_directory_holds_config_checkpoint_eval_and_tensorboard(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "run"), **{**TINY, "eval_freq": 64,
                                                     "eval_episodes": 1, "tensorboard": True})
    path = train(cfg)
    run = tmp_path / "run"
    assert path == run / "checkpoint"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["seed"] == 0 and saved["env_id"] == "takeover/Plain-v2"
    assert TrainConfig(**{**saved, "net_arch": tuple(saved["net_arch"])}) == cfg
    assert (run / "eval" / "evaluations.npz").is_file()
    assert any((run / "tb").rglob("events.out.tfevents.*"))
    agent = load_agent(path)
    assert agent.reference_obs.shape == (50, 9, 7)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["info"]["train_config"]["total_timesteps"] == 128


def test_ttc_shaping_charges_closing_in_and_snapshots_are_checkpoints(tmp_path):
    """The shaping subtracts penalty x (1 - ttc / horizon) where ttc < horizon and nothing
    elsewhere (a standing ego closing on nobody pays nothing); with it on, the eval env is
    wrapped alike (SB3 syncs VecNormalize along both chains) and snapshots load."""
    from takeover.agents.train import make_vec_env

    plain = make_vec_env("takeover/Plain-v2", 4, 7, "discrete", {})
    shaped = make_vec_env("takeover/Plain-v2", 4, 7, "discrete", {}, ttc_penalty=2.0,
                          ttc_horizon=3.0)
    plain.reset(), shaped.reset()
    charged = 0
    for _ in range(60):
        act = np.full(4, 1)  # faster: close in on the traffic ahead
        _, r0, _, infos = plain.step(act)
        _, r1, _, _ = shaped.step(act)
        ttc = np.array([i["ttc"] for i in infos])
        want = r0 - 2.0 * np.clip(1.0 - ttc / 3.0, 0.0, 1.0)
        np.testing.assert_allclose(r1, want, rtol=1e-5, atol=1e-5)
        charged += int((ttc < 3.0).sum())
    assert charged > 0  # the check above saw the penalty act
    cfg = TrainConfig(out=str(tmp_path / "s"), ttc_penalty=1.0, snapshot_freq=64,
                      **{**TINY, "eval_freq": 64, "eval_episodes": 1})
    train(cfg)
    snaps = sorted((tmp_path / "s" / "snapshots").iterdir())
    assert [p.name for p in snaps] == ["00000064", "00000128"]
    assert load_agent(snaps[0]).metadata["steps"] == 64


def test_sac_for_continuous(tmp_path):
    cfg = TrainConfig(action_type="continuous", out=str(tmp_path / "sac"), learning_starts=32,
                      **{**TINY, "total_timesteps": 64})
    assert cfg.resolved_algo == "sac"
    agent = load_agent(train(cfg))
    assert agent.metadata["algo"] == "SAC"
    act = agent.act(np.zeros((9, 7), np.float32)).action
    assert act.shape == (2,) and np.all(np.abs(act) <= 1)


@pytest.mark.parametrize("bad, match", [
    ({"total_timestep": 10}, "Did you mean 'total_timesteps'"),
    ({"env_id": "takeover/Plane-v0"}, "Did you mean 'takeover/Plain-v2'"),
    ({"algo": "sac", "action_type": "discrete"}, "algo=sac needs action_type=continuous"),
    ({"n_envs": 0}, "out of range"),
])
def test_bad_config_names_the_problem(bad, match):
    from takeover.config import from_dict

    with pytest.raises(ConfigError, match=match):
        from_dict(TrainConfig, bad)


def test_cli_train_then_eval(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["train", "--no-progress", f"out={out}", "total_timesteps=64", "n_envs=2",
            "n_steps=32", "batch_size=32", "n_epochs=1", "net_arch=[8]", "eval_freq=0",
            "tensorboard=false", "reference_obs=0"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (out / "checkpoint" / "manifest.json").is_file()
    res = runner.invoke(app, ["eval", str(out / "checkpoint"), "--seeds", "2", "-s",
                              "takeover/CutIn-v2", "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)["takeover/CutIn-v2"]
    assert set(result) >= {"success", "collision", "offroad", "mean_speed"}
    assert 0 <= result["success"]["lo"] <= result["success"]["mean"] <= result["success"]["hi"]
    bad = runner.invoke(app, ["train", "total_timestep=5"])
    assert bad.exit_code == 2 and "total_timesteps" in bad.output
    bad = runner.invoke(app, ["eval", str(out / "checkpoint"), "-s", "takeover/Nope-v0"])
    assert bad.exit_code == 2 and "unknown scenario" in bad.output
