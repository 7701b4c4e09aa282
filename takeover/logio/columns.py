"""Whole-log arrays for training: ``takeover.logio.read_columns(run_dir)``.

``read_columns(path)`` returns one ``dict[str, np.ndarray]`` over every complete, intact
episode of the log, rows in log order (episodes sorted by id, steps in order). With
``N`` rows (steps), ``E`` episodes, ``A`` action size, ``K`` ensemble members:

==========================  =====================  ==========================================
key                         shape, dtype           meaning
==========================  =====================  ==========================================
``obs``                     (N, *obs) float32      observation the step was decided on
``next_obs``                (N, *obs) float32      the next step's ``obs``; at an episode's
                                                   last step its terminal observation (NaN
                                                   when the log has none: a 1.0 log)
``action``                  (N, A) float32         executed action
``agent_action``            (N, A) float32         the agent's (ensemble mean) action
``human_action``            (N, A) float32         the human's action, NaN where none
``has_human_action``        (N,) bool              the human gave an input this step
``human_intent``            (N, 2) float32         what the human meant by its action:
                                                   acceleration wanted (m/s^2), lane wanted
                                                   relative to the ego's (-1 left, 0 keep,
                                                   +1 right); NaN where none (no action, a
                                                   human without intent such as a keyboard,
                                                   a log written before the column)
``has_human_intent``        (N,) bool              the row holds an intent
``member_actions``          (N, K, A) float32      per-member actions, NaN where not logged
``has_member_actions``      (N,) bool
``controller``              (N,) str               ``"agent"``, ``"human"``, ``"fallback"``
``phase`` ``transition``    (N,) str               handover state / why it changed
``reason`` ``outcome``      (N,) str               ``""`` except at an episode's last step
``step``                    (N,) int64             step index within its episode
``time`` ``wall_time``      (N,) float64           s
``reward`` ``threshold``    (N,) float64
``tor_time``                (N,) float64           s, NaN without a pending request
``takeover_time``           (N,) float64           s, NaN
``hazard_onset``            (N,) float64           s, NaN until the hazard fired
``gate_request``            (N,) bool              and likewise ``terminated``,
                                                   ``truncated``, ``hazard_fired``, ``mrm``,
                                                   ``score_nonfinite``
``score.<name>``            (N,) float64           every estimator's score (NaN if absent)
``info.<key>``              (N,) float64/int64/    the env info (float with NaN where a key
                            bool/str/object        is missing from some steps, str with "")
``episode_index``           (N,) int64             row -> index into ``episode_ids``
``episode_end``             (N,) bool              the row is its episode's last step
``episode_ids``             (E,) str
``episode_start``           (E + 1,) int64         rows of episode ``e`` are
                                                   ``episode_start[e]:episode_start[e+1]``
``terminal_obs``            (E, *obs) float32      observation after the last step, NaN if
                                                   not logged
``has_terminal_obs``        (E,) bool
==========================  =====================  ==========================================

``by_episode=True`` returns ``{episode_id: dict}`` with the same keys per episode (``E = 1``).
A learner masks rows with ``controller == "human"`` (an intervention) or ``has_human_action``
(the human gave an input) rather than trusting NaN-filled arrays.
"""

from __future__ import annotations

import numpy as np

from takeover.logio import chunks as ck
from takeover.logio.frames import LogError


def _nan_like(n: int, shape: tuple, dtype: np.dtype) -> np.ndarray:
    dt = dtype if dtype.kind == "f" else np.dtype(np.float64)
    return np.full((n, *shape), np.nan, dt)


def _optional(c: ck.Chunk, f: str, fallback: tuple) -> tuple[np.ndarray, np.ndarray]:
    mask = ck.presence(c, f)
    vals = c.cols.get(f)
    shape, dt = (vals.shape[1:], vals.dtype) if vals is not None else (fallback,
                                                                      np.dtype(np.float32))
    out = _nan_like(c.n, shape, dt)
    if vals is not None:
        out[mask] = vals
    return out, mask.copy()


def _masked(c: ck.Chunk, prefix: str, k: str, has: bool, vals: np.ndarray) -> np.ndarray:
    if not has:
        return vals
    mask = c.cols[f"{prefix}?{k}"]
    if vals.dtype.kind == "U":
        out = np.full(c.n, "", vals.dtype)
    elif vals.dtype == object:
        out = np.full(c.n, None, object)
    else:
        out = np.full(c.n, np.nan)
    out[mask] = vals
    return out


def _dense(c: ck.Chunk) -> dict[str, np.ndarray]:
    cols = c.cols
    out = {f: cols[f] for f in ("step", *ck.F8, *ck.B1, *ck.ARR)}
    for f in ck.STR:
        out[f] = np.asarray(c.vocab[f] or [""], dtype=str)[cols[f]]
    act, obs = cols["action"].shape[1:], cols["obs"].shape[1:]
    for f, fb in (("human_action", act), ("member_actions", (0, *act)), ("terminal_obs", obs),
                  ("human_intent", (2,))):
        out[f], out["has_" + f] = _optional(c, f, fb)
    for k, has in c.scores:
        out[f"score.{k}"] = _masked(c, "score", k, has, cols[f"score.{k}"])
    for k, kind, has in c.info:
        if kind in "fbi":
            vals = cols[f"info.{k}"]
        elif kind == "s":
            vals = np.asarray(c.vocab[f"info.{k}"] or [""], dtype=str)[cols[f"info.{k}"]]
        elif kind == "n":
            vals = np.full(len(cols[f"info?{k}"]) if has else c.n, np.nan)
            if has:
                vals = vals[cols[f"info?{k}"]]
        else:
            vals = np.array(c.tagged[k] + [None], dtype=object)[:-1]
        out[f"info.{k}"] = _masked(c, "info", k, has, vals)
    return out


def _fill(n: int, like: np.ndarray) -> np.ndarray:
    if like.dtype.kind == "U":
        return np.full((n, *like.shape[1:]), "", like.dtype)
    if like.dtype == object:
        return np.full((n, *like.shape[1:]), None, object)
    return _nan_like(n, like.shape[1:], like.dtype)


def _concat(parts: list[dict[str, np.ndarray]], lengths: list[int]) -> dict[str, np.ndarray]:
    """Row-wise concatenation; a key some parts lack is filled (NaN, "" or None)."""
    keys = list(dict.fromkeys(k for p in parts for k in p))
    out = {}
    for k in keys:
        have = [p[k] for p in parts if k in p]
        if len(have) < len(parts):
            like = have[0]
            have = [p[k] if k in p else _fill(n, like) for p, n in zip(parts, lengths,
                                                                        strict=True)]
        try:
            out[k] = np.concatenate(have) if len(have) > 1 else have[0].copy()
        except ValueError as e:  # shapes differ
            raise LogError(f"column {k!r} changes shape between chunks or episodes ({e}); "
                           "read it per episode: read_columns(path, by_episode=True)") from None
        except TypeError:  # e.g. text in one episode, numbers in another
            out[k] = np.concatenate([a.astype(object) for a in have])
    return out


def episode_columns(chunks: list[ck.Chunk], episode: str) -> dict[str, np.ndarray]:
    """One episode's arrays (the keys of the module docstring, with ``E = 1``)."""
    parts = [_dense(c) for c in chunks]
    cols = _concat(parts, [c.n for c in chunks])
    n = len(cols["step"])
    term, has = cols.pop("terminal_obs"), cols.pop("has_terminal_obs")
    last_has = bool(n) and bool(has[-1])
    terminal = term[-1:] if last_has else _nan_like(1, cols["obs"].shape[1:], cols["obs"].dtype)
    cols["next_obs"] = np.concatenate([cols["obs"][1:], terminal.astype(cols["obs"].dtype)])
    cols["terminal_obs"] = terminal
    cols["has_terminal_obs"] = np.array([last_has])
    cols["episode_index"] = np.zeros(n, np.int64)
    cols["episode_end"] = np.arange(n) == n - 1
    cols["episode_ids"] = np.array([episode])
    cols["episode_start"] = np.array([0, n], np.int64)
    return cols


_PER_EPISODE = ("terminal_obs", "has_terminal_obs", "episode_ids")


def log_columns(chunks: dict[str, list[ck.Chunk]], by_episode: bool = False):
    """Whole-log (or per-episode, ``by_episode=True``) arrays of complete episodes."""
    eps = {e: episode_columns(cs, e) for e, cs in chunks.items() if sum(c.n for c in cs)}
    if by_episode:
        return eps
    if not eps:
        return {}
    lengths = [len(d["step"]) for d in eps.values()]
    rows = [{k: v for k, v in d.items() if k not in _PER_EPISODE + ("episode_start",)}
            for d in eps.values()]
    out = _concat(rows, lengths)
    per = _concat([{k: d[k] for k in _PER_EPISODE} for d in eps.values()], [1] * len(eps))
    out.update(per)
    out["episode_index"] = np.repeat(np.arange(len(eps)), lengths)
    out["episode_start"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return out
