"""Agents: trained policies, ensembles and risk critics that expose their uncertainty.

Example::

    from takeover.agents import load_agent
    agent = load_agent("novice", env=env)   # shipped; refuses an env with other spaces
    out = agent.act(obs)                    # AgentOutput: action, probs, risk, ...

Shipped names: ``novice``, ``novice-ensemble``, ``novice-ppo-ensemble`` (see
``takeover.agents.shipped``, built by ``takeover.agents.build_shipped``).

``load_agent`` also takes a checkpoint directory written by ``save_agent`` / ``takeover
train``, or an SB3 ``.zip`` with ``trust_sb3_zip=True`` (zips hold pickled code).
"""

from __future__ import annotations

from takeover.agents.checkpoint import (
    CheckpointError,
    check_spaces,
    load_agent,
    load_checkpoint,
    save_agent,
)
from takeover.agents.ensemble import EnsemblePolicy
from takeover.agents.policy import EnsembleAgent, PolicyAgent
from takeover.agents.risk import RiskCritic, RiskSpec, collect_rollouts, fit_risk

__all__ = [
    "CheckpointError",
    "EnsembleAgent",
    "EnsemblePolicy",
    "PolicyAgent",
    "RiskCritic",
    "RiskSpec",
    "check_spaces",
    "collect_rollouts",
    "fit_risk",
    "load_agent",
    "load_checkpoint",
    "save_agent",
]
