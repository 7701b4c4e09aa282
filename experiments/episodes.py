"""Running one episode of one condition: the only module of ``experiments`` that wires the
env, the agent and the supervisor together (everything after it reads ``StepRecord`` lists).

A *condition* is what a row of the report compares: the configured gate (``supervised``),
the agent with nobody watching (``agent_alone``: no estimators, no gate, no human), or the
supervisor with a baseline gate (``never`` / ``always`` / ``random`` at the configured
gate's request rate). Episode seeds derive from the base seed through
``numpy.random.SeedSequence``, so adding a scenario or a condition never shifts the seeds of
the others, and training and evaluation seeds never overlap.

Each condition keeps one gate object for the whole run, so gates that recalibrate online
(``budget``, ``thrifty``) carry what they learned across episodes and rounds, as deployed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from takeover.experiments.config import ExperimentConfig
from takeover.records import StepRecord

PURPOSES = {"train": 1, "eval": 2, "round": 3}
"""Seed streams: training collection, final evaluation, per-round evaluation."""

SCENARIO_IDS = {
    "sudden_brake": "takeover/SuddenBrake-v1", "cut_in": "takeover/CutIn-v1",
    "stalled_car": "takeover/StalledCar-v1", "merge": "takeover/Merge-v1",
    "lane_closure": "takeover/LaneClosure-v1", "none": "takeover/Plain-v1",
    "mixed": "takeover/Highway-v1",
}

NO_LABELS = ("agent_alone", "always")
"""Conditions not scored counterfactually: nothing is requested, or everything is (labelling
every step of ``always`` costs a rollout per step and says nothing)."""


def episode_seed(base: int, purpose: str, scenario: str, run: int, episode: int) -> int:
    """A 31-bit episode seed that depends on every part (and on nothing else)."""
    scen = list(SCENARIO_IDS).index(scenario)
    ss = np.random.SeedSequence([base, PURPOSES[purpose], scen, run, episode])
    return int(ss.generate_state(1, np.uint32)[0] >> 1)


@dataclass(frozen=True)
class Condition:
    """One compared condition: ``gate=None`` means no supervisor at all."""

    name: str
    gate: str | None
    gate_kwargs: dict[str, Any] = field(default_factory=dict)


def conditions(cfg: ExperimentConfig, random_rate: float = 0.05) -> list[Condition]:
    """The configured gate first, then the baselines (``random`` at ``random_rate``)."""
    sup = cfg.supervisor
    out = [Condition("supervised", sup.gate, dict(sup.gate_kwargs))]
    for b in cfg.eval.baselines:
        if b == "agent_alone":
            out.append(Condition(b, None))
        elif b == "random":
            rate = float(min(max(random_rate, 0.0), 1.0))
            out.append(Condition(b, "random", {"rate": rate, "seed": cfg.seed}))
        else:
            out.append(Condition(b, b))
    return out


class EnvCache:
    """One env per scenario, reused across episodes (``reset(seed)`` makes them independent)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.kwargs = cfg.env.env_kwargs()
        self._envs: dict[str, gym.Env] = {}

    def get(self, scenario: str) -> gym.Env:
        if scenario not in self._envs:
            import takeover.envs  # noqa: F401  (registers the ids)

            self._envs[scenario] = gym.make(SCENARIO_IDS[scenario], **self.kwargs)
        return self._envs[scenario]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


class Rollouts:
    """Plays episodes of any condition with the real supervisor
    (``takeover.supervisor.loop.Supervisor``), one gate object per condition."""

    def __init__(self, cfg: ExperimentConfig, envs: EnvCache, agent: Any) -> None:
        self.cfg, self.envs, self.agent = cfg, envs, agent
        self._gates: dict[tuple, Any] = {}
        self._human = None
        self._estimators: dict[str, Any] | None = None

    def estimators(self) -> dict[str, Any]:
        """Built once per run (the novelty estimator indexes the agent's training sample)."""
        if self._estimators is None:
            from takeover.supervisor.estimators import make_estimators

            ref = getattr(self.agent, "reference_obs", None)
            spec = {n: ({"reference": ref} if n == "novelty" and ref is not None else {})
                    for n in self.cfg.supervisor.estimators}
            self._estimators = make_estimators(spec)
        return self._estimators

    def gate(self, condition: Condition) -> Any:
        from takeover.supervisor.gates import GATES

        key = (condition.name, condition.gate, tuple(sorted(condition.gate_kwargs.items())))
        if key not in self._gates:
            name = condition.gate or "never"
            self._gates[key] = GATES.make(name, **condition.gate_kwargs)
        return self._gates[key]

    def human(self) -> Any:
        if self._human is None:
            from takeover.supervisor.humans import HUMANS

            s = self.cfg.supervisor
            self._human = HUMANS.make(s.human, **dict(s.human_kwargs))
        return self._human

    def run(self, condition: Condition, scenario: str, seed: int, episode_id: str,
            label: bool = False) -> tuple[list[StepRecord], list[Any]]:
        """One episode; returns its records and (when ``label``) counterfactual labels."""
        from takeover.supervisor.counterfactual import Counterfactual
        from takeover.supervisor.handover import HandoverConfig
        from takeover.supervisor.loop import Supervisor

        s, cf_cfg = self.cfg.supervisor, self.cfg.counterfactual
        alone = condition.gate is None
        cf = None
        if label and not alone and condition.name not in NO_LABELS:
            cf = Counterfactual(horizon=cf_cfg.horizon, sample_rate=1.0 / cf_cfg.sample_every,
                                seed=self.cfg.seed)
        sup = Supervisor(
            self.envs.get(scenario), self.agent,
            {} if alone else self.estimators(),
            self.gate(condition), None if alone else self.human(),
            gate_score=None if alone else s.gate_score,
            handover=HandoverConfig(**dict(s.handover_kwargs)),
            episode_name=lambda _seed, _i: episode_id, counterfactual=cf,
        )
        records = sup.run_episode(seed)
        return records, (cf.labels if cf is not None else [])


def request_rate(episodes: list[list[StepRecord]]) -> float:
    """Share of steps on which the gate asked for the human (to rate-match ``random``)."""
    steps = sum(len(e) for e in episodes)
    if steps == 0:
        return math.nan
    return sum(r.gate_request for e in episodes for r in e) / steps
