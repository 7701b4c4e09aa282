"""The live fleet view, headless: pygame key and mouse events posted into the loop
(``SDL_VIDEODRIVER=dummy``, a fixed clock). A person among the fleet's humans picks a world
(number key or click), drives it, returns to the overview; every world keeps stepping
meanwhile and falls back to its MRM when nobody answers; the recording replays exactly."""

from __future__ import annotations

import numpy as np
import pygame
import pytest
from test_live import _plan, _tap

from takeover.logio import read_log, records_equal
from takeover.supervisor.fleet import FleetConfig
from takeover.supervisor.fleet_view import (
    FleetLive,
    FleetScreen,
    FleetSession,
    FleetViewSettings,
    cell_at,
    grid,
    replay_session,
    settings_of,
)
from takeover.supervisor.gates import GATES, BaseGate, GateDecision
from takeover.supervisor.live import LiveSettings, LoopOptions, comparable
from takeover.supervisor.replay import load_recording

D, U = pygame.KEYDOWN, pygame.KEYUP


@GATES.register("test_fleet_from3")
class From3(BaseGate):
    """Requests in every world from step 3 of its episode on (a hazard that never clears)."""

    name = "test_fleet_from3"

    def bind(self, n: int) -> None:
        self.k = np.full(n, -1, dtype=np.int64)
        super().bind(n)

    def reset(self, worlds, seeds) -> None:
        self.k[worlds] = -1

    def decide(self, score, ctx):
        self.k += 1
        req = self.k >= 3
        return GateDecision(req, np.full(self.n, 0.5), ~req)


def _post(plan):
    def hook(frame: int) -> None:
        for ev in plan.get(frame, []):
            if ev[0] == pygame.MOUSEBUTTONDOWN:
                pygame.event.post(pygame.event.Event(ev[0], pos=ev[1], button=1))
            else:
                pygame.event.post(pygame.event.Event(ev[0], key=ev[1], mod=0, unicode="",
                                                     scancode=0))
    return hook


def _settings(humans=2, worlds=3, **live):
    return FleetViewSettings(
        live=LiveSettings(**{"scenario": "Plain-v2", "agent": "idm", "gate": "test_fleet_from3",
                             "estimator": "ttc", "timeout": 1.0, **live}),
        worlds=worlds, episodes=1, fleet=FleetConfig(num_humans=humans))


def _run(tmp_path, plan, settings, max_frames=600):
    opts = LoopOptions(fixed_clock=True, sound=False, before_frame=_post(plan),
                       max_frames=max_frames, start_screen=False, end_screen=False)
    return FleetSession(settings, 5, opts, log=tmp_path / "log",
                        record=tmp_path / "rec.json").run()


def _by_world(res, n):
    """Records per world: with one episode each, episode k is world k's."""
    eps = {recs[0].episode: recs for recs in res.records}
    names = sorted(eps)
    assert len(names) == n
    return [eps[name] for name in names]


def test_pick_a_world_drive_it_return_and_replay_exactly(tmp_path):
    """'2' puts the person in world 2, SPACE takes over, UP accelerates; Tab returns to the
    overview, which hands world 2 back to its agent; '1' and ESC visit world 1; ESC in the
    overview ends the session. Meanwhile the other worlds step on (the scripted human serves
    one, the third falls back to its MRM), and the recording replays to the same records."""
    plan = _plan(_tap(30, pygame.K_2), _tap(40, pygame.K_SPACE), {50: [(D, pygame.K_UP)],
                                                                  110: [(U, pygame.K_UP)]},
                 _tap(130, pygame.K_TAB), _tap(160, pygame.K_1), _tap(190, pygame.K_ESCAPE),
                 _tap(230, pygame.K_ESCAPE))
    res = _run(tmp_path, plan, _settings())
    assert res.end == "quit"
    assert [w for _, w in res.seats] == [1, -1, 0, -1]
    k_in, k_out = res.seats[0][0], res.seats[1][0]
    worlds = _by_world(res, 3)
    # lockstep: every world stepped the whole session, whichever the person looked at
    assert {len(w) for w in worlds} == {res.steps}
    mine = worlds[1]
    took = next(r.step for r in mine if "human_initiated" in r.transition
                or "human_response" in r.transition)
    assert k_in <= took < k_out
    assert all(r.controller == "human" for r in mine[took:k_out])
    # UP held from frame 50 to 110: the person's throttle reached the world
    assert max(float(r.action[1]) for r in mine[took:k_out]) > 0.5
    # leaving the world hands it back: nobody is left at its wheel
    assert "human_release" in mine[k_out].transition
    assert all(r.controller != "human" for r in mine[k_out:res.seats[2][0]])
    # the others: nobody answered one of them before its 1 s timeout -> the world's MRM
    others = [worlds[0][:res.seats[2][0]], worlds[2]]
    assert any(r.phase == "fallback" and r.info.get("mrm") for w in others for r in w)
    rec = load_recording(tmp_path / "rec.json")
    again = replay_session(rec)
    assert len(again) == len(res.records)
    for a, b in zip(sorted(res.records, key=lambda r: r[0].episode),
                    sorted(again, key=lambda r: r[0].episode), strict=True):
        assert len(a) == len(b)
        assert all(records_equal(comparable(x), comparable(y)) for x, y in zip(a, b))
    # and in the window (keys ignored, seats from the recording)
    opts = LoopOptions(fixed_clock=True, sound=False, start_screen=False, end_screen=False)
    shown = FleetSession(settings_of(rec), 5, opts, recording=rec).run()
    assert shown.end == "quit" and [w for _, w in shown.seats] == [1, -1, 0, -1]
    for a, b in zip(sorted(res.records, key=lambda r: r[0].episode),
                    sorted(shown.records, key=lambda r: r[0].episode), strict=True):
        assert len(a) == len(b)
        assert all(records_equal(comparable(x), comparable(y)) for x, y in zip(a, b))
    disk = read_log(tmp_path / "log")
    assert sum(len(v) for v in disk.episodes.values()) == 3 * res.steps


def test_a_click_on_a_minimap_drives_that_world(tmp_path):
    s = _settings(humans=1, worlds=4)
    x, y, w, h = grid(4, 1000, 460)[3]
    plan = _plan({20: [(pygame.MOUSEBUTTONDOWN, (x + w // 2, y + h // 2))]},
                 _tap(40, pygame.K_SPACE), _tap(80, pygame.K_q))
    res = _run(tmp_path, plan, s, max_frames=200)
    assert [w for _, w in res.seats] == [3]
    worlds = _by_world(res, 4)
    assert any(r.controller == "human" for r in worlds[3])
    assert not any(r.controller == "human" for k in range(3) for r in worlds[k])
    assert res.end == "quit"


def test_the_overview_draws_every_world_and_its_state():
    import takeover.envs  # noqa: F401
    from takeover.envs.render import EGO_COLOR

    live = FleetLive(_settings(humans=1, worlds=5), 5)
    screen = FleetScreen(live, None)
    try:
        for _ in range(20):  # requests from step 3, the 1 s timeout at step 13
            live.step()
        assert {live.state(i).kind for i in range(5)} == {"mrm"}
        surf = screen.overview()
        px = pygame.surfarray.array3d(surf).transpose(1, 0, 2)
        for x, y, w, h in grid(5, 1000, 460):  # the ego in every minimap
            cell = px[y:y + h, x:x + w]
            assert (cell == EGO_COLOR).all(axis=2).any()
        live.seat(2)
        big = pygame.surfarray.array3d(screen.driving()).transpose(1, 0, 2)
        assert (big == EGO_COLOR).all(axis=2).any()  # world 2 full size, camera on its ego
        assert np.array_equal(screen.big.veh, live.venv.vehicles[2])
        assert live.state(2).kind == "mrm" and live.fleet.w_human[2] == 0
    finally:
        screen.close()
        live.close()


def test_grid_cells_tile_the_frame_and_clicks_find_them():
    for n in range(1, 11):
        cells = grid(n, 1000, 460)
        assert len(cells) == n
        for k, (x, y, w, h) in enumerate(cells):
            assert w >= 64 and h >= 64
            assert cell_at(n, 1000, 460, (x + w // 2, y + h // 2)) == k
    assert cell_at(4, 1000, 460, (500, 5)) == -1  # the header


def test_bad_fleet_settings_are_refused_naming_the_fix():
    from takeover.config import ConfigError

    with pytest.raises(ConfigError, match="worlds"):
        _settings(worlds=11)
    with pytest.raises(ConfigError, match="gamepad"):
        _settings(input="gamepad")
    with pytest.raises(ConfigError, match="human model"):
        FleetViewSettings(human="averag")


def test_takeover_drive_fleet_runs_headless_and_refuses_bad_options(tmp_path):
    from typer.testing import CliRunner

    from takeover.cli import app

    run = CliRunner().invoke
    res = run(app, ["drive", "--fleet", "2", "--agent", "idm", "--scenario", "Plain",
                    "--fixed-clock", "--max-frames", "60", "--no-sound", "--record",
                    str(tmp_path / "f.json")])
    assert res.exit_code == 0, res.output
    assert "fleet of 2" in res.output and (tmp_path / "f.json").exists()
    again = run(app, ["drive", "--replay", str(tmp_path / "f.json"), "--fixed-clock",
                      "--no-sound"])
    assert again.exit_code == 0, again.output
    assert again.output.split(";")[0] == res.output.split(";")[0]  # the same arrivals
    for args, word in ((["--humans", "2"], "--fleet"), (["--fleet", "11"], "1..10"),
                       (["--fleet", "2", "--allocation", "fifoo"], "fifo"),
                       (["--replay", str(tmp_path / "f.json"), "--fleet", "3"], "worlds")):
        bad = run(app, ["drive", *args])
        assert bad.exit_code == 2 and word in bad.output, (args, bad.output)


def test_the_demo_gives_a_newcomer_time_and_old_recordings_keep_their_gate():
    """``takeover drive --fleet`` defaults to later hazards, lighter traffic and more warning
    (with the shipped defaults every novice world had crashed within 12 s, 1.1 s after its
    request); a recording made before the warning setting replays with the ttc estimator's
    own 2 s, so it stays exact."""
    from types import SimpleNamespace

    from takeover.config import to_dict
    from takeover.supervisor.fleet_view import DEMO_LIVE, DEMO_WARNING

    s = FleetViewSettings()
    assert s.live.env == DEMO_LIVE["env"] and min(s.live.env["onset"]) >= 12.0
    assert s.live.timeout == DEMO_LIVE["timeout"] > LiveSettings().timeout
    assert s.warning == DEMO_WARNING > 2.0
    old = {k: v for k, v in to_dict(s).items() if k != "warning"}
    assert settings_of(SimpleNamespace(settings=old)).warning == 2.0
    assert settings_of(SimpleNamespace(settings=to_dict(s))).warning == DEMO_WARNING
