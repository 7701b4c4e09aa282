"""Run the supervisor on highway-env (``pip install takeover[highway]``).

highway-env's info holds only ``speed`` and ``crashed``. :class:`HighwayEnvAdapter` adds
the ground-truth keys our estimators, counterfactual labels and metrics read, computed from
its road where they exist:

==================  =========================================================================
``time``            ``env.unwrapped.time``, s
``speed``           ego speed, m/s (``info["speed"]``)
``x``, ``y``        ego position, m
``collision``       ``info["crashed"]``
``offroad``         the ego is not on its lane's drivable surface (``vehicle.on_road``)
``ttc``             s to the vehicle ahead in the ego's lane if closing (99 when none)
``headway``         s to that vehicle at the ego's speed (99 when none)
``reason``          ``"collision"`` / ``"offroad"`` / ``"time_limit"`` / ``""``
==================  =========================================================================

It also offers ``minimal_risk_action()`` for the handover's fallback: ``SLOWER`` for
meta-actions, braking at about 3 m/s^2 without steering for continuous actions. highway-env
has no exact snapshot/restore, so counterfactual scoring is not available on it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

TTC_NONE = 99.0


def _require_highway_env() -> None:
    try:
        import highway_env  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the optional extra
        raise ImportError("highway-env is not installed: pip install 'takeover[highway]'") from None


class HighwayEnvAdapter(gym.Wrapper):
    """Adds our ground-truth info keys to a highway-env environment (see module docstring)."""

    def __init__(self, env: gym.Env, fallback_decel: float = 3.0) -> None:
        _require_highway_env()
        super().__init__(env)
        if not hasattr(env.unwrapped, "road") or not hasattr(env.unwrapped, "vehicle"):
            raise TypeError(f"{type(env.unwrapped).__name__} is not a highway-env environment "
                            f"(no road / vehicle)")
        self.fallback_decel = fallback_decel

    @property
    def base(self) -> Any:
        """The highway-env ``AbstractEnv`` under the wrappers (untyped: highway-env ships no
        type information for ``vehicle``, ``road``, ``time``, ``action_type``)."""
        return self.env.unwrapped

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return obs, self._augment(info, False, False)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._augment(info, terminated, truncated)

    def _augment(self, info: dict[str, Any], terminated: bool, truncated: bool) -> dict:
        base = self.base
        ego = base.vehicle
        out = {k: v for k, v in info.items() if np.isscalar(v)}
        ttc, headway = self.ttc_headway()
        collision = bool(getattr(ego, "crashed", info.get("crashed", False)))
        offroad = not bool(ego.on_road)
        reason = ""
        if terminated:
            reason = "collision" if collision else ("offroad" if offroad else "terminated")
        elif truncated:
            reason = "time_limit"
        out.update(time=float(base.time), speed=float(ego.speed), x=float(ego.position[0]),
                   y=float(ego.position[1]), collision=collision, offroad=offroad,
                   ttc=ttc, headway=headway, reason=reason)
        return out

    def ttc_headway(self) -> tuple[float, float]:
        """Time to collision and time headway to the vehicle ahead in the ego's lane."""
        base = self.base
        ego = base.vehicle
        front, _ = base.road.neighbour_vehicles(ego, ego.lane_index)
        if front is None:
            return TTC_NONE, TTC_NONE
        gap = float(ego.lane_distance_to(front)) - 0.5 * (ego.LENGTH + front.LENGTH)
        gap = max(gap, 0.0)
        closing = float(ego.speed) - float(front.speed)
        ttc = gap / closing if closing > 1e-6 else TTC_NONE
        headway = gap / float(ego.speed) if ego.speed > 1e-6 else TTC_NONE
        return min(ttc, TTC_NONE), min(headway, TTC_NONE)

    def minimal_risk_action(self) -> Any:
        """Brake in lane: ``SLOWER`` for meta-actions; ``-decel`` with no steering for
        continuous actions (highway-env's ``[acceleration, steering]`` order)."""
        action_type = self.base.action_type
        indexes = getattr(action_type, "actions_indexes", None)
        if indexes is not None:
            return int(indexes.get("SLOWER", indexes.get("IDLE", 0)))
        space = self.action_space
        assert isinstance(space, gym.spaces.Box), space  # highway-env: Discrete or Box
        a = np.zeros(space.shape, dtype=space.dtype)
        lo, hi = getattr(action_type, "acceleration_range", (-5.0, 5.0))
        a[0] = np.clip(2.0 * (-self.fallback_decel - lo) / (hi - lo) - 1.0, -1.0, 1.0)
        return a


def make_highway_env(env_id: str = "highway-fast-v0", **kwargs: Any) -> HighwayEnvAdapter:
    """``gym.make(env_id, **kwargs)`` of highway-env, wrapped in :class:`HighwayEnvAdapter`."""
    _require_highway_env()
    import highway_env  # noqa: F401  (registers its envs)

    return HighwayEnvAdapter(gym.make(env_id, **kwargs))
