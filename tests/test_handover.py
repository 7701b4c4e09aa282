"""The handover protocol: every transition, its reason, the timeout and the minimal-risk
manoeuvre, and that a missing human input is never logged as a human action."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import takeover.envs  # noqa: F401  (registers the envs)
from takeover.config import ConfigError
from takeover.envs.drivers import ConstantSpeedDriver
from takeover.supervisor.gates import GATES, GateDecision
from takeover.supervisor.handover import Handover, HandoverConfig, minimal_risk_action
from takeover.supervisor.loop import Supervisor
from takeover.types import AgentOutput, Controller, HumanInput, Phase

REQ = GateDecision(True, 0.5, False)
IDLE = GateDecision(False, 0.5, True)
NONE = HumanInput()
TAKE = HumanInput(action=np.zeros(2, np.float32), wants_control=True)


def test_request_response_release_cycle_with_reasons():
    h = Handover(HandoverConfig(timeout=2.0, handback="human"))
    view = h.on_gate(REQ, 0.0, urgency=0.7)
    assert h.phase is Phase.TOR and h.transition == "gate_request"
    assert view.tor_active and view.urgency == 0.7 and view.phase is Phase.TOR
    assert h.on_human(NONE, 0.0) is Controller.AGENT  # the agent drives while the TOR waits
    h.on_gate(REQ, 0.5)
    assert h.on_gate(REQ, 0.5).tor_elapsed == 0.5 and h.transition == ""
    assert h.on_human(TAKE, 0.5) is Controller.HUMAN
    assert h.phase is Phase.HUMAN and h.transition == "human_response"
    assert h.tor_time == 0.0 and h.takeover_time == 0.5
    h.on_gate(IDLE, 5.0)  # handback="human": the gate's release is not enough
    assert h.phase is Phase.HUMAN
    assert h.on_human(HumanInput(releases=True), 5.0) is Controller.AGENT
    assert h.phase is Phase.AGENT and h.transition == "human_release"


def test_gate_release_respects_min_human_time_and_handback_mode():
    h = Handover(HandoverConfig(handback="gate", min_human_time=1.0))
    h.on_gate(REQ, 0.0)
    h.on_human(TAKE, 0.0)
    h.on_gate(IDLE, 0.5)
    assert h.phase is Phase.HUMAN  # too early
    h.on_human(HumanInput(action=np.zeros(2), releases=True), 0.5)
    assert h.phase is Phase.HUMAN  # handback="gate": the human cannot release
    h.on_gate(IDLE, 1.0)
    assert h.phase is Phase.AGENT and h.transition == "gate_release"


def test_timeout_then_fallback_then_late_response():
    h = Handover(HandoverConfig(timeout=1.0))
    for i in range(10):
        h.on_gate(REQ, 0.1 * i)
        assert h.on_human(NONE, 0.1 * i) is Controller.AGENT
    h.on_gate(REQ, 1.0)
    assert h.on_human(NONE, 1.0) is Controller.FALLBACK
    assert h.phase is Phase.FALLBACK and h.transition == "tor_timeout"
    view = h.on_gate(REQ, 1.5)
    assert view.tor_active and view.tor_elapsed == pytest.approx(1.5)
    assert h.on_human(NONE, 1.5) is Controller.FALLBACK
    assert h.on_human(TAKE, 1.6) is Controller.HUMAN and h.transition == "human_response"


def test_human_initiative_only_when_allowed():
    robot = Handover()
    robot.on_gate(IDLE, 0.0)
    assert robot.on_human(TAKE, 0.0) is Controller.AGENT and robot.phase is Phase.AGENT
    hg = Handover(human_initiative=True)
    hg.on_gate(IDLE, 0.0)
    assert hg.on_human(TAKE, 0.0) is Controller.HUMAN and hg.transition == "human_initiated"
    forced = Handover(HandoverConfig(human_initiative=True), human_initiative=False)
    forced.on_gate(IDLE, 0.0)
    assert forced.on_human(TAKE, 0.0) is Controller.HUMAN


def test_human_in_control_without_action_is_not_a_human_step():
    h = Handover()
    h.on_gate(REQ, 0.0)
    assert h.on_human(HumanInput(wants_control=True), 0.0) is Controller.AGENT
    assert h.phase is Phase.HUMAN


def test_config_is_validated():
    with pytest.raises(ConfigError, match="handback"):
        HandoverConfig(handback="robot")
    with pytest.raises(ConfigError, match="timeout"):
        HandoverConfig(timeout=-1.0)


class ConstantAgent:
    def __init__(self, env):
        self.env = env

    def act(self, obs):
        return AgentOutput(action=ConstantSpeedDriver()(self.env.unwrapped))


def _absent(kind):
    if kind is None:
        return None
    from takeover.supervisor.humans import HUMANS

    return HUMANS.make("absent")


@pytest.mark.parametrize("human", [None, "absent"])
def test_absent_human_gets_the_minimal_risk_manoeuvre_after_timeout(human):
    env = gym.make("takeover/Plain-v1")
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
    speeds = np.array([r.info["speed"] for r in recs])
    # brakes at about 3 m/s^2 to a stop, in lane, without leaving the road
    decel = (speeds[12] - speeds[22]) / 1.0
    assert 2.5 < decel < 3.5
    assert speeds[-1] < 0.5 and not recs[-1].info["offroad"]
    assert len({r.info["lane"] for r in recs}) == 1


def test_fallback_on_discrete_env_is_slower():
    env = gym.make("takeover/Plain-v1", action_type="discrete")
    env.reset(seed=0)
    assert minimal_risk_action(env, {}, HandoverConfig()) == 2  # "slower"


def test_fallback_on_foreign_envs():
    cartpole = gym.make("CartPole-v1")
    assert minimal_risk_action(cartpole, {}, HandoverConfig(fallback_action=1)) == 1
    pendulum = gym.make("Pendulum-v1")
    np.testing.assert_array_equal(minimal_risk_action(pendulum, {}, HandoverConfig()), [0.0])
