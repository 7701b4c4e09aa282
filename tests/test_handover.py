"""The handover protocol: every transition, its reason, the timeout, withdrawal, the
hand-back policies and the minimal-risk manoeuvre, and that a missing human input is never
logged as a human action."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.config import ConfigError
from takeover.envs.drivers import ConstantSpeedDriver
from takeover.supervisor.engine import Supervisor
from takeover.supervisor.gates import GATES
from takeover.supervisor.handover import (
    CONTROLLERS,
    Handover,
    HandoverConfig,
    minimal_risk_action,
)
from takeover.types import PHASES, AgentOutput, HumanInput, Phase

REQ = (True, False)  # (request, release) of a gate decision
IDLE = (False, True)
NONE = HumanInput()
TAKE = HumanInput(action=np.zeros(2, np.float32), wants_control=True)


class One:
    """World 0 of a batched Handover, with scalar inputs and outputs."""

    def __init__(self, config=None, **kw):
        self.h = Handover(1, config, **kw)

    @property
    def phase(self):
        return PHASES[int(self.h.phase[0])]

    @property
    def transition(self):
        return self.h.transitions()[0]

    def on_gate(self, decision, t, urgency=0.5):
        v = self.h.on_gate(np.array([decision[0]]), np.array([decision[1]]), np.array([t]),
                           np.array([urgency]))
        return dict(phase=PHASES[int(v.phase[0])], tor_active=bool(v.tor_active[0]),
                    tor_elapsed=float(v.tor_elapsed[0]), urgency=float(v.urgency[0]))

    def on_human(self, hin, t):
        c = self.h.on_human(np.array([hin.wants_control]), np.array([hin.action is not None]),
                            np.array([hin.releases]), np.array([t]))
        return CONTROLLERS[int(c[0])]

    def time_left(self, t):
        return float(self.h.time_left(np.array([t]))[0])


def test_request_response_release_cycle_with_reasons():
    h = One(HandoverConfig(timeout=2.0))
    view = h.on_gate(REQ, 0.0, urgency=0.7)
    assert h.phase is Phase.TOR and h.transition == "gate_request"
    assert view["tor_active"] and view["urgency"] == 0.7 and view["phase"] is Phase.TOR
    assert h.on_human(NONE, 0.0) == "agent"  # the agent drives while the TOR waits
    assert h.time_left(0.5) == pytest.approx(1.5)  # the HUD's countdown to the fallback
    assert h.on_gate(REQ, 0.5)["tor_elapsed"] == 0.5 and h.transition == ""
    assert h.on_human(TAKE, 0.5) == "human"
    assert h.phase is Phase.HUMAN and h.transition == "human_response"
    assert h.h.tor_time[0] == 0.0 and h.h.takeover_time[0] == 0.5
    assert math.isnan(h.time_left(0.6))
    h.on_gate(IDLE, 5.0)  # release="human" (default): the gate's release is not enough
    assert h.phase is Phase.HUMAN
    assert h.on_human(NONE, 5.0) == "human"  # held control: the agent never acts
    assert h.on_human(HumanInput(releases=True), 5.1) == "agent"
    assert h.phase is Phase.AGENT and h.transition == "human_release"


def test_gate_release_respects_min_human_time():
    h = One(HandoverConfig(release="gate", min_human_time=1.0))
    h.on_gate(REQ, 0.0)
    h.on_human(TAKE, 0.0)
    h.on_gate(IDLE, 0.5)
    assert h.phase is Phase.HUMAN  # too early
    h.on_human(TAKE, 0.5)
    h.on_gate(IDLE, 1.0)
    assert h.phase is Phase.AGENT and h.transition == "gate_release"


def test_calm_release_needs_calm_time_in_a_row():
    h = One(HandoverConfig(release="calm", calm_time=1.0, min_human_time=0.0))
    h.on_gate(REQ, 0.0)
    h.on_human(TAKE, 0.0)
    for t, dec in [(0.1, IDLE), (0.5, IDLE), (0.6, REQ), (0.7, IDLE), (1.6, IDLE)]:
        h.on_gate(dec, t)
        assert h.phase is Phase.HUMAN, t  # the gate wanted the human back at 0.6
        h.on_human(TAKE, t)
    h.on_gate(IDLE, 1.7)
    assert h.phase is Phase.AGENT and h.transition == "calm_release"


def test_withdraw_when_the_risk_clears():
    h = One(HandoverConfig(withdraw=True))
    h.on_gate(REQ, 0.0)
    h.on_human(NONE, 0.0)
    h.on_gate(IDLE, 0.1)
    assert h.phase is Phase.AGENT and h.transition == "tor_withdrawn"
    kept = One(HandoverConfig(withdraw=False))
    kept.on_gate(REQ, 0.0)
    kept.on_gate(IDLE, 0.1)
    assert kept.phase is Phase.TOR


def test_timeout_then_fallback_then_late_response():
    h = One(HandoverConfig(timeout=1.0))
    for i in range(10):
        h.on_gate(REQ, 0.1 * i)
        assert h.on_human(NONE, 0.1 * i) == "agent"
    h.on_gate(REQ, 1.0)
    assert h.on_human(NONE, 1.0) == "fallback"
    assert h.phase is Phase.FALLBACK and h.transition == "tor_timeout"
    view = h.on_gate(REQ, 1.5)
    assert view["tor_active"] and view["tor_elapsed"] == pytest.approx(1.5)
    assert h.on_human(NONE, 1.5) == "fallback"
    assert h.on_human(TAKE, 1.6) == "human" and h.transition == "human_response"


def test_human_initiative_only_when_allowed():
    robot = One()
    robot.on_gate(IDLE, 0.0)
    assert robot.on_human(TAKE, 0.0) == "agent" and robot.phase is Phase.AGENT
    hg = One(human_initiative=True)
    hg.on_gate(IDLE, 0.0)
    assert hg.on_human(TAKE, 0.0) == "human" and hg.transition == "human_initiated"
    forced = One(HandoverConfig(human_initiative=True), human_initiative=False)
    forced.on_gate(IDLE, 0.0)
    assert forced.on_human(TAKE, 0.0) == "human"


def test_worlds_are_independent():
    h = Handover(3, HandoverConfig(timeout=1.0))
    h.on_gate(np.array([True, False, True]), np.ones(3, bool), np.zeros(3), np.full(3, 0.5))
    c = h.on_human(np.array([True, False, False]), np.zeros(3, bool), np.zeros(3, bool),
                   np.zeros(3))
    assert [PHASES[p].value for p in h.phase] == ["human", "agent", "tor"]
    assert [CONTROLLERS[x] for x in c] == ["human", "agent", "agent"]
    assert h.transitions() == ["gate_request,human_response", "", "gate_request"]
    h.reset(np.array([0]))
    assert PHASES[h.phase[0]] is Phase.AGENT and PHASES[h.phase[2]] is Phase.TOR


def test_config_is_validated():
    with pytest.raises(ConfigError, match="release"):
        HandoverConfig(release="robot")
    with pytest.raises(ConfigError, match="timeout"):
        HandoverConfig(timeout=-1.0)


def test_standing_command_while_the_human_holds_control():
    """The human took over and then gives no input: their last action holds (Box), the
    agent never acts."""

    class Once:
        def __init__(self):
            self.n = 0

        def reset(self, seed=None):
            self.n = 0

        def act(self, obs, info, env, view):
            self.n += 1
            if view.tor_active and self.n == 3:
                return HumanInput(action=np.array([0.0, -0.5], np.float32), wants_control=True)
            return HumanInput()

    env = gym.make("takeover/Plain-v2")
    sup = Supervisor(env, ConstantAgent(env), {}, GATES.make("always"), Once())
    recs = [r for r, _ in zip(sup.run_episode(0), range(8))]
    assert [r.controller for r in recs[:3]] == ["agent", "agent", "human"]
    assert all(r.controller == "human" and r.human_action is None for r in recs[3:])
    assert all(list(r.action) == [0.0, -0.5] for r in recs[2:])


class ConstantAgent:
    def __init__(self, env):
        self.env = env

    def act(self, obs):
        return AgentOutput(action=ConstantSpeedDriver()(self.env.unwrapped))


def _absent(kind):
    if kind is None:
        return None
    from takeover.supervisor.humans import ScriptedHuman

    return ScriptedHuman("absent")


@pytest.mark.parametrize("human", [None, "absent"])
def test_absent_human_gets_the_minimal_risk_manoeuvre_after_timeout(human):
    env = gym.make("takeover/Plain-v2")
    sup = Supervisor(env, ConstantAgent(env), {}, GATES.make("always"), _absent(human),
                     handover=HandoverConfig(timeout=1.0, fallback_decel=3.0))
    recs = sup.run_episode(seed=3)
    assert recs[0].transition == "gate_request" and recs[0].controller == "agent"
    timeouts = [r for r in recs if "tor_timeout" in r.transition]
    assert len(timeouts) == 1 and timeouts[0].step == 10  # 1 s at 10 Hz
    assert all(r.controller == "fallback" for r in recs[10:])
    assert all(r.controller == "agent" for r in recs[:10])
    assert all(r.human_action is None for r in recs)  # nothing fabricated
    assert all(r.tor_time == 0.0 and np.isnan(r.takeover_time) for r in recs)
    # the world's minimal-risk manoeuvre runs from the timeout on: hazard lights, slow down,
    # pull over (or stop in lane): a safe end, never a success, never a crash
    assert all(r.info["mrm"] for r in recs[11:]) and not any(r.info["mrm"] for r in recs[:10])
    speeds = np.array([r.info["speed"] for r in recs])
    assert speeds[-1] < 0.5 and speeds[-1] < speeds[10]
    assert recs[-1].outcome in ("pulled_over", "stopped_in_lane"), recs[-1].outcome


def test_fallback_on_discrete_env_is_slower():
    env = gym.make("takeover/Plain-v2", action_type="discrete")
    env.reset(seed=0)
    assert minimal_risk_action(env, {}, HandoverConfig()) == 2  # "slower"


def test_fallback_on_foreign_envs():
    cartpole = gym.make("CartPole-v1")
    assert minimal_risk_action(cartpole, {}, HandoverConfig(fallback_action=1)) == 1
    pendulum = gym.make("Pendulum-v1")
    np.testing.assert_array_equal(minimal_risk_action(pendulum, {}, HandoverConfig()), [0.0])
