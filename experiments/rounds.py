"""The multi-round loop of interactive imitation learning (issue 6, item 5), top to bottom:

    for round in 0..R:
        evaluate the current agent on held-out seeds (supervised and alone)  -> learning curve
        if round == R: stop
        supervise N episodes per scenario with the configured gate + human -> crash-safe log
        aggregate the human-labelled steps of every round so far
        fine-tune the agent on the aggregate (HG-DAgger / ThriftyDAgger: behaviour cloning)

Round 0 is the shipped agent. Every round is evaluated on the same held-out seeds (so the
curve compares policies, not luck), and training episodes use their own seed stream per
round, disjoint from both evaluation streams. Each ensemble member is fine-tuned with its own seed on the same
aggregate, so the members stay distinct and the ensemble's disagreement stays meaningful.
"""

from __future__ import annotations

from typing import Any

from takeover.experiments.episodes import Condition
from takeover.experiments.metrics import METRICS
from takeover.records import StepRecord

CURVE_METRICS = ("success_rate", "collision_rate", "failure_rate", "interventions_per_episode",
                 "interventions_per_km", "human_share", "context_switches_per_episode",
                 "km_per_episode")
"""The learning-curve columns (issue 6: success, collisions, interventions, human steps,
context switches; plus distance, so a policy made "safe" by crawling shows up)."""


def human_labelled(records: list[StepRecord]) -> list[StepRecord]:
    """Steps the human drove with an actual input: the HG-DAgger training data."""
    return [r for r in records if r.controller == "human" and r.human_action is not None]


def finetune(agent: Any, episodes: list[list[StepRecord]], *, method: str, epochs: int,
             batch_size: int, lr: float, seed: int, references: list[Any] | None = None,
             anchor_weight: float = 0.0, relabel: bool = True) -> list[float]:
    """Update ``agent`` in place from every logged episode so far; returns the mean BC loss
    per epoch of the first member (empty when there is nothing to learn).

    ``hg-dagger``: behaviour cloning of every member on the human-labelled aggregate.
    ``thrifty``: the same on a bootstrap resample per member, then the risk critic is refit
    on all logged steps (``takeover.agents.bc.thrifty_update``).
    ``references`` (one frozen policy per member, e.g. the shipped agent's) with
    ``anchor_weight > 0`` keep each member close to its reference on the agent-driven
    steps; ``relabel`` turns discrete labels into executed ones (``bc.executed_label``)."""
    if method == "none":
        return []
    from takeover.agents.bc import Aggregate, bc_update, thrifty_update

    data = Aggregate.from_records((r for e in episodes for r in e), relabel=relabel)
    if len(data) == 0:
        return []
    policies = list(getattr(agent, "policies", []))
    if not policies:
        raise TypeError(f"agent {type(agent).__name__} exposes no SB3 policies to fine-tune")
    refs = list(references) if references is not None and anchor_weight > 0 else None
    if method == "thrifty":
        res = thrifty_update(policies, data, episodes, getattr(agent, "risk_critic", None),
                             epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             references=refs, anchor_weight=anchor_weight)
        hists = res.bc
    else:
        hists = [bc_update(p, data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + k,
                           reference=None if refs is None else refs[k],
                           anchor_weight=0.0 if refs is None else anchor_weight)
                 for k, p in enumerate(policies)]
    for p in policies:
        p.set_training_mode(False)
    return [float(x) for x in hists[0]]


def run_rounds(exp: Any) -> list[dict[str, Any]]:
    """The loop above on an ``Experiment`` (``runner.py``); one row per round."""
    cfg = exp.cfg
    t = cfg.train
    main = Condition("supervised", cfg.supervisor.gate, dict(cfg.supervisor.gate_kwargs))
    alone = Condition("agent_alone", None)
    logged: list[list[StepRecord]] = []
    labelled = 0
    rows: list[dict[str, Any]] = []
    human_steps_total = 0
    references = None
    if t.method != "none" and t.rounds > 0 and t.anchor_weight > 0:
        from takeover.agents.bc import frozen_copy

        references = [frozen_copy(p) for p in getattr(exp.agent, "policies", [])]
    for rnd in range(t.rounds + 1):
        row: dict[str, Any] = {"round": rnd, "human_steps_total": human_steps_total}
        for cond in (main, alone):
            res = exp.evaluate(cond, "round", episodes=cfg.eval.round_episodes)
            m = res.metrics()
            row.update({f"{cond.name}.{k}": m[k] for k in CURVE_METRICS if k in METRICS})
        if rnd == t.rounds:
            rows.append(row)
            break
        collected: list[StepRecord] = []
        exp.evaluate(main, "train", episodes=t.episodes_per_round, runs=[rnd],
                     log_dir=exp.run_dir / "logs" / f"train-round{rnd}", keep=collected)
        by_episode: dict[str, list[StepRecord]] = {}
        for r in collected:
            by_episode.setdefault(r.episode, []).append(r)
        logged += list(by_episode.values())
        new = len(human_labelled(collected))
        human_steps_total += new
        labelled += new
        losses = finetune(exp.agent, logged, method=t.method, epochs=t.epochs,
                          batch_size=t.batch_size, lr=t.lr, seed=cfg.seed + rnd,
                          references=references, anchor_weight=t.anchor_weight,
                          relabel=t.relabel)
        row.update({"new_human_steps": new, "aggregate_size": labelled,
                    "bc_loss_first": losses[0] if losses else None,
                    "bc_loss_last": losses[-1] if losses else None})
        rows.append(row)
    return rows
