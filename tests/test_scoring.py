"""One home for the ensemble disagreement and its episode-cluster bootstrap AUROC
(``takeover.agents.scoring``): the three AUROC implementations (shipped-agent manifests,
the learning experiment's rounds, the report's trigger quality) and the two ensemble-KL
copies it replaced gave these numbers on these inputs, and still do.

The pinned values were computed with the replaced code (main 84304ec) on the synthetic
ensemble below. Point AUROCs and KLs are pinned exactly. The trigger-quality path
(``stats.auc_interval``) is the moved code, so its CI is pinned exactly too; the manifests'
and the rounds' CIs came from their own resampling (``rng.integers`` per env / unstratified)
and now come from the one stratified multinomial bootstrap, so theirs are pinned to within
0.005 (measured: at most 0.0032 apart at 300 resamples)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from takeover.agents.risk import failure_labels
from takeover.agents.rollout import Episode
from takeover.agents.scoring import auc_interval, disagreement_auroc, ensemble_kl
from takeover.types import AgentOutputs

ENVS = ["takeover/SuddenBrake-v2", "takeover/CutIn-v2"]


def probs_of(obs: np.ndarray) -> np.ndarray:
    """``(N, 2)`` obs -> ``(N, K=3, n=4)`` member distributions whose disagreement grows
    with ``obs[:, 0]`` (which ramps up before a failure)."""
    x = np.asarray(obs, np.float64)
    k, a = np.arange(3)[None, :, None], np.arange(4)[None, None, :]
    logits = (np.sin(1.3 * a + 0.7 * k * x[:, 0, None, None]) * (1 + x[:, 0, None, None])
              + 0.2 * x[:, 1, None, None] * a)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class FakeEnsemble:
    policies = [0, 1, 2]

    def act_arrays(self, obs: np.ndarray) -> AgentOutputs:
        p = probs_of(obs)
        return AgentOutputs(action=p.mean(1).argmax(-1), probs=p)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return probs_of(obs).mean(1).argmax(-1)


def make_episodes(env_id: str, n: int, seed: int) -> list[Episode]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        steps = int(rng.integers(20, 80))
        failed = bool(rng.random() < 0.4)
        ramp = np.linspace(0, 1, steps) * (2.0 if failed else 0.6)
        obs = np.stack([ramp + 0.5 * rng.standard_normal(steps), rng.standard_normal(steps)], 1)
        out.append(Episode(env_id=env_id, seed=i, reason="", steps=steps, ret=0.0,
                           mean_speed=20.0, hazard=env_id, obs=obs.astype(np.float32),
                           outcome="collision" if failed else "arrived"))
    return out


@pytest.fixture(scope="module")
def per_env() -> dict[str, list[Episode]]:
    return {e: make_episodes(e, 25, 7 + j) for j, e in enumerate(ENVS)}


@pytest.fixture(scope="module")
def flat(per_env) -> list[Episode]:
    return [e for v in per_env.values() for e in v]


def steps_of(flat: list[Episode]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    agent = FakeEnsemble()
    y = np.concatenate([failure_labels(len(e.obs), e.failed, np.array([20]))[:, 0]
                        for e in flat])
    s = np.concatenate([ensemble_kl(agent.act_arrays(e.obs).probs) for e in flat])
    cl = np.concatenate([np.full(len(e.obs), i) for i, e in enumerate(flat)])
    return y, s, cl


def test_ensemble_kl_is_the_one_both_layers_use(flat):
    from takeover.supervisor import estimators

    assert estimators.ensemble_kl is ensemble_kl
    p = FakeEnsemble().act_arrays(flat[0].obs).probs
    # the replaced build_shipped.disagreement and estimators.ensemble_kl (identical bits)
    assert ensemble_kl(p)[:5] == pytest.approx(
        [0.0011134609241767917, 0.004810067580677348, 0.002258923839232332,
         0.005313948290446724, 0.0003175161534556706], rel=1e-12)
    assert float(steps_of(flat)[1].sum()) == pytest.approx(275.9699381330638, rel=1e-12)
    # the supervisor's compiled per-step path reads the same quantity
    est = estimators.ESTIMATORS.get("ensemble")()
    got = est.score_batch(flat[0].obs, AgentOutputs(action=np.zeros(len(p), int), probs=p))
    assert got == pytest.approx(ensemble_kl(p), rel=1e-9, abs=1e-15)


def test_trigger_quality_auroc_is_unchanged(flat):
    y, s, cl = steps_of(flat)
    out = auc_interval(y, s, cl, strata=[e.env_id for e in flat], reps=300, seed=0)
    assert out["auroc"].value == pytest.approx(roc_auc_score(y, s), rel=1e-12)
    assert (out["auroc"].value, out["auroc"].lo, out["auroc"].hi) == pytest.approx(
        (0.9266988812583075, 0.907424772994331, 0.9438772438578131), rel=1e-12)
    assert (out["auprc"].value, out["auprc"].lo, out["auprc"].hi) == pytest.approx(
        (0.7109543948231638, 0.6548372046181213, 0.7532977517465188), rel=1e-12)


def test_rounds_disagreement_auroc_reports_what_it_did(flat):
    iv = disagreement_auroc(FakeEnsemble(), flat, 2.0, reps=300, seed=0)["auroc"]
    # replaced experiments.rounds.disagreement_auroc: 0.926699 [0.908404, 0.942985]
    assert iv.value == pytest.approx(0.9266988812583075, rel=1e-12)
    assert (iv.lo, iv.hi) == pytest.approx((0.9084038317548971, 0.942984685821688), abs=0.005)


def test_manifest_disagreement_auroc_reports_what_it_did(per_env, monkeypatch):
    import takeover.agents.rollout as rollout
    from takeover.agents import build_shipped

    monkeypatch.setattr(rollout, "run_episodes", lambda predict, env_id, seeds, **kw:
                        per_env[env_id])
    got = build_shipped.disagreement_auroc(FakeEnsemble(), ENVS, list(range(25)),
                                           horizon=2.0, reps=300, seed=0)
    before = {"SuddenBrake-v2": [0.9229, 0.8942, 0.9525], "CutIn-v2": [0.9325, 0.9149, 0.953],
              "pooled": [0.9267, 0.9104, 0.9452]}  # the replaced implementation
    assert set(got) == set(before)
    for name, (auroc, lo, hi) in before.items():
        assert got[name][0] == auroc
        assert got[name][1:] == pytest.approx([lo, hi], abs=0.005)


def test_disagreement_auroc_refuses_episodes_without_observations(flat):
    bare = Episode(env_id=ENVS[0], seed=0, reason="", steps=3, ret=0.0, mean_speed=1.0,
                   hazard="x", outcome="arrived")
    with pytest.raises(ValueError, match="keep_obs=True"):
        disagreement_auroc(FakeEnsemble(), [bare], 2.0)
    with pytest.raises(ValueError, match="at least one episode"):
        disagreement_auroc(FakeEnsemble(), [], 2.0)
