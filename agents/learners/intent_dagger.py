"""HG-DAgger on intent labels: the intent agent (``takeover.agents.intent``) fine-tuned on
what the human *wanted* at each step it drove, not on the meta-action it pressed.

Why: the human's meta-actions are not a function of the observation (the same gap gets
``idle`` or ``slower`` by the setpoint pressed seconds before), its intent is (README,
"Learning"). A scripted human logs its intent (``human_intent``: wanted acceleration and
target lane relative to the ego's); a keyboard human has none, and its label falls back to
the intent its meta-action realises (``intent.realised_intent``), which carries no more
than the meta-action did.

Each update, as HG-DAgger: the aggregate of every human-labelled step of every round so far
(``labels``), plus the states the agent drove without trouble (``Aggregate.anchor_obs``:
no takeover or failure within 3 s after them) labelled with the *starting* agent's own
intent, so the agent keeps driving like itself where the human had nothing to correct.
The fit starts from the current weights; each human label weighs ``human_weight`` times an
anchor label. ``anchor=False`` drops the supervised episodes' anchors: measured on
development seeds (expert, 3 fine-tuning seeds, 4 rounds), they held the agent to the
novice's own driving on the approach to a hazard (the steps more than 3 s before the
human took over) and capped the gain at about +0.2; without them, and with the agent
accepting only the expert's gaps for a lane change (``IntentSpec.lane_gap``), it gained
+0.42 [0.31, 0.525] with plain arrival 0.99 (README, "Learning"). Without the gap check the
same updates crashed into traffic changing lanes and failed the plain-traffic check.

``plain_anchors`` adds the states of that many plain-traffic episodes the starting agent
drove alone (collected once, at no human cost, on training-block seeds from
``PLAIN_ANCHOR_SEED``), labelled with its own intent: the supervised episodes hold only
hazard scenarios, so without them nothing holds plain driving in place (measured: one
update of 8 expert-supervised stalled-car episodes dropped plain validation arrival to 0.75).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from takeover.agents.learners.base import Episodes, intervened
from takeover.agents.learners.hg_dagger import Aggregate

PLAIN_ANCHOR_SEED = 180_000
"""Plain-traffic seeds of ``plain_anchors`` (the training block 100_000..199_999, past
RLIF's prior data at 170_000)."""


def plain_anchor_obs(agent: Any, episodes: int, seed: int = PLAIN_ANCHOR_SEED) -> np.ndarray:
    """``(M, *obs_shape)`` observations of ``agent`` driving ``episodes`` plain-traffic
    episodes alone (seeds ``seed`` upward), in the world its observation was built for."""
    from takeover.agents.rollout import run_episodes
    from takeover.envs.lane_view import LANE_ROWS

    rows = agent.spec.obs_shape[0]
    eps = run_episodes(agent.predict, "takeover/Plain-v2", list(range(seed, seed + episodes)),
                       keep_obs=True, action_type="discrete", observe=rows - 1 - LANE_ROWS,
                       observe_lanes=True)
    return np.concatenate([e.obs for e in eps]).astype(np.float32)


def intent_labels(episodes: Episodes, spec: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                         int]:
    """``(obs, acc, lane, logged)`` of every human-driven step with an input: the logged
    intent where there is one (``logged`` counts them), else the intent its meta-action
    realises."""
    from takeover.agents.intent import realised_intent

    obs, acc, lane, logged = [], [], [], 0
    for recs in episodes:
        for r in recs:
            if not intervened(r):
                continue
            intent = getattr(r, "human_intent", None)
            o = np.asarray(r.obs, np.float32)
            if intent is not None and np.isfinite(intent).all():
                a, off = float(intent[0]), int(np.clip(np.rint(intent[1]), -1, 1))
                logged += 1
            else:
                ra, ro = realised_intent(o[None], np.asarray(r.human_action).reshape(1), spec)
                a, off = float(ra[0]), int(ro[0])
            obs.append(o)
            acc.append(a)
            lane.append(off)
    shape = (0, *spec.obs_shape)
    return (np.stack(obs) if obs else np.zeros(shape, np.float32),
            np.asarray(acc, np.float32), np.asarray(lane, np.int64), logged)


class IntentDagger:
    """HG-DAgger for :class:`~takeover.agents.intent.IntentAgent` (module docstring).

    Args:
        epochs, batch_size, lr: the fit (``intent.fit_intent``) each update.
        human_weight: weight of a human label against an anchor label.
        anchor: keep the starting agent's intent on the untroubled agent-driven states of
            the supervised episodes (the plain anchors are kept either way).
        anchor_gap: s before a takeover or failure an agent step is not an anchor.
        plain_anchors: plain-traffic episodes of the starting agent whose states are anchors
            too (module docstring; 0 = none).
        plain_weight: weight of a plain-traffic anchor label against a supervised-episode
            anchor label (the hazard labels accumulate over the rounds while the plain
            anchors do not: a heavier plain anchor keeps plain driving in place).
    """

    name = "intent-dagger"
    agent_kind = "intent"

    def __init__(self, *, epochs: int = 100, batch_size: int = 256, lr: float = 3e-4,
                 human_weight: float = 5.0, anchor: bool = True,
                 anchor_gap: float = 3.0, plain_anchors: int = 0,
                 plain_weight: float = 1.0) -> None:
        if min(human_weight, plain_weight, lr) <= 0 or epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs={epochs}, batch_size={batch_size}, lr={lr}, human_weight="
                             f"{human_weight}, plain_weight={plain_weight}: each must be "
                             "positive")
        if not 0 <= plain_anchors <= 1000:
            raise ValueError(f"plain_anchors={plain_anchors} must be an episode count in "
                             "0..1000")
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.human_weight, self.anchor, self.anchor_gap = human_weight, anchor, anchor_gap
        self.plain_anchors, self.plain_weight = int(plain_anchors), float(plain_weight)
        self.plain_obs: np.ndarray | None = None
        self.reference: Any = None
        self.history: list[float] = []

    def start(self, agent: Any) -> None:
        if getattr(agent, "spec", None) is None or not hasattr(agent, "net"):
            raise TypeError("intent-dagger fine-tunes an intent agent "
                            "(takeover.agents.intent.load_intent_agent); got "
                            f"{type(agent).__name__}")
        self.reference = copy.deepcopy(agent)
        if self.plain_anchors:
            self.plain_obs = plain_anchor_obs(self.reference, self.plain_anchors)

    def update(self, agent: Any, episodes: Episodes, *, seed: int) -> dict[str, float]:
        from takeover.agents.intent import fit_intent

        if self.reference is None:
            self.start(agent)
        obs, acc, lane, logged = intent_labels(episodes, agent.spec)
        if len(obs) == 0:
            return {"samples": 0.0}
        weight = np.full(len(obs), self.human_weight, np.float32)
        anchors = 0
        candidates: list[tuple[np.ndarray | None, float]] = [(self.plain_obs, self.plain_weight)]
        if self.anchor:
            agg = Aggregate(anchor_gap=self.anchor_gap)
            for e in episodes:
                agg.add_records(e, labels=False)
            candidates.insert(0, (agg.anchor_obs, 1.0))
        parts = [(a, wt) for a, wt in candidates if a is not None and len(a)]
        if parts:
            anchor_obs = np.concatenate([a for a, _ in parts])
            ref_acc, ref_p = self.reference.intents(anchor_obs)
            anchors = len(anchor_obs)
            obs = np.concatenate([obs, anchor_obs])
            acc = np.concatenate([acc, ref_acc.astype(np.float32)])
            lane = np.concatenate([lane, ref_p.mean(1).argmax(1) - 1])
            weight = np.concatenate([weight, *(np.full(len(a), wt, np.float32)
                                               for a, wt in parts)])
        self.history = fit_intent(agent, obs, acc, lane, weight=weight, epochs=self.epochs,
                                  batch_size=self.batch_size, lr=self.lr, seed=seed)
        return {"samples": float(len(obs) - anchors), "logged_intent": float(logged),
                "anchors": float(anchors), "loss_first": self.history[0],
                "loss_last": self.history[-1]}
