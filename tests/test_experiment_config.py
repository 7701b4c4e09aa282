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
    from takeover.experiments.rounds import (
        LearningConfig,
        is_learning_config,
        load_learning_config,
    )

    if is_learning_config(path):  # `takeover run` dispatches these to the learner comparison
        assert isinstance(load_learning_config(path), LearningConfig)
        return
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


# gate kwargs checked against the threshold gate (the default's gate is the predictive one)
THRESHOLD = ["supervisor.gate=threshold", "supervisor.gate_kwargs={}"]


def test_overrides_apply_and_resolved_config_round_trips(tmp_path):
    cfg, _ = load_config(None, ["train.rounds=1", "env.scenarios=[cut_in]",
                                *THRESHOLD, "supervisor.gate_kwargs={high: 0.2}"])
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


# --- hardening: every number finite, plugin kwargs typed, YAML read safely -------------------
@pytest.mark.parametrize("override,named", [
    ("train.lr=nan", "train.lr"), ("stats.confidence=.nan", "stats.confidence"),
    ("env.duration=.inf", "env.duration"),
    ("supervisor.gate_kwargs={high: .nan}", "supervisor.gate_kwargs.high"),
    ("supervisor.gate_kwargs={bogus: 1}", "supervisor.gate_kwargs.bogus"),
    ("supervisor.gate_kwargs={hihg: 0.4}", "Did you mean 'high'"),
    ("supervisor.gate_kwargs={high: fast}", "supervisor.gate_kwargs.high"),
    ("supervisor.gate_kwargs={min_dwell: 2.5}", "supervisor.gate_kwargs.min_dwell"),
    ("supervisor.gate_kwargs={high: 0.2, low: 0.9}", "low=0.9 > high=0.2"),
    ("supervisor.human_kwargs={seed: 3}", "unknown human parameter 'seed'"),
    ("supervisor.human_kwargs={lapse_prob: .nan}", "supervisor.human_kwargs.lapse_prob"),
    ("supervisor.handover_kwargs={timeout: .inf}", "supervisor.handover_kwargs.timeout"),
    ("supervisor.handover_kwargs={timout: 2}", "Did you mean 'timeout'"),
    ("sweep.gate_specs={../../x: {type: threshold}}", "path separator"),
    ("sweep.gate_specs={p: {type: threshold, high: .inf}}", "sweep.gate_specs.p.high"),
    ("name=../escape", "path separator"), ("name=" + "n" * 300, "characters long"),
])
def test_bad_numbers_and_plugin_kwargs_are_refused_at_load(override, named):
    with pytest.raises(ConfigError) as e:
        load_config(None, [*THRESHOLD, override])
    assert named in str(e.value)


def test_plugin_kwargs_are_coerced_to_their_annotations():
    cfg, _ = load_config(None, [*THRESHOLD, "supervisor.gate_kwargs={high: 1, low: 0}"])
    assert cfg.supervisor.gate_kwargs == {"high": 1.0, "low": 0.0}
    assert all(type(v) is float for v in cfg.supervisor.gate_kwargs.values())
    # infinity where the plugin's default documents it: the budget gate's initial threshold
    cfg, _ = load_config(None, ["supervisor.gate=budget", "supervisor.gate_kwargs={initial: .inf}"])
    assert cfg.supervisor.gate_kwargs["initial"] == float("inf")


def test_run_refuses_bad_kwargs_before_writing(tmp_path):
    from typer.testing import CliRunner

    from takeover.cli import app

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "supervisor.gate_kwargs={bogus: 1}", "--out", str(out)])
    assert res.exit_code == 2 and "bogus" in res.output and not out.exists()


@pytest.mark.parametrize("content,message", [
    (b"name: caf\xe9\n", "not UTF-8"),
    (b"a: " + b"[" * 200 + b"]" * 200 + b"\n", "nests deeper"),
    (b"a: &x [1, 2]\nb: *x\n", "alias"),
    (b"- just\n- a list\n", "must hold a mapping"),
    (b"a: [unclosed\n", "not valid YAML"),
    (b"name: x\x00\n", "NUL"),
    (b"!!python/object/apply:os.system [echo hi]\n", "not valid YAML"),
])
def test_bad_yaml_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_the_empty_config_runs_the_embedded_default(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    empty, _ = load_config(tmp_path / "empty.yaml")
    assert empty == load_config(None)[0]
    # the dataclass defaults are consistent on their own (the shipped novice is discrete)
    bare = ExperimentConfig()
    assert bare.agent.name == "novice" and bare.env.action_type == "discrete"
    assert bare.supervisor.gate_score in bare.supervisor.estimators


def test_env_observe_reaches_the_worlds():
    """``env.observe`` (the agent's sensor: nearest vehicles observed) is passed to every
    world the experiment makes."""
    cfg, _ = load_config("ci", ["env.observe=16"])
    assert cfg.env.env_kwargs()["observe"] == 16
    assert load_config("ci")[0].env.env_kwargs()["observe"] == 8
    assert load_config("ci", ["env.observe_lanes=true"])[0].env.env_kwargs()["observe_lanes"]
    assert not load_config("ci")[0].env.env_kwargs()["observe_lanes"]


def test_seed_blocks_are_exported():
    from takeover import config

    assert config.HELD_OUT_SEED == 1_000_000
    assert config.TRAIN_SEED == 100_000 and config.CALIBRATION_SEED == 200_000
    assert max(config.DEV_SEEDS) < config.TRAIN_SEED


# --- property tests of the loader: any YAML value either loads or is a ConfigError ----------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=5)
_KEYS = [k for k, _d, _h in describe()]


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(_KEYS), value=_VALUES)
def test_any_value_at_any_key_loads_or_is_a_config_error(key, value):
    data = {}
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    try:
        cfg = from_dict(ExperimentConfig, data)
    except ConfigError:
        return
    import math

    def finite(x):
        if isinstance(x, float):
            return math.isfinite(x)
        if isinstance(x, dict):
            return all(finite(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return all(finite(v) for v in x)
        return True

    assert finite(to_dict(cfg)), f"{key}={value!r} let a non-finite number through"


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=60))
def test_any_override_text_loads_or_is_a_config_error(text):
    try:
        load_config(None, [text])
    except ConfigError:
        pass
