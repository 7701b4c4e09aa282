"""The experiment config: every malformed input stops before anything runs, naming the
problem; shipped configs load; overrides and the run folder's copy round-trip."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from takeover.cli import app
from takeover.config import ConfigError, from_dict, to_dict
from takeover.experiments.config import (
    CONFIG_DIR,
    ExperimentConfig,
    describe,
    load_config,
    with_sweep_cell,
)

runner = CliRunner()


def _write(tmp_path, text: str):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return str(p)


BAD = [
    # (yaml text or None for a missing file, extra args, words the message must contain)
    ("trian:\n  rounds: 1\n", [], ["trian", "Did you mean 'train'"]),
    ("train:\n  rounds: two\n", [], ["train.rounds", "integer"]),
    ("train: [1, 2\n", [], ["not valid YAML"]),
    (None, [], ["does not exist"]),
    ("eval:\n  seeds: 0\n", [], ["eval.seeds", "out of range"]),
    ("stats:\n  confidence: 1.5\n", [], ["stats.confidence", "out of range"]),
    ("env:\n  scenarios: [cutin]\n", [], ["cutin", "Did you mean 'cut_in'"]),
    ("supervisor:\n  gate: treshold\n", [], ["treshold", "Did you mean 'threshold'"]),
    ("supervisor:\n  human: avrage\n", [], ["avrage", "Did you mean 'average'"]),
    ("supervisor:\n  estimators: [ensembel]\n  gate_score: ensembel\n", [], ["ensembel"]),
    ("supervisor:\n  gate_score: q_risk\n  estimators: [ttc]\n", [], ["gate_score"]),
    ("eval:\n  baselines: [nevr]\n", [], ["nevr", "Did you mean 'never'"]),
    ("- a\n- b\n", [], ["must hold a mapping"]),
    ("agent:\n  name: no_such_agent\n", [], ["agent.name='no_such_agent'"]),
    ("name: x\n", ["train.rounds=-1"], ["train.rounds", "out of range"]),
    ("name: x\n", ["train.method=pvp"], ["train.method='pvp' is not allowed"]),
    ("name: x\n", ["seeds"], ["key=value"]),
    ("name: x\n", ["--set", "eval.sedes=2"], ["sedes", "Did you mean 'seeds'"]),
    ("name: x\n", ["--expect", "success_rate=>0.9"], ["--expect", "metric OP number"]),
]


@pytest.mark.parametrize("text,extra,words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_malformed_config_exits_nonzero_naming_the_problem(tmp_path, text, extra, words):
    path = str(tmp_path / "missing.yaml") if text is None else _write(tmp_path, text)
    res = runner.invoke(app, ["run", path, *extra, "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2, res.output
    msg = " ".join(res.output.split())  # rich wraps long lines
    for w in words:
        assert w in msg, (w, msg)
    assert not (tmp_path / "run").exists(), "nothing may start before the config is valid"


def test_sweep_refuses_malformed_config(tmp_path):
    path = _write(tmp_path, "sweep:\n  gates: [thresold]\n")
    res = runner.invoke(app, ["sweep", path, "--out", str(tmp_path / "sw"), "--quiet"])
    assert res.exit_code == 2
    assert "Did you mean 'threshold'" in " ".join(res.output.split())


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    from takeover.experiments.fleet import FleetExperimentConfig, is_fleet, load_fleet_config

    if is_fleet(path):  # `kind: fleet` configs are fleet-size sweeps (experiments/fleet.py)
        assert isinstance(load_fleet_config(path), FleetExperimentConfig)
        return
    cfg, _ = load_config(path)
    assert isinstance(cfg, ExperimentConfig)


def test_bare_name_finds_shipped_config_and_typo_is_named():
    cfg, _ = load_config("default")
    assert cfg.name == "default"
    with pytest.raises(ConfigError, match="Did you mean 'default'"):
        load_config("defualt")


def test_overrides_apply_and_resolved_config_round_trips(tmp_path):
    cfg, _ = load_config(None, ["train.rounds=1", "env.scenarios=[cut_in]",
                                "supervisor.gate_kwargs={high: 0.2}"])
    assert cfg.train.rounds == 1 and cfg.env.scenarios == ("cut_in",)
    assert cfg.supervisor.gate_kwargs == {"high": 0.2}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg)))
    again, _ = load_config(tmp_path)  # a run folder means its config.yaml
    assert again == cfg


def test_every_field_is_documented():
    rows = describe()
    assert len(rows) > 30
    assert all(help_ for _k, _d, help_ in rows), [k for k, _d, h in rows if not h]


def test_sweep_cell_replaces_the_main_condition():
    cfg = from_dict(ExperimentConfig, {})
    cell = with_sweep_cell(cfg, gate="budget", estimator="q_risk", human="expert",
                           scenario="merge", seed=7)
    assert cell.supervisor.gate == "budget" and cell.supervisor.gate_score == "q_risk"
    assert "q_risk" in cell.supervisor.estimators and cell.env.scenarios == ("merge",)
    assert cell.seed == 7 and cell.supervisor.human == "expert"
