"""Review: people judge the gate's takeover requests after the fact, and relabel actions.

Disengagement triage (was this request needed?) and action correction (what should the
agent have done?) are testing- and training-stage human-in-the-loop work. This module is
their data side; ``takeover review RUN`` is the pygame front end.

* :func:`plan_review` picks the items: every gate *trigger* (a request's first step) and a
  seeded sample of non-trigger steps, shuffled together so the reviewer cannot tell which is
  which (``kind`` is stored in the plan, never shown).
* :class:`Replayer` rebuilds the exact world of a step: the world is deterministic, so it
  re-simulates the episode from its seed with the logged executed actions (the minimal-risk
  manoeuvre engaged where the log says ``fallback``), checks every re-simulated observation
  against the logged one bit for bit (:class:`ReplayError` if they ever differ), and keeps
  snapshots (``get_state``) at the items' steps. It also labels each item counterfactually
  (the agent alone from that state for ``horizon`` s fails or not), by the engine's own
  rollout.
* :class:`LabelStore` keeps each reviewer's labels beside the log in an append-only file,
  one JSON line per answer with its CRC32, fsynced per answer: a crash loses at most the
  answer being written and a torn or edited line is detected and skipped. A later answer
  to the same item replaces an earlier one. Each holds the reviewer id, the wall time and
  the seconds spent on the item.
* :func:`agreement` gives Cohen's kappa and the confusion table, of a reviewer against the
  counterfactual labels or against another reviewer; :func:`fit_threshold` fits the gate
  threshold whose requests best agree with the reviewers; :func:`relabelled_records` turns
  corrected actions into human-labelled :class:`~takeover.records.StepRecord` s, so
  ``takeover.agents.learners.hg_dagger.Aggregate.from_records`` is the offline DAgger dataset.
"""

from __future__ import annotations

import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from takeover.atomic import atomic_write_text
from takeover.records import RunMeta, StepRecord

LABELS = ("needed", "not_needed", "unsure")
REVIEW_DIR = "review"
PLAN_FILE = "plan.json"


class ReplayError(RuntimeError):
    """The re-simulated episode does not match its log (another world version or config)."""


# --- the items -------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One step to review.

    Attributes:
        id: ``"<episode>@<step>"``.
        episode, step: where in the log.
        kind: ``"trigger"`` (a request's first step) or ``"sample"`` (a non-request step);
            hidden from the reviewer.
        score: the gate's score at the step (NaN when none).
        needed: the counterfactual label (the agent alone failed within the horizon), or
            ``None`` until :meth:`Replayer.label` ran.
    """

    id: str
    episode: str
    step: int
    kind: str
    score: float = math.nan
    needed: bool | None = None


def plan_review(episodes: Mapping[str, Sequence[StepRecord]], *, samples_per_trigger: float = 1.0,
                score: str | None = None, seed: int = 0) -> list[Item]:
    """Triggers of every episode plus ``samples_per_trigger`` times as many non-request steps
    drawn uniformly (at least one per episode with steps), in a seeded blind order."""
    rng = np.random.default_rng(seed)
    items: list[Item] = []
    pool: list[tuple[str, int]] = []
    for name in sorted(episodes):
        recs = episodes[name]
        prev = False
        for r in recs:
            s = float(r.scores.get(score, math.nan)) if score else math.nan
            if r.gate_request and not prev:
                items.append(Item(f"{name}@{r.step}", name, r.step, "trigger", s))
            elif not r.gate_request and r.controller == "agent":
                pool.append((name, r.step))
            prev = r.gate_request
    n_trig = sum(1 for it in items if it.kind == "trigger")
    k = min(len(pool), max(1 if pool else 0, int(round(samples_per_trigger * n_trig))))
    by = {n: {r.step: r for r in episodes[n]} for n in episodes}
    for j in sorted(rng.choice(len(pool), size=k, replace=False).tolist()) if k else []:
        name, step = pool[j]
        r = by[name][step]
        s = float(r.scores.get(score, math.nan)) if score else math.nan
        items.append(Item(f"{name}@{step}", name, step, "sample", s))
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def save_plan(run_dir: str | os.PathLike, items: Sequence[Item], extra: dict | None = None
              ) -> Path:
    path = Path(run_dir) / REVIEW_DIR / PLAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"items": [asdict(i) for i in items], **(extra or {})},
                                       indent=1))
    return path


def load_plan(run_dir: str | os.PathLike) -> list[Item]:
    path = Path(run_dir) / REVIEW_DIR / PLAN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; plan the review first "
                                f"(takeover review {run_dir} creates it)")
    data = json.loads(path.read_text())
    return [Item(**d) for d in data["items"]]


# --- exact replay ----------------------------------------------------------------------
_DEFAULT_NAME = re.compile(r"(?:^|/)s(\d+)-e\d+$")


def episode_seed_of(meta: RunMeta | None, episode: str) -> int:
    """The reset seed of ``episode``: ``config["episode_seeds"][episode]`` when the log
    stores it, else from the engine's default name ``s<seed>-e<index>`` (the command also
    knows the experiment runner's names)."""
    cfg = meta.config if meta is not None else {}
    seeds = cfg.get("episode_seeds") or {}
    if episode in seeds:
        return int(seeds[episode])
    m = _DEFAULT_NAME.search(episode)
    if m:
        return int(m.group(1))
    raise ReplayError(f"cannot tell the seed of episode {episode!r}: store "
                      f"config['episode_seeds'] in the log's meta, or use the engine's "
                      f"episode names s<seed>-e<index>")


class Replayer:
    """Rebuilds logged steps exactly on ``env`` (a ``takeover`` env: ``get_state`` /
    ``set_state``), verifying every observation against the log."""

    def __init__(self, env: Any, seed_of: Callable[[str], int]) -> None:
        self.env, self.base = env, env.unwrapped
        for need in ("get_state", "set_state"):
            if not callable(getattr(self.base, need, None)):
                raise TypeError(f"review replays need env.unwrapped.{need}(); "
                                f"{type(self.base).__name__} has none (takeover/* envs do)")
        self.seed_of = seed_of
        self.discrete = hasattr(env.action_space, "n")
        self._mrm = callable(getattr(self.base, "set_mrm", None))

    def snapshots(self, records: Sequence[StepRecord], steps: Iterable[int]) -> dict[int, Any]:
        """``{step: world state when the decision of that step was made}`` (one pass)."""
        want = set(int(s) for s in steps)
        if not want:
            return {}
        last = max(want)
        if last >= len(records):
            raise ReplayError(f"step {last} is beyond episode {records[0].episode!r} "
                              f"({len(records)} steps)")
        obs, _ = self.env.reset(seed=self.seed_of(records[0].episode))
        out = {}
        for k, r in enumerate(records[: last + 1]):
            if not np.array_equal(np.asarray(obs, np.float32), r.obs):
                raise ReplayError(f"episode {r.episode!r} diverged from its log at step {k}: "
                                  f"the world (version or config) is not the one logged")
            if k in want:
                out[k] = self.base.get_state()
            if k == last:
                break
            if self._mrm:
                self.base.set_mrm(r.controller == "fallback")
            a = r.action
            obs, *_ = self.base.step(int(a[0]) if self.discrete else np.asarray(a, np.float32))
        return out

    def show(self, state: Any) -> None:
        """Put the world back in a snapshot's state (then ``render`` draws it)."""
        self.base.set_state(state)

    def label(self, agent: Any, records: Sequence[StepRecord], states: Mapping[int, Any],
              horizon: float = 2.0) -> dict[int, bool]:
        """Counterfactual label per snapshot: the agent alone fails within ``horizon`` s."""
        from takeover.supervisor.engine import GymWorld, agent_outputs, default_failure

        if not states:
            return {}
        steps = sorted(states)
        world = GymWorld(self.env)
        obs = np.stack([records[s].obs for s in steps])
        k = max(1, int(round(horizon / world.dt)))
        fail = world.rollout_alone([states[s] for s in steps], obs,
                                   lambda o: agent_outputs(agent, o), k, default_failure)
        return {s: bool(f >= 0) for s, f in zip(steps, fail.tolist())}


# --- labels ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewLabel:
    """One reviewer's answer on one item.

    Attributes:
        item: :attr:`Item.id`; reviewer: who; label: one of :data:`LABELS`.
        action: the action the agent should have taken (the env's action as a list, a
            Discrete index as ``[i]``), or ``None`` when not marked.
        seconds: wall seconds from showing the item to the answer.
        wall: Unix time of the answer.
    """

    item: str
    reviewer: str
    label: str
    action: list[float] | None = None
    seconds: float = math.nan
    wall: float = 0.0

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label {self.label!r}: use one of {', '.join(LABELS)}")
        if not self.reviewer or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.reviewer):
            raise ValueError(f"reviewer id {self.reviewer!r}: use 1-64 letters, digits, "
                             f"'.', '_' or '-'")


class LabelStore:
    """Append-only, checksummed labels of one reviewer: ``review/labels-<reviewer>.jsonl``
    beside the log; each line is ``<crc32 hex8> <json>``."""

    def __init__(self, run_dir: str | os.PathLike, reviewer: str) -> None:
        ReviewLabel("x", reviewer, "unsure")  # validates the id
        self.path = Path(run_dir) / REVIEW_DIR / f"labels-{reviewer}.jsonl"
        self.reviewer = reviewer
        self.bad_lines = 0

    def append(self, label: ReviewLabel) -> None:
        if label.reviewer != self.reviewer:
            raise ValueError(f"label by {label.reviewer!r} in {self.reviewer!r}'s store")
        body = json.dumps(asdict(label), sort_keys=True, allow_nan=True)
        line = f"{zlib.crc32(body.encode()):08x} {body}\n".encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # a crash may have left a torn last line: start on a fresh line
            if os.fstat(fd).st_size and not self._ends_with_newline():
                os.write(fd, b"\n")
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def read(self) -> dict[str, ReviewLabel]:
        """The latest intact answer per item (``bad_lines`` counts the skipped ones)."""
        out: dict[str, ReviewLabel] = {}
        self.bad_lines = 0
        if not self.path.exists():
            return out
        for raw in self.path.read_bytes().split(b"\n"):
            if not raw.strip():
                continue
            try:
                crc, body = raw.split(b" ", 1)
                if int(crc, 16) != zlib.crc32(body):
                    raise ValueError("checksum")
                lab = ReviewLabel(**json.loads(body))
            except (ValueError, TypeError):
                self.bad_lines += 1
                continue
            out[lab.item] = lab
        return out


def reviewers(run_dir: str | os.PathLike) -> list[str]:
    d = Path(run_dir) / REVIEW_DIR
    return sorted(p.name[len("labels-"):-len(".jsonl")] for p in d.glob("labels-*.jsonl"))


# --- agreement and feedback ----------------------------------------------------------------
def agreement(a: Sequence[str], b: Sequence[str],
              categories: Sequence[str] = ("needed", "not_needed")) -> dict[str, Any]:
    """Cohen's kappa and the confusion table (rows ``a``, columns ``b``) over the pairs where
    both are in ``categories`` (``unsure`` is left out by default)."""
    cats = list(categories)
    idx = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)), dtype=np.int64)
    for x, y in zip(a, b):
        if x in idx and y in idx:
            table[idx[x], idx[y]] += 1
    n = int(table.sum())
    if n == 0:
        return {"kappa": math.nan, "agreement": math.nan, "n": 0, "categories": cats,
                "confusion": table.tolist()}
    po = float(np.trace(table)) / n
    pe = float((table.sum(1) * table.sum(0)).sum()) / n ** 2
    kappa = (po - pe) / (1 - pe) if pe < 1 else (1.0 if po == 1 else math.nan)
    return {"kappa": kappa, "agreement": po, "n": n, "categories": cats,
            "confusion": table.tolist()}


def counterfactual_text(needed: bool | None) -> str:
    return "unsure" if needed is None else ("needed" if needed else "not_needed")


def fit_threshold(scores: Sequence[float], labels: Sequence[str]) -> dict[str, float]:
    """The gate threshold (request when ``score >= threshold``) whose requests agree best
    with the reviewers (max Cohen's kappa over ``needed`` / ``not_needed`` items; ties:
    the lowest threshold, the safer one)."""
    s = np.asarray(scores, dtype=float)
    lab = np.asarray(labels, dtype=object)
    ok = np.isfinite(s) & np.isin(lab, ("needed", "not_needed"))
    s, y = s[ok], lab[ok] == "needed"
    if len(s) == 0 or y.all() or not y.any():
        return {"threshold": math.nan, "kappa": math.nan, "n": float(len(s))}
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1e-9], (u[1:] + u[:-1]) / 2, [u[-1] + 1e-9]])
    best = (-math.inf, math.nan)
    for c in cands:
        k = agreement(["needed" if v else "not_needed" for v in s >= c],
                      ["needed" if v else "not_needed" for v in y])["kappa"]
        if math.isfinite(k) and k > best[0] + 1e-12:
            best = (k, float(c))
    return {"threshold": best[1], "kappa": best[0], "n": float(len(s))}


def relabelled_records(episodes: Mapping[str, Sequence[StepRecord]], items: Sequence[Item],
                       labels: Iterable[ReviewLabel]) -> list[StepRecord]:
    """The reviewed steps whose action a reviewer corrected, as human-labelled records
    (``controller="human"``, ``human_action`` = the correction): the offline DAgger round's
    data, ``takeover.agents.learners.hg_dagger.Aggregate.from_records(...)``."""
    where = {it.id: it for it in items}
    out = []
    for lab in labels:
        it = where.get(lab.item)
        if it is None or lab.action is None:
            continue
        r = episodes[it.episode][it.step]
        out.append(replace(r, controller="human",
                           human_action=np.asarray(lab.action, np.float32).reshape(-1)))
    return out


def summarize(run_dir: str | os.PathLike, items: Sequence[Item]) -> dict[str, Any]:
    """Per reviewer: agreement with the counterfactual labels, time per item, the fitted
    threshold; per pair of reviewers: their agreement."""
    by_id = {it.id: it for it in items}
    names = reviewers(run_dir)
    labs = {r: LabelStore(run_dir, r).read() for r in names}
    out: dict[str, Any] = {"items": len(items), "reviewers": {}, "pairs": {}}
    for r, got in labs.items():
        ids = [i for i in got if i in by_id]
        cf = [counterfactual_text(by_id[i].needed) for i in ids]
        mine = [got[i].label for i in ids]
        secs = [got[i].seconds for i in ids if math.isfinite(got[i].seconds)]
        out["reviewers"][r] = {
            "labelled": len(ids), "vs_counterfactual": agreement(mine, cf),
            "seconds_per_item": float(np.mean(secs)) if secs else math.nan,
            "actions_marked": sum(got[i].action is not None for i in ids),
            "fitted_threshold": fit_threshold([by_id[i].score for i in ids], mine),
            "by_kind": {k: agreement([got[i].label for i in ids if by_id[i].kind == k],
                                     [counterfactual_text(by_id[i].needed) for i in ids
                                      if by_id[i].kind == k]) for k in ("trigger", "sample")},
        }
    for a_i, a in enumerate(names):
        for b in names[a_i + 1:]:
            common = sorted(set(labs[a]) & set(labs[b]))
            out["pairs"][f"{a}~{b}"] = agreement([labs[a][i].label for i in common],
                                                 [labs[b][i].label for i in common])
    return out

