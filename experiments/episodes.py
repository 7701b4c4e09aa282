"""Running a condition's episodes: the only module of ``experiments`` that wires the env,
the agent and the supervision engine together (everything after it reads ``StepRecord``
lists). Episodes run as batches of worlds on one engine (``Rollouts.run_batch``), and
independent batches on both cores (``run_jobs``).

A *condition* is what a row of the report compares: the configured gate (``supervised``),
the agent with nobody watching (``agent_alone``: estimators scored, no gate, no human), or the
supervisor with a baseline gate (``never`` / ``always`` / ``random`` issuing the configured
gate's takeover requests per episode / ``random_time`` buying its human time per episode,
``runner.match_random_gate``). Episode seeds derive from the base seed through
``numpy.random.SeedSequence``, so adding a scenario or a condition never shifts the seeds of
the others, and training and evaluation seeds never overlap.

Each condition keeps one gate object for the whole run, so gates that recalibrate online
(``budget``, ``thrifty``) carry what they learned across episodes and rounds, as deployed.
"""

from __future__ import annotations

import signal
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from takeover.experiments.config import ExperimentConfig
from takeover.records import StepRecord

PURPOSES = {"train": 1, "eval": 2, "round": 3}
"""Seed streams: training collection, final evaluation, per-round evaluation."""

SCENARIO_IDS = {
    "sudden_brake": "takeover/SuddenBrake-v2", "cut_in": "takeover/CutIn-v2",
    "stalled_car": "takeover/StalledCar-v2", "merge": "takeover/Merge-v2",
    "lane_closure": "takeover/LaneClosure-v2", "none": "takeover/Plain-v2",
    "mixed": "takeover/Highway-v2",
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
    human: str | None = None
    """Human model of this condition (``None``: the configured ``supervisor.human``)."""


def conditions(cfg: ExperimentConfig, random_rate: float = 0.05,
               random_time_rate: float = 0.05) -> list[Condition]:
    """The configured gate first, then the baselines (``random`` at ``random_rate``,
    ``random_time`` at ``random_time_rate``: both the same random gate, matched on
    requests and on human time, ``runner.match_random_gate``)."""
    sup = cfg.supervisor
    out = [Condition("supervised", sup.gate, dict(sup.gate_kwargs))]
    for b in cfg.eval.baselines:
        if b == "agent_alone":
            out.append(Condition(b, None))
        elif b in ("random", "random_time"):
            rate = float(min(max(random_rate if b == "random" else random_time_rate, 0.0), 1.0))
            out.append(Condition(b, "random", {"rate": rate, "seed": cfg.seed}))
        elif b == "absent":  # the configured gate with nobody answering
            out.append(Condition(b, sup.gate, dict(sup.gate_kwargs), human="absent"))
        else:
            out.append(Condition(b, b))
    return out


class EnvCache:
    """One env per scenario (and one batched env per scenario and batch size), reused
    across episodes (``reset(seed)`` makes them independent)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.kwargs = cfg.env.env_kwargs()
        self._envs: dict[str, gym.Env] = {}
        self._vec: dict[tuple[str, int], Any] = {}

    def get(self, scenario: str) -> gym.Env:
        if scenario not in self._envs:
            import takeover.envs  # noqa: F401  (registers the ids)

            self._envs[scenario] = gym.make(SCENARIO_IDS[scenario], **self.kwargs)
        return self._envs[scenario]

    def batch(self, scenario: str, n: int) -> Any:
        """A ``HighwayVectorEnv`` of ``n`` worlds of ``scenario``."""
        key = (scenario, n)
        if key not in self._vec:
            import takeover.envs  # noqa: F401
            from takeover.envs.vector import make_vector_env

            self._vec[key] = make_vector_env(SCENARIO_IDS[scenario], n, **self.kwargs)
        return self._vec[key]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self._vec.clear()


MAX_WORLDS = 64
"""Worlds stepped together by default: past ~64 the per-step cost is per world anyway, and
a smaller batch wastes fewer idle worlds at the tail of a condition's episodes."""


class Rollouts:
    """Plays episodes of any condition on the supervision engine
    (``takeover.supervisor.engine.Engine``), batched over worlds, one gate object per
    condition. The same seeds give the same records whatever the batch size (gates that
    recalibrate online from every world, ``budget`` / ``thrifty``, excepted)."""

    def __init__(self, cfg: ExperimentConfig, envs: EnvCache, agent: Any,
                 max_worlds: int = MAX_WORLDS) -> None:
        self.cfg, self.envs, self.agent = cfg, envs, agent
        self.max_worlds = int(max_worlds)
        self._gates: dict[tuple, Any] = {}
        self._estimators: dict[str, Any] | None = None

    def estimators(self) -> dict[str, Any]:
        """Built once per run; estimators that declare ``needs = {"reference_obs"}`` (e.g.
        novelty) index the agent's training sample."""
        if self._estimators is None:
            from takeover.supervisor.estimators import make_estimators

            self._estimators = make_estimators(
                list(self.cfg.supervisor.estimators),
                reference_obs=getattr(self.agent, "reference_obs", None))
        return self._estimators

    def gate(self, condition: Condition, scenario: str = "") -> Any:
        """The condition's gate; a seeded gate (the random twins) gets a stream per
        ``scenario``: every scenario plays the same episode seeds, and with one seed the
        five scenarios' random requests would fall on the same steps (200 episodes, 40
        independent streams)."""
        import zlib

        from takeover.supervisor.gates import GATES

        kwargs = dict(condition.gate_kwargs)
        if scenario and "seed" in kwargs:
            kwargs["seed"] = int(kwargs["seed"]) << 32 | zlib.crc32(scenario.encode())
        key = (condition.name, condition.gate, tuple(sorted(kwargs.items())))
        if key not in self._gates:
            self._gates[key] = GATES.make(condition.gate or "never", **kwargs)
        return self._gates[key]

    def humans(self, n: int, name: str | None = None) -> Any:
        """N scripted humans of model ``name`` (default: the configured one, with its
        kwargs), one per world, advanced together."""
        from takeover.supervisor.humans import HUMANS

        s = self.cfg.supervisor
        name = name or s.human
        kwargs = dict(s.human_kwargs) if name == s.human else {}
        return HUMANS.make(name, num_worlds=n, **kwargs)

    def run_batch(self, condition: Condition, scenario: str, seeds: Sequence[int],
                  episode_ids: Sequence[str], label: bool = False
                  ) -> list[tuple[list[StepRecord], list[Any]]]:
        """One episode per seed, ``max_worlds`` at a time; returns ``(records, labels)`` per
        episode in seed order."""
        from takeover.config import from_dict
        from takeover.supervisor.counterfactual import Counterfactual
        from takeover.supervisor.engine import Engine
        from takeover.supervisor.handover import HandoverConfig

        if not seeds:
            return []
        s, cf_cfg = self.cfg.supervisor, self.cfg.counterfactual
        alone = condition.gate is None
        cf = None
        if label and not alone and condition.name not in NO_LABELS:
            cf = Counterfactual(horizon=cf_cfg.horizon, sample_rate=1.0 / cf_cfg.sample_every,
                                seed=self.cfg.seed)
        n = min(len(seeds), self.max_worlds)
        eng = Engine(
            self.envs.batch(scenario, n), self.agent,
            self.estimators(),  # scored alone too: the ROC of the agent's own failures
            self.gate(condition, scenario), None if alone else self.humans(n, condition.human),
            gate_score=None if alone else s.gate_score,
            handover=from_dict(HandoverConfig, dict(s.handover_kwargs)), counterfactual=cf)
        eps = eng.run(list(seeds), list(episode_ids))
        return [(e.records, e.labels) for e in eps]

    def run(self, condition: Condition, scenario: str, seed: int, episode_id: str,
            label: bool = False) -> tuple[list[StepRecord], list[Any]]:
        """One episode; returns its records and (when ``label``) counterfactual labels
        (the batch of one: the same records as in any batch)."""
        return self.run_batch(condition, scenario, [seed], [episode_id], label)[0]


def learns_online(gate: Any) -> bool:
    """The gate recalibrates from what every world saw (its episodes depend on the order
    they end in, so they must run in one process)."""
    inner = getattr(gate, "inner", None)
    return hasattr(gate, "q") or (inner is not None and learns_online(inner))


PROCESSES = 2
"""Worker processes ``run_jobs`` uses by default (the testbed's 2-core budget)."""


def run_jobs(rollouts: Rollouts, jobs: Sequence[tuple], processes: int = PROCESSES
             ) -> Generator[list, None, None]:
    """``rollouts.run_batch(*job)`` for every job, yielded in job order: on ``processes``
    forked workers when there are several jobs and every job's gate is stateless across
    episodes (a gate that recalibrates online sees its episodes in order, in this process).
    The same results as running the jobs one by one (the engine's records of a seed do not
    depend on its batch), streamed so a condition's episodes need not all be in memory."""
    if processes <= 1 or len(jobs) <= 1 or any(learns_online(rollouts.gate(j[0])) for j in jobs):
        for j in jobs:
            yield rollouts.run_batch(*j)
        return
    import multiprocessing as mp

    from takeover.envs.warmup import warm_up
    from takeover.supervisor.humans.warmup import warm_humans

    # The workers would compile the kernels they meet into numba's disk cache at the same
    # time, which can leave one signature's entry holding another's code (envs.warmup): the
    # parent compiles (or loads) them first, under the cache's lock, and the forks inherit.
    warm_up(warm_humans)
    global _WORKER
    _WORKER = rollouts
    from takeover import interrupt

    # Workers are forked with the stop signals blocked and unblock them once their own
    # handlers are set (``_init_worker``): a signal in between would otherwise run the
    # parent's handler in the child, which then dies outside the pool's control. The
    # parent takes a signal that arrived meanwhile once the pool exists, inside ``with``,
    # so the pool is always closed.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        pool = mp.get_context("fork").Pool(min(processes, len(jobs)), initializer=_init_worker)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    with pool:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        results = pool.imap(_run_job, jobs, chunksize=1)
        for _ in jobs:
            while True:  # a stop signal swallowed by a fork must not leave us waiting forever
                try:
                    yield results.next(timeout=0.5)
                    break
                except mp.TimeoutError:
                    interrupt.check()


_WORKER: Rollouts | None = None
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def _init_worker() -> None:
    """A worker leaves stopping to its parent: Ctrl-C is the parent's, and the pool ends
    workers with SIGTERM (the parent's interrupt handler would turn it into a traceback)."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by run_jobs's fork
    torch.set_num_threads(1)


def _run_job(job: tuple) -> list:
    assert _WORKER is not None
    return _WORKER.run_batch(*job)
