"""The supervised rollout loop: env + agent + estimators + gate + handover protocol + human,
one control step at a time, each step leaving a :class:`~takeover.records.StepRecord`.

One step::

    out = agent.act(obs)                       # action + what the agent knows of its doubt
    scores = {name: est.score(obs, out, info)}  # every estimator, logged
    decision = gate.decide(scores[gate_score], ctx)
    view = handover.on_gate(decision, t)       # request a takeover / gate handback
    hin = human.act(obs, info, env.unwrapped, view)
    controller = handover.on_human(hin, t)     # response, release, timeout -> fallback
    env.step(agent / human / minimal-risk action)

``step()`` never waits for anyone: a live keyboard human returns whatever is pressed now
(``None`` action for nothing), so a real-time loop can call it at the control rate.
Works on any Gymnasium env with Box or Discrete actions; the TTC oracle and counterfactual
scoring need the ground truth of ``takeover/*`` envs (or ``adapters``).
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from takeover.records import StepRecord, as_action_array
from takeover.registry import closest
from takeover.types import (
    NO_INPUT,
    Agent,
    AgentOutput,
    Controller,
    Human,
    HumanInput,
    HumanView,
)

from .counterfactual import Counterfactual
from .estimators import Estimator
from .gates import Gate, GateContext, GateDecision
from .handover import Handover, HandoverConfig, minimal_risk_action


def default_episode_name(seed: int | None, index: int) -> str:
    """``s0007-e0003``: the seed of the reset and the episode's index in this run."""
    return f"s{seed:04d}-e{index:04d}" if seed is not None else f"s----e{index:04d}"


def control_period(env: Any) -> float:
    """Seconds per step: the env's ``config.dt``, ``dt`` or (highway-env)
    ``1 / config["policy_frequency"]``, else ``1 / render_fps``, else 1."""
    base = env.unwrapped
    for get in (lambda: base.config.dt, lambda: base.dt,
                lambda: 1.0 / float(base.config["policy_frequency"]),
                lambda: 1.0 / float(env.metadata["render_fps"])):
        try:
            dt = float(get())
        except (AttributeError, KeyError, TypeError, ZeroDivisionError):
            continue
        if dt > 0 and math.isfinite(dt):
            return dt
    return 1.0


def plain_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The info's scalars and strings (what the log stores)."""
    out: dict[str, Any] = {}
    for k, v in info.items():
        t = type(v)
        if t is float or t is int or t is bool or t is str:  # the common case, fast
            out[k] = v
        elif isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = float(v)
        elif isinstance(v, str):
            out[k] = v
    return out


class _NoHuman:
    """Nobody in the driver's seat: never answers (used when ``human=None``)."""

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: np.ndarray, info: dict, env: Any, view: HumanView) -> HumanInput:
        return NO_INPUT


def make_record(episode: str, step: int, time: float, wall_time: float, obs: Any,
                out: AgentOutput, hin: HumanInput, action: Any, controller: Controller,
                handover: Handover, scores: dict[str, float], decision: GateDecision,
                reward: float, terminated: bool, truncated: bool,
                info: Mapping[str, Any]) -> StepRecord:
    """The log record of one supervised step (``obs`` is what the decision was made on,
    ``info`` what the env returned after executing ``action``)."""
    done = bool(terminated or truncated)
    return StepRecord(
        episode=episode, step=int(step), time=time, wall_time=wall_time,
        obs=np.asarray(obs, dtype=np.float32), agent_action=as_action_array(out.action),
        member_actions=(None if out.member_actions is None
                        else np.asarray(out.member_actions, dtype=np.float32)),
        human_action=None if hin.action is None else as_action_array(hin.action),
        action=as_action_array(action), controller=controller.value,
        phase=handover.phase.value, transition=handover.transition, scores=scores,
        threshold=float(decision.threshold), gate_request=bool(decision.request),
        tor_time=handover.tor_time, takeover_time=handover.takeover_time,
        reward=float(reward), terminated=bool(terminated), truncated=bool(truncated),
        reason=str(info.get("reason", "")) if done else "", info=plain_info(info))


class Supervisor:
    """Runs supervised episodes on one env.

    Args:
        env: a Gymnasium env (Box or Discrete actions).
        agent: ``act(obs) -> AgentOutput``.
        estimators: ``{name: estimator}``; every score is logged under its name.
        gate: decides takeover requests from the ``gate_score`` estimator's score.
        human: answers requests and drives; ``None`` for nobody (requests time out).
        gate_score: which estimator feeds the gate (needed unless the gate ignores scores:
            ``never``, ``always``, ``random``, ``human``).
        handover: the protocol's settings.
        run_id: prefix of episode ids (``"<run_id>/s0007-e0003"``); ``""`` for none.
        episode_name: ``(seed, index) -> str``.
        counterfactual: label steps by agent-alone rollouts (see ``counterfactual``).
        shadow_gates: more gates that decide on the same scores without acting, so one run
            scores several gates counterfactually (their requests go to the labels only).
        urgency: ``(score, decision) -> 0..1`` shown to the human with a request.
    """

    def __init__(self, env: Any, agent: Agent, estimators: Mapping[str, Estimator], gate: Gate,
                 human: Human | None = None, *, gate_score: str | None = None,
                 handover: HandoverConfig | None = None, run_id: str = "",
                 episode_name: Callable[[int | None, int], str] = default_episode_name,
                 counterfactual: Counterfactual | None = None,
                 shadow_gates: Mapping[str, Gate] | None = None,
                 urgency: Callable[[float, Any], float] | None = None) -> None:
        self.env, self.agent, self.gate = env, agent, gate
        self.estimators = dict(estimators)
        if gate_score is not None and gate_score not in self.estimators:
            raise ValueError(f"gate_score={gate_score!r} is not one of the estimators."
                             f"{closest(gate_score, list(self.estimators))} Estimators: "
                             f"{', '.join(self.estimators) or '(none)'}")
        self.gate_score = gate_score
        self.human: Human = human if human is not None else _NoHuman()
        self.handover = Handover(handover, human_initiative=getattr(
            gate, "accepts_human_initiative", False))
        self.run_id, self.episode_name = run_id, episode_name
        self.counterfactual = counterfactual
        self.shadow_gates = dict(shadow_gates or {})
        self.urgency = urgency or default_urgency
        self.dt = control_period(env)
        self.episode_index = -1
        self._done = True
        self._obs: np.ndarray | None = None

    # --- episode ------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self._obs, self._info = self.env.reset(seed=seed)
        self.episode_index += 1
        name = self.episode_name(seed, self.episode_index)
        self.episode = f"{self.run_id}/{name}" if self.run_id else name
        self.step_index = 0
        self._done = False
        self._last_human_action: Any = None
        self._prev_requests = {g: False for g in ("gate", *self.shadow_gates)}
        for part in (self.agent, *self.estimators.values()):
            reset = getattr(part, "reset", None)
            if callable(reset):
                reset()
        self.gate.reset()
        for g in self.shadow_gates.values():
            g.reset()
        self.handover.reset()
        self.human.reset(seed)
        if self.counterfactual is not None:
            self.counterfactual.reset(seed)
        return self._obs, self._info

    @property
    def done(self) -> bool:
        """The episode has ended (or none was started): call ``reset`` next."""
        return self._done

    @property
    def phase(self):
        return self.handover.phase

    def _time(self) -> float:
        t = self._info.get("time") if isinstance(self._info, Mapping) else None
        return float(t) if t is not None else self.step_index * self.dt

    def step(self) -> StepRecord:
        """One control step (see the module docstring)."""
        if self._done:
            raise RuntimeError("no running episode: call reset(seed) first (the last one ended)")
        obs, info, t = self._obs, self._info, self._time()
        out = self.agent.act(obs)
        scores = {n: float(e.score(obs, out, info)) for n, e in self.estimators.items()}
        score = scores[self.gate_score] if self.gate_score is not None else math.nan
        ctx = GateContext(time=t, phase=self.handover.phase, info=info, out=out,
                          human_action=self._last_human_action, scores=scores, dt=self.dt)
        decision = self.gate.decide(score, ctx)
        requests = {"gate": decision.request}
        for name, g in self.shadow_gates.items():
            requests[name] = g.decide(score, ctx).request
        view = self.handover.on_gate(decision, t, self.urgency(score, decision))
        hin = self.human.act(obs, info, self.env.unwrapped, view)
        if not isinstance(hin, HumanInput):
            raise TypeError(f"human.act must return a takeover.types.HumanInput, got "
                            f"{type(hin).__name__}")
        controller = self.handover.on_human(hin, t)
        if controller is Controller.HUMAN:
            action = hin.action
        elif controller is Controller.FALLBACK:
            action = minimal_risk_action(self.env, info, self.handover.config)
        else:
            action = out.action
        if hin.action is not None:
            self._last_human_action = hin.action
        if self.counterfactual is not None:
            onsets = {g: r and not self._prev_requests[g] for g, r in requests.items()}
            self.counterfactual.observe(self.env, self.agent, obs, episode=self.episode,
                                        step=self.step_index, time=t, dt=self.dt, scores=scores,
                                        requests=requests, onsets=onsets)
        self._prev_requests = requests
        new_obs, reward, terminated, truncated, new_info = self.env.step(action)
        record = make_record(
            self.episode, self.step_index,
            float(new_info["time"]) if "time" in new_info else t + self.dt, _time.time(),
            obs, out, hin, action, controller, self.handover, scores, decision, reward,
            terminated, truncated, new_info)
        self._obs, self._info = new_obs, new_info
        self.step_index += 1
        if terminated or truncated:
            self._done = True
            self.gate.end_episode()
            for g in self.shadow_gates.values():
                g.end_episode()
        return record

    def run_episode(self, seed: int | None = None) -> list[StepRecord]:
        """Reset with ``seed`` and step until the episode ends."""
        self.reset(seed)
        records = []
        while not self._done:
            records.append(self.step())
        return records


def default_urgency(score: float, decision: Any) -> float:
    """0.5 at the gate's threshold, 1 at twice it; 0.5 when the gate has no threshold."""
    thr = float(getattr(decision, "threshold", math.nan))
    if not (math.isfinite(thr) and thr > 0 and math.isfinite(score)):
        return 0.5
    return min(max(0.5 * score / thr, 0.0), 1.0)


class WorldView:
    """World ``i`` of a ``HighwayVectorEnv`` seen like an unwrapped ``HighwayEnv``
    (``vehicles``, ``world``, ``config``, ``hazard``), so scripted humans and the fallback
    that read the true state work unchanged in batched runs."""

    def __init__(self, venv: Any, i: int) -> None:
        self.venv, self.i = venv, i
        self.config = venv.config

    @property
    def unwrapped(self) -> WorldView:
        return self

    @property
    def vehicles(self) -> np.ndarray:
        return self.venv.vehicles[self.i]

    @property
    def world(self) -> np.ndarray:
        return self.venv.world[self.i]

    @property
    def hazard(self) -> str:
        return str(self.venv._hazard[self.i])

    @property
    def action_space(self) -> Any:
        return self.venv.single_action_space

    def get_wrapper_attr(self, name: str) -> Any:
        raise AttributeError(name)


def _row(infos: Mapping[str, Any], i: int) -> dict[str, Any]:
    return {k: v[i] for k, v in infos.items() if not k.startswith(("_", "final_"))}


class BatchedSupervisor:
    """Supervises the ``N`` worlds of a ``takeover.envs.vector.HighwayVectorEnv`` in
    lockstep: one batched agent call (``act_batch`` if the agent has it), batched scores
    (``score_batch`` where an estimator has it), then per world its own gate, handover
    protocol and human. Worlds autoreset in the same step; each world's episodes are named
    ``<run_id>/wNN-eNNNN``. Counterfactual scoring needs the single-env :class:`Supervisor`.

    Args:
        make_gate: ``() -> Gate``, called once per world (each world has its own state).
        humans: one human per world, or ``None`` for nobody.
    """

    def __init__(self, venv: Any, agent: Agent, estimators: Mapping[str, Estimator],
                 make_gate: Callable[[], Gate], humans: list[Human] | None = None, *,
                 gate_score: str | None = None, handover: HandoverConfig | None = None,
                 run_id: str = "") -> None:
        n = venv.num_envs
        self.venv, self.agent, self.n = venv, agent, n
        self.estimators = dict(estimators)
        if gate_score is not None and gate_score not in self.estimators:
            raise ValueError(f"gate_score={gate_score!r} is not one of the estimators."
                             f"{closest(gate_score, list(self.estimators))}")
        if humans is not None and len(humans) != n:
            raise ValueError(f"got {len(humans)} humans for {n} worlds; pass one per world")
        self.gate_score, self.run_id = gate_score, run_id
        self.gates = [make_gate() for _ in range(n)]
        self.humans: list[Human] = list(humans) if humans is not None else [_NoHuman()] * n
        self.handovers = [Handover(handover, human_initiative=getattr(
            g, "accepts_human_initiative", False)) for g in self.gates]
        self.views = [WorldView(venv, i) for i in range(n)]
        self.dt = float(venv.config.dt)
        self.episodes_done = 0

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.obs, self.infos = self.venv.reset(seed=seed)
        self.episode_index = [0] * self.n
        self.step_index = [0] * self.n
        self.last_human: list[Any] = [None] * self.n
        for i in range(self.n):
            self._new_episode(i, None if seed is None else seed + i)
        return self.obs, self.infos

    def _new_episode(self, i: int, seed: int | None) -> None:
        self.gates[i].reset()
        self.handovers[i].reset()
        self.humans[i].reset(seed)
        self.step_index[i] = 0
        self.last_human[i] = None

    def _episode(self, i: int) -> str:
        name = f"w{i:02d}-e{self.episode_index[i]:04d}"
        return f"{self.run_id}/{name}" if self.run_id else name

    def _scores(self, outs: list) -> dict[str, np.ndarray]:
        scores = {}
        for name, est in self.estimators.items():
            batch = getattr(est, "score_batch", None)
            if batch is not None:
                scores[name] = np.asarray(batch(self.obs, outs, self.infos), dtype=float)
            else:
                scores[name] = np.array([est.score(self.obs[i], outs[i], _row(self.infos, i))
                                         for i in range(self.n)], dtype=float)
        return scores

    def step(self) -> list[StepRecord]:
        """One control step of every world; one record per world."""
        act_batch = getattr(self.agent, "act_batch", None)
        outs = act_batch(self.obs) if act_batch else [self.agent.act(o) for o in self.obs]
        scores = self._scores(outs)
        actions, rows = [], []
        for i in range(self.n):
            info = _row(self.infos, i)
            t = float(info["time"])
            s = {k: float(v[i]) for k, v in scores.items()}
            score = s[self.gate_score] if self.gate_score is not None else math.nan
            h = self.handovers[i]
            ctx = GateContext(time=t, phase=h.phase, info=info, out=outs[i],
                              human_action=self.last_human[i], scores=s, dt=self.dt)
            decision = self.gates[i].decide(score, ctx)
            view = h.on_gate(decision, t, default_urgency(score, decision))
            hin = self.humans[i].act(self.obs[i], info, self.views[i], view)
            controller = h.on_human(hin, t)
            if controller is Controller.HUMAN:
                action = hin.action
            elif controller is Controller.FALLBACK:
                action = minimal_risk_action(self.views[i], info, h.config)
            else:
                action = outs[i].action
            if hin.action is not None:
                self.last_human[i] = hin.action
            actions.append(action)
            rows.append((s, decision, hin, controller, action))
        acts = np.asarray(actions, dtype=np.int64 if self.venv.config.action_type == "discrete"
                          else np.float64)
        new_obs, rewards, terminated, truncated, infos = self.venv.step(acts)
        records = []
        wall = _time.time()
        for i, (s, decision, hin, controller, action) in enumerate(rows):
            done = bool(terminated[i] or truncated[i])
            info = _row(infos["final_info"], i) if done else _row(infos, i)
            records.append(make_record(
                self._episode(i), self.step_index[i], float(info["time"]), wall, self.obs[i],
                outs[i], hin, action, controller, self.handovers[i], s, decision, rewards[i],
                terminated[i], truncated[i], info))
            self.step_index[i] += 1
            if done:
                self.gates[i].end_episode()
                self.episodes_done += 1
                self.episode_index[i] += 1
                self._new_episode(i, None)
        self.obs, self.infos = new_obs, infos
        return records

    def run_episodes(self, n_episodes: int, seed: int | None = None) -> list[StepRecord]:
        """Step all worlds until ``n_episodes`` episodes have ended in total; returns every
        record (records of episodes still running at the end included)."""
        self.reset(seed)
        self.episodes_done = 0
        records: list[StepRecord] = []
        while self.episodes_done < n_episodes:
            records.extend(self.step())
        return records
