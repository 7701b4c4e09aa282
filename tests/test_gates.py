"""Gates: hysteresis, the budget rule's realised rate, ThriftyDAgger's switch-back, lead time
of the predictive gate, and the baselines."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from takeover.supervisor.gates import (
    GATES,
    BudgetGate,
    GateContext,
    PredictiveGate,
    RandomGate,
    ThresholdGate,
    ThriftyGate,
)
from takeover.types import AgentOutput, AgentOutputs


def ctx(t: float = 0.0, *, action=np.zeros(2), human=None, scores=None, risk=None, extra=None):
    """A one-world batched context."""
    out = AgentOutputs.stack([AgentOutput(action, risk=risk, extra=extra or {})])
    dim = np.size(action)
    h = (np.full((1, dim), np.nan) if human is None
         else np.asarray(human, dtype=np.float64).reshape(1, -1))
    return GateContext(time=np.array([t]), phase=np.zeros(1, np.int8), info={}, out=out,
                       human_action=h, scores={k: np.array([v]) for k, v in (scores or {}).items()},
                       dt=0.1)


def decide(gate, score, c):
    """World 0's decision as plain values."""
    d = gate.decide(np.array([float(score)]), c)
    assert d.request.shape == d.threshold.shape == d.release.shape == (1,)
    return SimpleNamespace(request=bool(d.request[0]), threshold=float(d.threshold[0]),
                           release=bool(d.release[0]))


def run(gate, scores):
    return [decide(gate, s, ctx(0.1 * i)).request for i, s in enumerate(scores)]


def test_registry_names():
    assert set(GATES.names()) >= {"threshold", "budget", "thrifty", "predictive", "human",
                                  "hybrid", "never", "always", "random"}
    with pytest.raises(KeyError, match="Did you mean 'budget'"):
        GATES.get("budjet")


def test_threshold_hysteresis_and_min_dwell():
    gate = ThresholdGate(high=0.6, low=0.3, min_dwell=3)
    got = run(gate, [0.5, 0.7, 0.5, 0.2, 0.2, 0.2, 0.5, 0.65, 0.4, 0.4, 0.4, 0.4])
    # on at 0.7; 0.2 < low only releases once the request has lasted min_dwell=3 steps;
    # 0.5 is between the levels so it stays off; back on above 0.6 and held above low
    assert got == [False, True, True, True, False, False, False, True, True, True, True, True]
    gate.reset(np.arange(1), [None])
    assert decide(gate, 0.5, ctx()).request is False
    assert decide(gate, 0.7, ctx()).threshold == 0.6


def test_threshold_rejects_inverted_levels():
    with pytest.raises(ValueError, match="low=0.9 > high=0.5"):
        ThresholdGate(high=0.5, low=0.9)


def test_budget_gate_hits_target_rate_over_50_episodes_with_drifting_scores():
    rng = np.random.default_rng(0)
    gate = BudgetGate(target_rate=0.05)
    requests = steps = 0
    for ep in range(60):
        scale = 1.0 + 0.3 * math.sin(ep / 5.0)  # the score distribution drifts
        for s in rng.lognormal(0.0, scale, size=300):
            requests += decide(gate, float(s), ctx()).request
            steps += 1
        gate.end_episode(np.arange(1))
    rate = requests / steps
    assert 0.8 * 0.05 <= rate <= 1.2 * 0.05, rate


def test_budget_gate_waits_for_calibration_or_fit():
    gate = BudgetGate(target_rate=0.1)
    assert not any(run(gate, np.linspace(0, 100, 50)))
    assert math.isinf(gate.threshold)
    gate = BudgetGate(target_rate=0.1).fit(np.arange(1000.0))
    assert gate.threshold == pytest.approx(np.quantile(np.arange(1000.0), 0.9))
    with pytest.raises(ValueError, match="target_rate=1.5"):
        BudgetGate(target_rate=1.5)


def test_random_gate_rate_and_seed():
    a = run(RandomGate(rate=0.2, seed=4), np.zeros(5000))
    b = run(RandomGate(rate=0.2, seed=4), np.zeros(5000))
    assert a == b
    assert np.mean(a) == pytest.approx(0.2, abs=0.02)


def test_thrifty_requests_on_risk_and_switches_back_only_when_agent_agrees():
    gate = ThriftyGate(target_rate=0.1, risk_high=0.5, risk_low=0.3, discrepancy=0.1)
    gate.q.threshold = 1.0  # novelty threshold as if calibrated
    assert decide(gate, 0.5, ctx(scores={"q_risk": 0.1})).request is False
    assert decide(gate, 2.0, ctx(scores={"q_risk": 0.1})).request is True  # novel
    assert decide(gate, 0.5, ctx(scores={"q_risk": 0.8})).request is True  # risky
    # human drives: risk low but the agent would do something else -> keep the human
    d = decide(gate, 0.5, ctx(action=np.array([0.0, 0.5]), human=np.array([0.0, -0.5]),
                             scores={"q_risk": 0.1}))
    assert not d.request and not d.release
    d = decide(gate, 0.5, ctx(action=np.array([0.0, 0.5]), human=np.array([0.0, 0.52]),
                             scores={"q_risk": 0.1}))
    assert d.release
    d = decide(gate, 0.5, ctx(action=np.array([0.0, 0.5]), human=np.array([0.0, 0.52]),
                             scores={"q_risk": 0.4}))
    assert not d.release  # risk still above risk_low
    assert decide(gate, 0.5, ctx(risk=0.9)).request  # falls back to AgentOutput.risk
    with pytest.raises(ValueError, match="q_risk"):
        decide(gate, 0.5, ctx())


def test_thrifty_discrete_discrepancy_is_mismatch():
    gate = ThriftyGate(risk_low=0.5, discrepancy=0.5)
    gate.q.threshold = 10.0
    assert decide(gate, 0.0, ctx(action=2, human=2, risk=0.0)).release
    assert not decide(gate, 0.0, ctx(action=2, human=3, risk=0.0)).release


def test_predictive_gate_requests_before_the_score_crosses_the_level():
    ramp = np.linspace(0.0, 1.0, 41)  # rises 0.25 per second at 10 Hz
    pred = run(PredictiveGate(level=0.8, horizon=1.0, window=5), ramp)
    plain = run(ThresholdGate(high=0.8, min_dwell=0), ramp)
    lead_steps = plain.index(True) - pred.index(True)
    assert 8 <= lead_steps <= 12  # about 1 s of lead time
    flat = run(PredictiveGate(level=0.8, horizon=1.0), np.full(30, 0.5))
    assert not any(flat)


def test_human_gate_never_requests_and_hybrid_delegates():
    human = GATES.make("human")
    assert human.accepts_human_initiative
    assert not any(run(human, np.linspace(0, 10, 20)))
    hybrid = GATES.make("hybrid", inner="threshold", high=0.5, min_dwell=0)
    assert hybrid.accepts_human_initiative
    assert run(hybrid, [0.1, 0.9]) == [False, True]
    assert not GATES.make("budget").accepts_human_initiative


def test_never_and_always():
    assert not any(run(GATES.make("never"), [0, 1e9]))
    always = GATES.make("always")
    assert all(run(always, [0, -1]))
    assert not decide(always, 0, ctx()).release


@pytest.mark.parametrize("name", GATES.names())
def test_every_registered_gate_honours_the_protocol(name):
    """Conformance: any gate (with default arguments) decides on any score sequence, returns
    a GateDecision with bools and a float threshold, and survives reset / end_episode."""
    from takeover.supervisor.gates import Gate, GateDecision

    gate = GATES.make(name)
    assert isinstance(gate, Gate)
    rng = np.random.default_rng(0)
    for _ in range(3):
        gate.reset(np.arange(1), [None])
        for i in range(50):
            c = ctx(0.1 * i, human=np.zeros(2) if i % 2 else None, risk=float(rng.random()))
            d = gate.decide(np.array([float(rng.random())]), c)
            assert isinstance(d, GateDecision)
            assert d.request.dtype == bool and d.release.dtype == bool
            assert d.threshold.dtype == np.float64
        gate.end_episode(np.arange(1))


def test_predictive_gate_from_the_risk_critic_horizon():
    gate = PredictiveGate(level=0.5, horizon=3.0, source="critic")
    c = ctx(action=0, risk=0.1, extra={"risk_by_horizon": {1.0: 0.1, 2.0: 0.3, 3.0: 0.7}})
    assert decide(gate, 0.0, c).request  # P(fail within 3 s) = 0.7 > 0.5
    assert not decide(PredictiveGate(level=0.5, horizon=2.2, source="critic"), 0.0, c).request
    with pytest.raises(ValueError, match="risk_by_horizon"):
        decide(gate, 0.0, ctx())


@pytest.mark.parametrize("name", GATES.names())
def test_every_gate_decides_worlds_independently(name):
    """A batch of 5 worlds gives each world the decisions it gets alone (the budget and
    thrifty gates learn from all worlds only when episodes end)."""
    rng = np.random.default_rng(1)
    scores = rng.random((40, 5))
    risks = rng.random((40, 5))
    batch = GATES.make(name)
    batch.bind(5)
    got = []
    for t in range(40):
        out = AgentOutputs.stack([AgentOutput(np.zeros(2), risk=float(r)) for r in risks[t]])
        c = GateContext(time=np.full(5, 0.1 * t), phase=np.zeros(5, np.int8), info={}, out=out,
                        human_action=np.full((5, 2), np.nan), dt=0.1)
        got.append(batch.decide(scores[t], c).request)
    got = np.array(got)
    for w in range(5):
        alone = GATES.make(name)
        alone.bind(1)
        if name == "random":  # streams are keyed by episode seed: give world w's seed
            batch2 = GATES.make(name)
            batch2.bind(5)
            batch2.reset(np.arange(5), [10, 11, 12, 13, 14])
            alone.reset(np.arange(1), [10 + w])
            a = [alone.decide(np.zeros(1), ctx()).request[0] for _ in range(40)]
            b = [batch2.decide(np.zeros(5), ctx()).request[w] for _ in range(40)]
            assert a == b
            continue
        mine = [decide(alone, scores[t, w], ctx(0.1 * t, risk=float(risks[t, w]))).request
                for t in range(40)]
        assert mine == got[:, w].tolist(), w


def test_non_finite_score_asks_for_the_human():
    """The engine passes non-finite scores as +inf: every thresholding gate requests."""
    for name, kw in [("threshold", {}), ("predictive", {}), ("budget", {"initial": 1.0}),
                     ("thrifty", {"initial": 1.0})]:
        g = GATES.make(name, **kw)
        assert decide(g, math.inf, ctx(risk=0.0, scores={"q_risk": 0.0})).request, name
