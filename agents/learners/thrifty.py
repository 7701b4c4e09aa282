"""ThriftyDAgger-style learning (Hoque et al. 2021): HG-DAgger's behaviour cloning on a
bootstrap resample per ensemble member, then a refit of the risk critic on every logged
step.

ThriftyDAgger collects its data with a robot-side gate (novelty + risk), so the two
signals the gate reads must stay meaningful as the policy changes: the members keep their
randomized priors (``hg_dagger.finetune_params``) and differ by their resamples, and the
risk critic, which predicts failure of *the current policy*, is refit on the logs it
produced. Labels come from episode outcomes (``risk.failure_labels``): a step is positive
for horizon ``H`` when its episode failed within ``H`` s of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from takeover.agents.learners.base import Episodes, ended_in_failure
from takeover.agents.learners.hg_dagger import Aggregate, HGDagger, clone_members
from takeover.types import Step


def risk_data(episodes: Sequence[Sequence[Step]], horizons: Sequence[float],
              control_hz: float):
    """``takeover.agents.risk.RiskData`` from logged episodes: every step is labelled by
    whether its episode ended in a failure (collision, off-road: ``ended_in_failure``) within
    each horizon; an arrival terminates too but is no failure."""
    from takeover.agents.risk import RiskData, failure_labels

    steps = np.round(np.asarray(horizons) * control_hz).astype(int)
    eps = [e for e in episodes if e]
    if not eps:
        raise ValueError("no episodes to label for the risk critic")
    return RiskData(
        obs=np.stack([np.asarray(r.obs, np.float32) for e in eps for r in e]),
        labels=np.concatenate([failure_labels(len(e), ended_in_failure(e[-1]), steps)
                               for e in eps]),
        episode=np.concatenate([np.full(len(e), i) for i, e in enumerate(eps)]),
        outcomes=[getattr(e[-1], "outcome", "") or e[-1].reason for e in eps],
    )


@dataclass
class ThriftyResult:
    """Loss histories of one ThriftyDAgger-style update."""

    bc: list[list[float]]
    """one BC loss history per ensemble member"""
    risk: list[float]
    """the risk critic's loss history (empty when no critic was given)"""


def thrifty_update(policies: Sequence, aggregate: Aggregate,
                   episodes: Sequence[Sequence[Step]] = (), critic=None, *,
                   epochs: int = 10, batch_size: int = 64, lr: float = 3e-4, seed: int = 0,
                   bootstrap: bool = True, risk_epochs: int = 20,
                   references: Sequence | None = None,
                   anchor_weight: float = 0.0) -> ThriftyResult:
    """The ThriftyDAgger update: BC on the aggregate for every ensemble member (each on its
    own bootstrap resample when ``bootstrap``, so the members stay diverse and their
    disagreement stays a novelty signal), then refit the risk critic on all logged steps.

    Args:
        policies: the ensemble's SB3 policies (``agent.policies``), updated in place.
        episodes: every logged episode so far (complete ones), for the risk critic.
        critic: a ``takeover.agents.risk.RiskCritic`` or ``None`` to skip the refit.
        references: one frozen reference per member for ``bc_update``'s anchor.
    """
    bc = clone_members(policies, aggregate, epochs=epochs, batch_size=batch_size, lr=lr,
                       seed=seed, bootstrap=bootstrap, references=references,
                       anchor_weight=anchor_weight)
    risk = ([] if critic is None else
            refit_risk(critic, episodes, epochs=risk_epochs, seed=seed))
    return ThriftyResult(bc=bc, risk=risk)


def refit_risk(critic, episodes: Episodes, *, epochs: int = 20, seed: int = 0) -> list[float]:
    """Continue training ``critic`` (in place) on every logged step, labelled by its
    episode's outcome; returns the loss per epoch. Starting from the current weights keeps
    what the critic knew of states the log does not cover."""
    from takeover.agents.risk import fit_risk

    spec = critic.spec
    return fit_risk(critic, risk_data(episodes, spec.horizons, spec.control_hz),
                    epochs=epochs, seed=seed)


class Thrifty(HGDagger):
    """ThriftyDAgger-style through the learner interface: :class:`HGDagger` with a
    bootstrap resample per member, then :func:`refit_risk` on all logged episodes (when the
    agent has a risk critic).

    Args:
        risk_epochs: passes of the critic refit per round.
        refit: ``"correction"`` (default): every member refits its own correction on its
            own resample, as ThriftyDAgger trains its members; ``"shared"`` keeps the
            disagreement exactly (then the resamples play no part).
        **bc: :class:`HGDagger`'s options.
    """

    name = "thrifty"

    def __init__(self, *, risk_epochs: int = 20, bootstrap: bool = True,
                 refit: str = "correction", **bc: Any) -> None:
        super().__init__(bootstrap=bootstrap, refit=refit, **bc)
        self.risk_epochs = risk_epochs

    def update(self, agent: Any, episodes: Episodes, *, seed: int) -> dict[str, float]:
        stats = super().update(agent, episodes, seed=seed)
        critic = getattr(agent, "risk_critic", None)
        if critic is not None and episodes:
            losses = refit_risk(critic, episodes, epochs=self.risk_epochs, seed=seed)
            stats.update(risk_loss_first=losses[0], risk_loss_last=losses[-1])
        return stats
