"""The scripted humans' part of the numba warm-up (``takeover.envs.warmup``).

Why here: the humans' kernels (``batched._act`` and the samplers) live in the supervisor
layer, which the env layer must not import, so the env's ``warm_up`` takes this function as
an argument: ``warm_up(warm_humans)`` compiles the env's and the humans' kernels under one
lock. See ``takeover.envs.warmup`` for the race it prevents.
"""

from __future__ import annotations


def warm_humans() -> None:
    """Run every scripted-human kernel once with each argument type the package passes it:
    the batched humans over a vector env and the per-world human over a single env, for
    both action types, and the takeover- and reaction-time samplers."""
    import numpy as np

    from takeover.envs.highway import HighwayEnv
    from takeover.envs.vector import HighwayVectorEnv
    from takeover.types import HumanView, HumanViews, Phase

    from . import ScriptedHuman, ScriptedHumans, make_params
    from .batched import sample_reaction_times, sample_takeover_times

    for action_type in ("continuous", "discrete"):
        venv = HighwayVectorEnv(2, scenario="mixed", action_type=action_type)
        obs, info = venv.reset(seed=[0, 1])
        humans = ScriptedHumans(2, "average")
        humans.reset(np.arange(2), [0, None])
        for phase in range(4):  # every phase code (the compiled code has every branch)
            views = HumanViews(np.full(2, phase, np.int8), np.array([phase == 1, False]),
                               np.full(2, 0.5), np.full(2, 0.5), np.full(2, 1.0 + phase))
            humans.act(obs, info, venv, views)
        venv.close()

        env = HighwayEnv(scenario="mixed", action_type=action_type)
        obs, info = env.reset(seed=0)
        human = ScriptedHuman("average", seed=0)
        human.act(obs, info, env, HumanView(phase=Phase.TOR, tor_active=True,
                                            tor_elapsed=0.0, urgency=0.0, time=0.0))
        env.close()
    params = make_params("average")
    sample_takeover_times(params, 2)
    sample_reaction_times(params, 2)


__all__ = ["warm_humans"]
