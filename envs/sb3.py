"""stable-baselines3 ``VecEnv`` view of :class:`~takeover.envs.vector.HighwayVectorEnv`.

SB3 wants a list of per-world info dicts with ``terminal_observation`` and
``TimeLimit.truncated`` on episode ends; Gymnasium's vector API gives dicts of arrays. This
adapter only translates between the two.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from takeover.envs.vector import HighwayVectorEnv, make_vector_env


class SB3VecEnv(VecEnv):
    def __init__(self, venv: HighwayVectorEnv) -> None:
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._seed: int | None = None

    def reset(self):
        obs, infos = self.venv.reset(seed=self._seed)
        self._seed = None
        self.reset_infos = self._split(infos)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, rew, term, trunc, infos = self.venv.step(self._actions)
        done = term | trunc
        out = self._split(infos.get("final_info", infos) if done.any() else infos)
        for i in np.flatnonzero(done):
            out[i]["terminal_observation"] = infos["final_obs"][i]
            out[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
        return obs, rew.astype(np.float32), done, out

    def _split(self, infos: dict[str, Any]) -> list[dict[str, Any]]:
        keys = [k for k in infos if not k.startswith("_") and k not in ("final_obs", "final_info")]
        return [{k: infos[k][i] for k in keys} for i in range(self.num_envs)]

    def seed(self, seed: int | None = None):
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None):
        return [getattr(self.venv, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs):
        return [getattr(self.venv, method_name)(*args, **kwargs)
                for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)


def make_sb3_vec_env(env_id: str, n_envs: int, seed: int | None = None, **kwargs: Any):
    """A stable-baselines3 ``VecEnv`` over :class:`HighwayVectorEnv` (no subprocesses)."""
    venv = SB3VecEnv(make_vector_env(env_id, n_envs, **kwargs))
    if seed is not None:
        venv.seed(seed)
    return venv
