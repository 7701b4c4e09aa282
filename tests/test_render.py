"""Headless rendering: real pixels, the ego and the hazard visible, the HUD hook works."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from takeover.envs import layout as L
from takeover.envs.drivers import IDMDriver
from takeover.envs.render import (
    ACTIVE_OUTLINE,
    CONE_COLOR,
    EGO_COLOR,
    STALLED_COLOR,
    Renderer,
)


def _colour_mask(frame: np.ndarray, color) -> np.ndarray:
    return np.all(frame == np.array(color, dtype=np.uint8), axis=-1)


def _drive_until_hazard(env_id: str, seed: int = 1):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=seed)
    driver = IDMDriver()
    for _ in range(300):
        *_, term, trunc, info = env.step(driver(env.unwrapped))
        if info["hazard_active"] or term or trunc:
            break
    return env, info


def test_rgb_frame_is_a_real_picture_with_the_ego_near_the_centre():
    env = gym.make("takeover/Highway-v2", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (300, 1000, 3) and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 20
    ys, xs = np.nonzero(_colour_mask(frame, EGO_COLOR))
    assert len(xs) > 50, "the ego is not drawn"
    h, w = frame.shape[:2]
    assert 0.25 * w < xs.mean() < 0.75 * w and 0.25 * h < ys.mean() < 0.75 * h
    env.close()


def test_frame_follows_the_ego_and_changes_as_it_drives():
    env = gym.make("takeover/Plain-v2", render_mode="rgb_array")
    env.reset(seed=3)
    first = env.render()
    for _ in range(20):
        env.step(np.array([0.0, 0.5], dtype=np.float32))
    second = env.render()
    assert not np.array_equal(first, second)
    cols = np.nonzero(_colour_mask(second, EGO_COLOR))[1]
    assert abs(cols.mean() - np.nonzero(_colour_mask(first, EGO_COLOR))[1].mean()) < 3
    env.close()


def test_overlay_draws_on_top():
    env = gym.make("takeover/Plain-v2", render_mode="rgb_array")
    env.reset(seed=0)
    seen = []

    def hud(surface, renderer):
        seen.append(renderer.to_screen(float(renderer.veh[0, L.X]), float(renderer.veh[0, L.Y])))
        surface.fill((255, 0, 255), (10, 10, 40, 20))
        renderer.text(surface, "HUD", (60, 10), (255, 255, 0))

    env.unwrapped.overlays.append(hud)
    frame = env.render()
    assert _colour_mask(frame, (255, 0, 255)).sum() == 40 * 20
    assert _colour_mask(frame[0:40, 55:120], (255, 255, 0)).sum() > 10
    # to_screen of the ego centre lands on an ego pixel
    x, y = seen[0]
    assert tuple(frame[y, x]) == EGO_COLOR
    env.close()


@pytest.mark.parametrize("env_id,color", [("takeover/StalledCar-v2", STALLED_COLOR),
                                          ("takeover/LaneClosure-v2", CONE_COLOR)])
def test_static_hazard_is_drawn_and_highlighted_when_active(env_id, color):
    env, info = _drive_until_hazard(env_id)
    assert info["hazard_active"]
    frame = env.render()
    assert _colour_mask(frame, color).sum() > 10, "hazard object not visible"
    assert _colour_mask(frame, ACTIVE_OUTLINE).sum() > 20, "active hazard not highlighted"
    env.close()


def test_human_mode_headless_returns_none_and_close_is_idempotent():
    env = gym.make("takeover/Plain-v2", render_mode="human", duration=1.0)
    env.reset(seed=0)  # renders a frame in human mode
    env.unwrapped._renderer.realtime = False  # no real-time wait inside the test
    assert env.render() is None
    env.close()
    env.close()


def test_renderer_close_twice_and_draw_after_close_errors():
    env = gym.make("takeover/Plain-v2")
    env.reset(seed=0)
    r = Renderer(env.unwrapped.config, "rgb_array")
    assert r.draw(env.unwrapped.vehicles, env.unwrapped.world, "none").shape[2] == 3
    r.close()
    r.close()
    with pytest.raises(RuntimeError, match="closed"):
        r.draw(env.unwrapped.vehicles, env.unwrapped.world, "none")


def test_bad_render_mode_is_refused():
    env = gym.make("takeover/Plain-v2")
    with pytest.raises(ValueError, match="rgb_array"):
        Renderer(env.unwrapped.config, "ascii")
