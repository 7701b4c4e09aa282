"""``takeover run``: one experiment from config to report, top to bottom.

1. load the agent (a bad name fails before anything is written), then write the run
   folder's provenance (``provenance.py``);
2. rounds of supervised collection + fine-tuning, each round's agent evaluated on the same
   held-out seeds (``rounds.py``);
3. final evaluation of the agent the rounds produced, under the configured gate, the baselines
   and the human presets, every condition on the same held-out seeds (``eval.seed_start``
   upward, ``1_000_000`` by default), every episode logged crash-safely (``takeover.logio``)
   and reduced to metrics (``metrics.py``);
4. statistics (``stats.py``: one stratified episode bootstrap for every interval and every
   paired comparison), trigger quality of each estimator on the agent-alone episodes, the
   sanity invariants (``invariants.py``), ``metrics.json`` / ``metrics.csv``, figures and
   ``report.md`` / ``report.html`` (``report.py``).

Episodes stream: each is written to the log, measured and dropped, so memory stays flat.
``metrics.json`` holds no wall-clock value, so the same config and seed give the same file.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from takeover.atomic import atomic_write_text, json_safe
from takeover.config import to_dict
from takeover.experiments import episodes as ep
from takeover.experiments import stats
from takeover.experiments.config import ExperimentConfig
from takeover.experiments.metric_definitions import BY_NAME, DEFINITIONS
from takeover.experiments.metrics import (
    METRICS,
    TRIGGER_METRICS,
    EpisodeMetrics,
    StepLabels,
    aggregate,
    askable_steps_per_episode,
    components,
    episode_metrics,
    from_sums,
    step_labels,
    trigger_metrics,
)
from takeover.folders import FolderError
from takeover.records import RunMeta, StepRecord

TRACE_EPISODES = 3
"""Episodes per condition whose per-step trace is kept for the timeline figure."""

RANDOM_TWINS = {"random": "tors_per_episode", "random_time": "human_time_per_episode"}
"""The random-gate baselines and the quantity each is matched on (:func:`match_random_gate`)."""

RANDOM_LOGS = {"tors_per_episode": "random-matching", "human_time_per_episode":
               "random-time-matching"}
"""Log folder prefix of each matching's calibration plays."""

LABELLED = ("supervised", "random")
"""Conditions labelled counterfactually in the final evaluation (the gate and its
rate-matched random twin: the comparison the trigger metrics serve)."""

Key = tuple[str, int, int]
"""An episode's place in the design: ``(scenario, run, episode index)``; the same key plays
the same seed in every condition, so keys pair conditions."""


@dataclass
class Trace:
    """The few per-step series the timeline figure draws (kept for a handful of episodes)."""

    episode: str
    scenario: str
    time: np.ndarray
    score: np.ndarray
    threshold: np.ndarray
    controller: list[str]
    tor_times: list[float]
    hazard_onset: float
    reason: str

    @classmethod
    def from_records(cls, records: Sequence[StepRecord], scenario: str, score: str) -> Trace:
        from takeover.experiments.metrics import episode_outcome, hazard_onset

        tors = sorted({r.tor_time for r in records if math.isfinite(r.tor_time)})
        return cls(records[0].episode, scenario,
                   np.array([r.time for r in records]),
                   np.array([r.scores.get(score, math.nan) for r in records], dtype=float),
                   np.array([r.threshold for r in records], dtype=float),
                   [r.controller for r in records], tors, hazard_onset(records),
                   episode_outcome(records)[0])


@dataclass
class ConditionResult:
    """Everything measured for one condition in one evaluation."""

    episodes: dict[Key, EpisodeMetrics] = field(default_factory=dict)
    labels: list[Any] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)
    steps: dict[Key, StepLabels] = field(default_factory=dict)
    request_rate: float = math.nan

    def keys(self) -> list[Key]:
        return sorted(self.episodes)

    def all_episodes(self) -> list[EpisodeMetrics]:
        return [self.episodes[k] for k in self.keys()]

    def metrics(self) -> dict[str, float]:
        return aggregate(self.all_episodes())

    def table(self, keys: Sequence[Key]) -> np.ndarray:
        """``(len(keys), C)`` components in the order of ``keys`` (pairs conditions)."""
        return components([self.episodes[k] for k in keys])

    def scenario(self, scenario: str) -> list[EpisodeMetrics]:
        return [self.episodes[k] for k in self.keys() if k[0] == scenario]


Progress = Callable[[str], None]
"""Called once per finished episode with a short description (drives the progress bar)."""


def seed_of(cfg: ExperimentConfig, purpose: str, scenario: str, run: int, episode: int) -> int:
    """The episode seed: ``eval`` and ``round`` count up from their held-out block starts
    (``eval.seed_start``, ``eval.round_seed_start``) by ``run * episodes + episode``, the same
    for every condition and scenario; other purposes (fine-tuning collection, sweeps) keep
    ``episodes.episode_seed``'s hashed stream; ``calibrate`` counts up from
    ``eval.calibration_seed_start`` (the random gate's matching plays), and, disjoint from both blocks in practice."""
    if purpose == "eval":
        return cfg.eval.seed_start + run * cfg.eval.episodes + episode
    if purpose == "round":
        return cfg.eval.round_seed_start + run * cfg.eval.round_episodes + episode
    if purpose == "calibrate":
        return cfg.eval.calibration_seed_start + run * cfg.eval.calibration_episodes + episode
    return ep.episode_seed(cfg.seed, purpose, scenario, run, episode)


class Experiment:
    """The agent, envs and log folders of one run; runs conditions episode by episode."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, *, agent: Any = None,
                 progress: Progress | None = None, resume: bool = False,
                 processes: int | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        """Replay the episodes already in each log folder instead of playing them again."""
        self.processes = ep.PROCESSES if processes is None else processes
        """Worker processes playing a condition's batches (``episodes.run_jobs``)."""
        self.envs = ep.EnvCache(cfg)
        self.agent = agent if agent is not None else self._load_agent()
        self.rollouts = ep.Rollouts(cfg, self.envs, self.agent)
        self.progress = progress or (lambda _msg: None)
        self.random_matching: dict[str, Any] = {}
        """How each random twin was matched to the configured gate, by condition name
        (:data:`RANDOM_TWINS`, :func:`match_random_gate`)."""
        self.round_results: list[dict[str, ConditionResult]] = []
        """Per round evaluation (``rounds.py`` calls :meth:`evaluate` with ``"round"``)."""

    def _load_agent(self) -> Any:
        from takeover.agents import load_agent

        env = self.envs.get(self.cfg.env.scenarios[0])
        return load_agent(self.cfg.agent.name, env=env)

    def close(self) -> None:
        self.envs.close()

    def evaluate(self, condition: ep.Condition, purpose: str, *, episodes: int,
                 runs: Sequence[int] | None = None, log_dir: Path | None = None,
                 label: bool = False, traces: int = 0,
                 keep: list[StepRecord] | None = None) -> ConditionResult:
        """Play ``condition`` for ``episodes`` per run (seed block) per scenario; log every
        episode, optionally label it counterfactually, keep the first ``traces`` timelines
        and append the records to ``keep``. Agent-alone episodes also keep their per-step
        estimator scores (the trigger-quality data).

        Every episode goes to a log: ``log_dir``, or for a round evaluation
        ``logs/round<k>-<condition>``. On resume the episodes already complete there (and
        their labels) are replayed, and only the others are played: the engine gives the
        same records for a seed whatever else is in its batch."""
        cfg = self.cfg
        res = ConditionResult()
        if purpose == "round":
            new_round = not self.round_results or condition.name in self.round_results[-1]
            rnd = len(self.round_results) - (0 if new_round else 1)
            log_dir = log_dir or self.run_dir / "logs" / f"round{rnd}-{condition.name}"
        done, done_labels = self._completed(log_dir, label)
        writer = self._writer(log_dir, condition.name, purpose) if log_dir else None
        labels_out = self._labels_file(log_dir) if label and log_dir else None
        horizon = cfg.metrics.horizons[0]
        n_req = n_steps = 0
        blocks = []  # (run, scenario, episode ids, the job playing those not done)
        for run in (range(cfg.eval.seeds) if runs is None else runs):
            for scen in cfg.env.scenarios:
                seeds = [seed_of(cfg, purpose, scen, run, i) for i in range(episodes)]
                eids = [f"{condition.name}-{scen}-{seed}" for seed in seeds]
                todo = [k for k, e in enumerate(eids) if e not in done]
                blocks.append((run, scen, eids, (condition, scen, [seeds[k] for k in todo],
                                                 [eids[k] for k in todo], label)))
        if done and len(done) < sum(len(b[2]) for b in blocks) \
                and ep.learns_online(self.rollouts.gate(condition)):
            raise FolderError(
                f"cannot resume condition {condition.name}: its gate {condition.gate!r} "
                "recalibrates from every episode it saw, so the missing episodes would "
                "differ from an uninterrupted run; start the run again in a new folder")
        jobs = ep.run_jobs(self.rollouts, [b[3] for b in blocks if b[3][2]], self.processes)
        try:
            for run, scen, eids, job in blocks:
                fresh = iter(next(jobs) if job[2] else ())
                played = [(eid, *((done[eid], done_labels.get(eid, [])) if eid in done
                                  else next(fresh))) for eid in eids]
                new = [p for p in played if p[0] not in done]
                if labels_out is not None and new:  # before the episodes complete
                    self._write_labels(labels_out, [(eid, labels) for eid, _, labels in new])
                if writer is not None and new:  # one journal write, the fsyncs together
                    writer.write_episodes([(eid, records) for eid, records, _ in new])
                for i, (_, records, labels) in enumerate(played):
                    key = (scen, run, i)
                    res.episodes[key] = episode_metrics(
                        records, horizon, min_intervention=cfg.metrics.rohe_min_intervention,
                        reset_time=cfg.metrics.rohe_reset_time)
                    if condition.gate is None:
                        res.steps[key] = step_labels([records], cfg.supervisor.estimators)
                    res.labels += labels
                    n_req += sum(r.gate_request for r in records)
                    n_steps += len(records)
                    if len(res.traces) < traces and i == 0:
                        res.traces.append(
                            Trace.from_records(records, scen, cfg.supervisor.gate_score))
                    if keep is not None:
                        keep.extend(records)
                    self.progress(f"{purpose} {condition.name} {scen}")
        finally:
            jobs.close()  # ends the worker pool, also on an interrupt
            if writer is not None:
                writer.close()
        res.request_rate = n_req / n_steps if n_steps else math.nan
        if purpose == "round":
            if not self.round_results or condition.name in self.round_results[-1]:
                self.round_results.append({})
            self.round_results[-1][condition.name] = res
        return res

    def _completed(self, log_dir: Path | None, label: bool
                   ) -> tuple[dict[str, list[StepRecord]], dict[str, list[Any]]]:
        """On resume: the complete episodes in ``log_dir`` and their counterfactual labels."""
        if not (self.resume and log_dir):
            return {}, {}
        from takeover.experiments.provenance import completed_episodes

        done = completed_episodes(log_dir)
        labels: dict[str, list[Any]] = {}
        if label and done:
            labels = read_labels(self._labels_file(log_dir))
            missing = sorted(set(done) - set(labels))
            if missing:
                raise FolderError(f"{self._labels_file(log_dir)} lacks the labels of "
                                   f"{len(missing)} logged episode(s) (e.g. {missing[0]}); "
                                   "start the run again in a new folder")
        return done, labels

    @staticmethod
    def _labels_file(log_dir: Path) -> Path:
        return log_dir.with_name(log_dir.name + ".labels.jsonl")

    @staticmethod
    def _write_labels(path: Path, episodes: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """One JSON line per episode, ``(episode id, labels)`` pairs in one write and one
        fsync (written before their log entries complete, so every complete episode has
        its labels; a torn last line is skipped when read)."""
        import dataclasses
        import os

        lines = "".join(json.dumps({"episode": eid, "labels": [dataclasses.asdict(lb)
                                                               for lb in labels]}) + "\n"
                        for eid, labels in episodes)
        with open(path, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def _writer(self, log_dir: Path, name: str, purpose: str):
        from takeover.logio import LogWriter

        meta = RunMeta(run_id=f"{self.cfg.name}-{purpose}-{name}", seed=self.cfg.seed,
                       config=to_dict(self.cfg))
        return LogWriter(log_dir, meta)


def read_labels(path: Path) -> dict[str, list[Any]]:
    """Counterfactual labels by episode id from a ``*.labels.jsonl`` file (the last line of
    an episode wins; a torn line from an interrupted write is skipped)."""
    from takeover.supervisor.counterfactual import Label

    out: dict[str, list[Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        out[row["episode"]] = [Label(**d) for d in row["labels"]]
    return out


def preset_conditions(cfg: ExperimentConfig) -> list[ep.Condition]:
    """The configured gate with each extra human preset (``eval.humans``)."""
    s = cfg.supervisor
    return [ep.Condition(f"human_{h}", s.gate, dict(s.gate_kwargs), human=h)
            for h in cfg.eval.humans if h != s.human]


def n_episodes(cfg: ExperimentConfig) -> int:
    """Episodes a run will play (the progress bar's total)."""
    per = cfg.eval.seeds * len(cfg.env.scenarios)
    final = per * cfg.eval.episodes * (1 + len(cfg.eval.baselines) + len(preset_conditions(cfg)))
    rounds = cfg.train.rounds * len(cfg.env.scenarios) * cfg.train.episodes_per_round
    curve = 2 * per * cfg.eval.round_episodes  # per round and fine-tuning seed
    twins = sum(b in RANDOM_TWINS for b in cfg.eval.baselines)
    matching = cfg.eval.calibration_plays * per * cfg.eval.calibration_episodes * twins
    # round 0 (the starting agent) is evaluated once for every fine-tuning seed; each seed
    # validates the starting agent and every round's update (rounds.run_rounds)
    validate = (len(cfg.env.scenarios) * cfg.train.validation_episodes * (cfg.train.rounds + 1)
                if cfg.train.method != "none" and cfg.train.rounds else 0)
    return final + matching + curve + (rounds + curve * cfg.train.rounds + validate) \
        * cfg.train.seeds


def final_evaluation(exp: Experiment) -> dict[str, ConditionResult]:
    """The configured gate, then each baseline (``random`` matched to the gate's requests
    per episode, :func:`match_random_gate`), then the human presets; all on the same
    held-out seeds."""
    cfg = exp.cfg
    label = cfg.counterfactual.enabled
    logs = exp.run_dir / "logs"
    conds = ep.conditions(cfg)
    results = {conds[0].name: exp.evaluate(conds[0], "eval", episodes=cfg.eval.episodes,
                                           log_dir=logs / conds[0].name, label=label,
                                           traces=TRACE_EPISODES)}
    rates = {"random": 0.0, "random_time": 0.0}
    for name, on in RANDOM_TWINS.items():  # random first: random_time starts at its rate
        if name in cfg.eval.baselines:
            rates[name], exp.random_matching[name] = match_random_gate(
                exp, results[conds[0].name], on, start=rates["random"] or None)
    rest = ep.conditions(cfg, random_rate=rates["random"],
                         random_time_rate=rates["random_time"])[1:]
    for cond in [*rest, *preset_conditions(cfg)]:
        results[cond.name] = exp.evaluate(cond, "eval", episodes=cfg.eval.episodes,
                                          log_dir=logs / cond.name,
                                          label=label and cond.name in LABELLED,
                                          traces=TRACE_EPISODES)
    return results


def match_random_gate(exp: Experiment, target: ConditionResult, on: str = "tors_per_episode",
                      start: float | None = None) -> tuple[float, dict[str, Any]]:
    """The random gate's per-step request probability that matches the configured gate
    (``target``) on ``on``, and the record of how it was found.

    ``on="tors_per_episode"``: as many takeover requests per episode. A request starts a
    takeover request only on an *askable* step (the agent drives, nothing pending), so a
    random gate at per-step rate ``r`` issues ``r * A`` requests per episode, ``A`` its
    askable steps per episode; ``A`` depends on ``r`` (the human drives after each answered
    request), so ``r`` is found by plays on the calibration seeds
    (``eval.calibration_seed_start``, never reported): start from the configured gate's own
    ``A``, then ``eval.calibration_plays`` times play the random gate and solve for the rate
    giving ``T`` from the askable steps each of its requests cost (:func:`_next_rate`).
    Matching the per-step share of request steps instead would let the random gate ask twice
    as often: the configured gate's request stays on for the whole takeover, the random
    gate's is one step.

    ``on="human_time_per_episode"`` (the ``random_time`` twin): as many human-controlled
    seconds per episode, starting from ``start`` (the request-matched rate): human time
    grows with the rate but saturates (each takeover takes askable steps away), so each
    play takes a secant step in log-log space (:func:`_secant_rate`).

    Each play uses its own calibration seeds (play ``k`` plays runs ``k * eval.seeds`` on),
    so a play does not re-draw the previous play's random streams."""
    cfg = exp.cfg
    episodes = target.all_episodes()
    want = aggregate(episodes)[on]
    rate = _rate(aggregate(episodes)["tors_per_episode"], askable_steps_per_episode(episodes))
    if start is not None:
        rate = start
    plays: list[dict[str, Any]] = []
    per = cfg.eval.calibration_episodes
    for k in range(cfg.eval.calibration_plays):  # also at rate 0: a fixed episode count
        cond = ep.Condition("random", "random", {"rate": rate, "seed": cfg.seed})
        runs = range(k * cfg.eval.seeds, (k + 1) * cfg.eval.seeds)  # fresh seeds per play
        first = seed_of(cfg, "calibrate", cfg.env.scenarios[0], runs[0], 0)
        res = exp.evaluate(cond, "calibrate", episodes=per, runs=runs,
                           log_dir=exp.run_dir / "logs" / f"{RANDOM_LOGS[on]}{k}")
        got = res.all_episodes()
        a = askable_steps_per_episode(got)
        m = aggregate(got)
        steps = float(np.mean([e.steps for e in got]))
        plays.append({"rate": rate, on: m[on], "tors_per_episode": m["tors_per_episode"],
                      "askable_steps_per_episode": a, "steps_per_episode": steps,
                      "episodes": len(got), "first_seed": first})
        if on == "tors_per_episode":
            rate = _next_rate(want, m["tors_per_episode"], a, steps)
        else:
            rate = _secant_rate(want, [(p["rate"], p[on]) for p in plays])
    last = cfg.eval.calibration_seed_start + max(cfg.eval.calibration_plays, 1) \
        * cfg.eval.seeds * per - 1
    return rate, {"matched_on": on, "target": want, "rate": rate,
                  "target_askable_steps_per_episode": askable_steps_per_episode(episodes),
                  "plays": plays, "calibration_seeds": [cfg.eval.calibration_seed_start, last]}


def _next_rate(want: float, got: float, askable: float, steps: float) -> float:
    """The per-step rate that gives ``want`` requests per episode, from one play that gave
    ``got`` with ``askable`` of its ``steps`` per episode askable. Each request takes the
    steps of its takeover out of the askable ones (``(steps - askable) / got`` per request),
    so ``A(want) = steps - want * busy``: ``r = want / A(want)``. Setting ``r = want /
    askable`` instead ignores that asking less frees askable steps (near saturation almost
    one for one) and converged from above: the random twin asked 7-15% more often than the
    configured gate in every run of session 3."""
    if not (math.isfinite(got) and got > 0):
        return _rate(want, askable)
    busy = max(steps - askable, 0.0) / got
    return _rate(want, steps - want * busy)


HUMAN_TIME_ELASTICITY = 0.6
"""d log(human time) / d log(rate) of a random gate before two plays measure it (development
seeds 0-39 x 5: 4.8 s at rate 0.026, 7.0 s at 0.049: 0.59)."""


def _secant_rate(want: float, plays: Sequence[tuple[float, float]]) -> float:
    """The next rate towards ``want`` from ``(rate, value)`` plays: a step along the log-log
    slope of the last two plays (:data:`HUMAN_TIME_ELASTICITY` after one, or when their
    rates are within 10% of each other; clipped to 0.3-1.2: the human time of a play of 100
    episodes is noisy, and a noisy pair must not send the rate to 0 or 1)."""
    r, v = plays[-1]
    if not (math.isfinite(v) and v > 0 and r > 0):
        return min(max(2.0 * r, 1e-3), 1.0)  # nothing learnt: ask twice as often
    slope = HUMAN_TIME_ELASTICITY
    if len(plays) > 1:
        r0, v0 = plays[-2]
        if r0 > 0 and v0 > 0 and math.isfinite(v0) and abs(math.log(r / r0)) > 0.1:
            slope = min(max(math.log(v / v0) / math.log(r / r0), 0.3), 1.2)
    return float(min(max(r * (want / v) ** (1.0 / slope), 1e-4), 1.0))


def _rate(requests: float, askable: float) -> float:
    """Per-step probability giving ``requests`` per episode over ``askable`` steps."""
    if not (math.isfinite(requests) and math.isfinite(askable)) or requests <= 0:
        return 0.0
    return 1.0 if askable <= requests else requests / askable


def _stat(sums: np.ndarray) -> dict[str, np.ndarray]:
    return from_sums(sums)


def comparison_pairs(results: dict[str, Any], human: str) -> list[tuple[str, str]]:
    """Every paired comparison the report draws or an invariant checks, as ``(a, b)``
    (reported as ``a - b``): supervised vs agent alone, gate vs its random twins (matched
    on requests and on human time), never vs agent alone, absent vs the present human, adjacent human presets, and
    each pair of gates ordered by human effort."""
    from itertools import combinations

    from takeover.experiments.invariants import EFFORT_GATES, PRESET_ORDER

    have = set(results)
    pairs = [("supervised", "agent_alone"), ("supervised", "random"),
             ("supervised", "random_time"), ("never", "agent_alone"), ("supervised", "absent")]
    pairs += [(b, a) for a, b in combinations(EFFORT_GATES, 2)]
    names = {h: ("supervised" if h == human else f"human_{h}") for h in PRESET_ORDER}
    ordered = [names[h] for h in PRESET_ORDER if names[h] in have]
    pairs += list(zip(ordered, ordered[1:], strict=False))
    return [p for p in dict.fromkeys(pairs) if p[0] in have and p[1] in have]


def compare(a: ConditionResult, b: ConditionResult, weights: np.ndarray, keys: Sequence[Key],
            confidence: float) -> dict[str, dict[str, float]]:
    diffs = stats.paired(a.table(keys), b.table(keys), _stat, weights, confidence)
    return {m: d.as_dict() for m, d in diffs.items()}


def trigger_quality(steps: dict[Key, StepLabels], cfg: ExperimentConfig) -> dict[str, Any]:
    """Per estimator, per scenario (and ``all``), per horizon: AUROC / AUPRC over all steps
    and over the hazard window, with episode-cluster bootstrap CIs; and the warning lead time
    at ``metrics.false_alarm`` (agent-alone episodes: the label is what the agent did)."""
    keys = sorted(steps)
    if not keys:
        return {}
    m, st = cfg.metrics, cfg.stats
    out: dict[str, Any] = {}
    groups = {"all": keys, **{s: [k for k in keys if k[0] == s] for s in cfg.env.scenarios}}
    for est in cfg.supervisor.estimators:
        per: dict[str, Any] = {}
        for gname, gkeys in groups.items():
            if not gkeys:
                continue
            cl = np.concatenate([np.full(steps[k].cluster.size, j) for j, k in
                                 enumerate(gkeys)])
            ttf = np.concatenate([steps[k].time_to_failure for k in gkeys])
            onset = np.concatenate([steps[k].to_onset for k in gkeys])
            score = np.concatenate([steps[k].scores[est] for k in gkeys])
            strata = [k[0] for k in gkeys]
            lab = StepLabels(cl, ttf, onset, {est: score})
            row: dict[str, Any] = {"episodes": len(gkeys),
                                   "failed_episodes": int(len(np.unique(cl[np.isfinite(ttf)])))}
            for h in m.horizons if gname == "all" else m.horizons[:1]:
                y = lab.label(h)
                win = lab.hazard_window(h)
                row[f"{h:g}s"] = {
                    "all_steps": {k: v.as_dict() for k, v in stats.auc_interval(
                        y, score, cl, strata=strata, reps=st.auc_bootstrap,
                        confidence=st.confidence, seed=cfg.seed).items()},
                    "hazard_window": {k: v.as_dict() for k, v in stats.auc_interval(
                        y[win], score[win], cl[win], strata=strata, reps=st.auc_bootstrap,
                        confidence=st.confidence, seed=cfg.seed).items()},
                    "positives": int(y.sum()), "steps": int(np.isfinite(score).sum()),
                }
            row["lead"] = {k: v.as_dict() for k, v in stats.lead_time(
                ttf, score, cl, false_alarm=m.false_alarm, window=m.lead_window,
                reps=st.auc_bootstrap, confidence=st.confidence, seed=cfg.seed).items()}
            per[gname] = row
        out[est] = per
    return out


def roc_points(steps: dict[Key, StepLabels], estimators: Sequence[str],
               horizon: float) -> dict[str, dict[str, Any]]:
    """ROC curve of each estimator at ``horizon`` over all agent-alone steps (the figure)."""
    from sklearn.metrics import roc_curve

    keys = sorted(steps)
    if not keys:
        return {}
    ttf = np.concatenate([steps[k].time_to_failure for k in keys])
    y = (ttf <= horizon).astype(int)
    out = {}
    for est in estimators:
        s = np.concatenate([steps[k].scores[est] for k in keys])
        ok = np.isfinite(s)
        fpr, tpr = [0.0, 1.0], [0.0, 1.0]
        if len(np.unique(y[ok])) == 2:
            f, t, _ = roc_curve(y[ok], s[ok])
            if len(f) > 400:  # enough points to draw; keeps metrics.json small
                idx = np.unique(np.linspace(0, len(f) - 1, 400).astype(int))
                f, t = f[idx], t[idx]
            fpr, tpr = f.tolist(), t.tolist()
        out[est] = {"fpr": fpr, "tpr": tpr, "positives": int(y[ok].sum()), "n": int(ok.sum())}
    return out


def gate_report(labels: Sequence[Any]) -> dict[str, Any] | None:
    if not labels:
        return None
    from takeover.supervisor.counterfactual import report

    return report(labels)["gates"].get("gate")


def agent_description(cfg: ExperimentConfig, rnd: int, kept: int | None = None) -> str:
    """What the evaluated agent is: the shipped one, or fine-tuned for ``rnd`` rounds of
    which round ``kept`` is the one validation kept (``rounds.run_rounds``)."""
    kept = rnd if kept is None else kept
    if cfg.train.method == "none" or rnd == 0:
        return f"shipped agent `{cfg.agent.name}` (not fine-tuned)"
    tried = f"`{cfg.agent.name}` fine-tuned by {cfg.train.method} for {rnd} round(s)"
    if kept == 0:
        return (f"{tried}; no round arrived more often on the validation block, so none was "
                "kept: this is the shipped agent")
    if kept < rnd:
        return (f"{tried}; validation kept round {kept} (round {kept} of the learning "
                "curve), later rounds lost")
    return f"{tried} (round {rnd} of the learning curve)"


def _condition_block(cfg: ExperimentConfig, results: dict[str, ConditionResult]
                     ) -> tuple[dict[str, Any], list[Key], np.ndarray]:
    """Pooled values, CIs, IQM and per-scenario values of every condition, and the one
    resampling matrix every comparison reuses."""
    keys = results["supervised"].keys() if "supervised" in results else \
        next(iter(results.values())).keys()
    for name, res in results.items():
        if res.keys() != keys:
            raise RuntimeError(f"condition {name} did not play the same seeds as the others")
    weights = stats.resample_weights([k[0] for k in keys], cfg.stats.bootstrap, cfg.seed)
    scen = list(cfg.env.scenarios)
    conditions, ci, iqm, per_scenario = {}, {}, {}, {}
    for name, res in results.items():
        conditions[name] = res.metrics()
        ci[name] = {m: iv.as_dict() for m, iv in stats.intervals(
            res.table(keys), _stat, weights, cfg.stats.confidence).items()}
        per_scenario[name] = {s: aggregate(res.scenario(s)) for s in scen}
        iqm[name] = {m: {"iqm": stats.iqm([per_scenario[name][s][m] for s in scen]),
                         "scenarios": len(scen)} for m in METRICS}
    return ({"conditions": conditions, "ci": ci, "iqm": iqm, "per_scenario": per_scenario},
            keys, weights)


def round_summary(cfg: ExperimentConfig, rounds: list[dict[str, Any]],
                  round_results: list[dict[str, ConditionResult]]) -> list[dict[str, Any]]:
    """Each round row gains CIs of its headline metrics and the paired difference from round
    0 on the same held-out seeds (supervised and agent alone), and the trigger quality of the
    gate's estimator at the headline horizon."""
    if not round_results:
        return rounds
    first = round_results[0]
    keys = next(iter(first.values())).keys()
    weights = stats.resample_weights([k[0] for k in keys], cfg.stats.bootstrap, cfg.seed)
    h = cfg.metrics.horizons[0]
    out = []
    for row, res in zip(rounds, round_results, strict=False):
        row = dict(row)
        for cond, r in res.items():
            ivs = stats.intervals(r.table(keys), _stat, weights, cfg.stats.confidence)
            for m in ("success_rate", "failure_rate", "human_share"):
                row[f"{cond}.{m}.ci"] = [ivs[m].lo, ivs[m].hi]
            if cond in first and row["round"] > 0:
                d = compare(r, first[cond], weights, keys, cfg.stats.confidence)
                for m in ("success_rate", "failure_rate"):
                    row[f"{cond}.{m}.vs_round0"] = d[m]
            if r.steps:
                tq = trigger_quality_at(r.steps, cfg, h)
                row[f"{cond}.auroc"] = tq
        row["episodes_per_condition"] = len(keys)
        out.append(row)
    return out


def trigger_quality_at(steps: dict[Key, StepLabels], cfg: ExperimentConfig,
                       horizon: float) -> dict[str, dict[str, float]]:
    """AUROC (all steps) of each estimator at one horizon, with its CI."""
    keys = sorted(steps)
    cl = np.concatenate([np.full(steps[k].cluster.size, j) for j, k in enumerate(keys)])
    y = (np.concatenate([steps[k].time_to_failure for k in keys]) <= horizon).astype(int)
    out = {}
    for est in cfg.supervisor.estimators:
        s = np.concatenate([steps[k].scores[est] for k in keys])
        out[est] = stats.auc_interval(y, s, cl, strata=[k[0] for k in keys],
                                      reps=cfg.stats.auc_bootstrap,
                                      confidence=cfg.stats.confidence,
                                      seed=cfg.seed)["auroc"].as_dict()
    return out


CURVE = ("success_rate", "failure_rate", "human_share")
"""Learning-curve metrics summarised over fine-tuning seeds."""


def extra_finetune_seed(exp: Experiment, k: int, agent: Any,
                        round0: Mapping[str, Any]) -> tuple[list[dict[str, Any]],
                                                            list[dict[str, ConditionResult]]]:
    """Rounds of fine-tuning seed ``k >= 1`` on a copy of the starting ``agent`` (own
    collection and training seeds, the same held-out round seeds); round 0 (the starting
    agent) is seed 0's ``round0`` row, not played again."""
    import copy
    from dataclasses import replace

    from takeover.experiments.rounds import run_rounds

    cfg = replace(exp.cfg, seed=exp.cfg.seed + k)
    child = Experiment(cfg, exp.run_dir / f"finetune-seed{k}", agent=copy.deepcopy(agent),
                       progress=exp.progress, resume=exp.resume)
    try:
        rows = run_rounds(child, round0)
    finally:
        child.close()
    return rows, child.round_results


def curve_over_seeds(per_seed: Sequence[Sequence[Mapping[str, Any]]],
                     confidence: float) -> list[dict[str, Any]]:
    """Per round, the mean of each learning-curve metric over fine-tuning seeds and its
    t-interval (seeds are the independent replicates of the training procedure); rows shaped
    like ``rounds`` rows (``<cond>.<metric>`` and ``<cond>.<metric>.ci``)."""
    from scipy.stats import t as student

    out = []
    for r in range(min(len(rows) for rows in per_seed)):
        row: dict[str, Any] = {"round": per_seed[0][r]["round"], "seeds": len(per_seed)}
        for cond in ("supervised", "agent_alone"):
            for m in CURVE:
                v = np.array([_nan(rows[r].get(f"{cond}.{m}")) for rows in per_seed])
                v = v[np.isfinite(v)]
                if v.size == 0:
                    continue
                mean = float(v.mean())
                half = (float(student.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1)
                              / math.sqrt(v.size)) if v.size > 1 else math.nan)
                row[f"{cond}.{m}"] = mean
                # every CURVE metric is a share: a t-interval past [0, 1] is clipped
                row[f"{cond}.{m}.ci"] = [max(mean - half, 0.0), min(mean + half, 1.0)]
                row[f"{cond}.{m}.seeds"] = v.tolist()
        out.append(row)
    return out


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


def build_metrics(cfg: ExperimentConfig, results: dict[str, ConditionResult],
                  rounds: list[dict[str, Any]],
                  round_results: Sequence[dict[str, ConditionResult]] = (),
                  seed_rounds: Sequence[Sequence[Mapping[str, Any]]] = (),
                  random_matching: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``metrics.json`` (deterministic: no wall-clock values);
    ``random_matching`` holds :func:`match_random_gate`'s record per random twin
    (``design.random_gate`` for ``random``, ``design.random_gate_time`` for ``random_time``)."""
    from takeover.experiments.invariants import check_invariants

    block, keys, weights = _condition_block(cfg, results)
    comparisons = {f"{a} - {b}": compare(results[a], results[b], weights, keys,
                                         cfg.stats.confidence)
                   for a, b in comparison_pairs(results, cfg.supervisor.human)}
    triggers = {name: {**trigger_metrics(gate_report(res.labels), len(res.episodes)),
                       "labels": len(res.labels), "request_rate": res.request_rate}
                for name, res in results.items()}
    alone = results.get("agent_alone")
    steps = alone.steps if alone is not None else {}
    rnd = cfg.train.rounds
    out = {
        "name": cfg.name, "seed": cfg.seed, "scenarios": list(cfg.env.scenarios),
        "agent": {"name": cfg.agent.name, "rounds": rnd,
                  "evaluated": agent_description(cfg, rnd, rounds[-1].get("agent_round")
                                                 if rounds else None)},
        "design": {
            "episodes_per_condition": len(keys),
            "episodes_per_scenario": cfg.eval.seeds * cfg.eval.episodes,
            "eval_seeds": [cfg.eval.seed_start,
                           cfg.eval.seed_start + cfg.eval.seeds * cfg.eval.episodes - 1],
            "round_seeds": [cfg.eval.round_seed_start, cfg.eval.round_seed_start
                            + cfg.eval.seeds * cfg.eval.round_episodes - 1],
            "held_out": cfg.eval.seed_start >= 1_000_000,
            "pairing": "every condition plays the same seeds (seed = seed_start + index, "
                       "per scenario)",
            "bootstrap": f"{cfg.stats.bootstrap} resamples of episodes stratified by scenario",
            "confidence": cfg.stats.confidence,
            "random_gate": dict((random_matching or {}).get("random", {})),
            "random_gate_time": dict((random_matching or {}).get("random_time", {})),
        },
        "metric_definitions": {d.name: {"formula": d.formula, "unit": d.unit,
                                        "source": d.source, "better": d.better}
                               for d in DEFINITIONS},
        "trigger_definitions": {k: BY_NAME[k].formula for k in
                                ("auroc", "auprc", "lead_time", "detected", *TRIGGER_METRICS)},
        **block,
        "comparisons": comparisons,
        "triggers": triggers,
        "trigger_quality": trigger_quality(steps, cfg),
        "roc": roc_points(steps, cfg.supervisor.estimators, cfg.metrics.horizons[0]),
        "rounds": round_summary(cfg, rounds, list(round_results)),
        "learning_curve": curve_over_seeds([rounds, *seed_rounds], cfg.stats.confidence)
        if rounds else [],
    }
    out["invariants"] = [iv.as_dict() for iv in check_invariants(out, cfg.supervisor.human)]
    return json_safe(out)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json`` and the flat ``metrics.csv`` (condition, metric, value, iqm, ci_lo,
    ci_hi, n): ``value`` is the pooled value, ``ci_lo`` / ``ci_hi`` its bootstrap CI, ``iqm``
    the secondary interquartile mean over scenarios."""
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    rows = ["condition,metric,value,iqm,ci_lo,ci_hi,n"]

    def fmt(v: Any) -> str:
        return "" if v is None else repr(v)

    for cond, vals in metrics["conditions"].items():
        for m, v in vals.items():
            iv, q = metrics["ci"][cond][m], metrics["iqm"][cond][m]
            rows.append(f"{cond},{m},{fmt(v)},{fmt(q['iqm'])},{fmt(iv['lo'])},{fmt(iv['hi'])},"
                        f"{fmt(iv['n'])}")
        for m, v in metrics["triggers"][cond].items():
            rows.append(f"{cond},{m},{fmt(v)},,,,")
    atomic_write_text(run_dir / "metrics.csv", "\n".join(rows) + "\n")


def write_tensorboard(path: Path, metrics: dict[str, Any]) -> None:
    """Rounds as steps (``round/<condition>.<metric>``) and the final pooled metrics
    (``final/<condition>/<metric>``)."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(path))
    try:
        for row in metrics["rounds"]:
            for k, v in row.items():
                if k != "round" and isinstance(v, (int, float)):
                    w.add_scalar(f"round/{k}", v, row["round"])
        for cond, vals in metrics["conditions"].items():
            for k, v in vals.items():
                if v is not None:
                    w.add_scalar(f"final/{cond}/{k}", v, 0)
    finally:
        w.close()


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    report: Path
    seconds: float


def run_experiment(cfg: ExperimentConfig, run_dir: Path, *, overrides: Sequence[str] = (),
                   progress: Callable[[int], Progress] | None = None,
                   agent: Any = None, resume: bool = False) -> RunResult:
    """Run ``cfg`` into ``run_dir``; ``progress(total)`` returns the per-episode callback.
    Torch runs on one thread meanwhile, so the same config gives the same bits anywhere.

    ``resume=True`` continues an interrupted run in ``run_dir`` (its provenance already
    written): every episode already complete in its logs is replayed, not played again,
    fine-tuning is redone on the replayed data (deterministic), and the metrics are those of
    an uninterrupted run."""
    import torch

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same float results on any machine; the nets are tiny
    try:
        return _run(cfg, run_dir, overrides, progress, agent, t0, resume)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: ExperimentConfig, run_dir: Path, overrides: Sequence[str],
         progress: Callable[[int], Progress] | None, agent: Any, t0: float,
         resume: bool = False) -> RunResult:
    import copy

    from takeover.experiments.provenance import note_resume, write_provenance
    from takeover.experiments.report import write_report
    from takeover.experiments.rounds import run_rounds

    seeds = {"base": cfg.seed, "eval_runs": cfg.eval.seeds,
             "eval": f"eval.seed_start + run * eval.episodes + episode "
                     f"(from {cfg.eval.seed_start}; the same for every condition and scenario)",
             "round": f"eval.round_seed_start + run * eval.round_episodes + episode "
                      f"(from {cfg.eval.round_seed_start}; the same every round)",
             "train": "numpy.random.SeedSequence([base, purpose, scenario, run, episode])"}
    exp = Experiment(cfg, run_dir, agent=agent, resume=resume)  # fail before writing
    if resume:
        note_resume(run_dir)
    else:
        write_provenance(run_dir, cfg, overrides, seeds)
    if progress:
        exp.progress = progress(n_episodes(cfg))
    try:
        start = copy.deepcopy(exp.agent) if cfg.train.seeds > 1 else None
        rounds = run_rounds(exp)  # fine-tuning seed 0: updates exp.agent in place
        seed_rounds = [extra_finetune_seed(exp, k, start, rounds[0])[0]
                       for k in range(1, cfg.train.seeds)]
        results = final_evaluation(exp)
    finally:
        exp.close()
    metrics = build_metrics(cfg, results, rounds, exp.round_results, seed_rounds,
                            exp.random_matching)
    for iv in metrics["invariants"]:
        if iv["status"] == "FAIL":  # a testbed that says when it is lying
            sys.stderr.write(f"WARNING: invariant violated: {iv['name']}: {iv['message']}\n")
    write_metrics(run_dir, metrics)
    report = write_report(run_dir, cfg, metrics, results)
    if cfg.tensorboard:
        write_tensorboard(run_dir / "tb", metrics)
    seconds = time.perf_counter() - t0
    atomic_write_text(run_dir / "timing.json", json.dumps({"seconds": round(seconds, 3)}))
    return RunResult(run_dir, metrics, report, seconds)
