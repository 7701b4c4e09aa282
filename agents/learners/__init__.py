"""Learning from interventions: every method behind one interface (``base.Learner``).

=============  ===========================================================================
``hg-dagger``  behaviour cloning on the human-labelled steps (``hg_dagger.HGDagger``)
``thrifty``    the same per bootstrap resample, plus a risk-critic refit
               (``thrifty.Thrifty``)
``pvp``        proxy values +1 human / -1 overridden agent action, reward-free TD, two
               buffers sampled 50/50 (``pvp.PVP``), on a DQN agent
``intent-``    HG-DAgger on the human's intent (wanted acceleration and lane), on an intent
``dagger``     agent (``intent_dagger.IntentDagger``, ``takeover.agents.intent``)
``rlif``       reward -1 on the step before each intervention, 0 elsewhere, off-policy
               Q-learning on the log (``rlif.RLIF``), on a DQN agent
=============  ===========================================================================

Add a method with one module holding one class (``name``, ``agent_kind``, ``start``,
``update``) and one ``LEARNERS.register`` line below. The off-policy starting agent of
``pvp`` / ``rlif`` comes from ``offpolicy.train_dqn``.
"""

from __future__ import annotations

from takeover.agents.learners.base import Learner, human_seconds, intervened, read_episodes
from takeover.agents.learners.hg_dagger import HGDagger
from takeover.agents.learners.intent_dagger import IntentDagger
from takeover.agents.learners.pvp import PVP
from takeover.agents.learners.rlif import RLIF
from takeover.agents.learners.thrifty import Thrifty
from takeover.registry import Registry

LEARNERS: Registry[Learner] = Registry("learner")
LEARNERS.register("hg-dagger", HGDagger)
LEARNERS.register("thrifty", Thrifty)
LEARNERS.register("pvp", PVP)
LEARNERS.register("rlif", RLIF)
LEARNERS.register("intent-dagger", IntentDagger)

__all__ = ["LEARNERS", "HGDagger", "IntentDagger", "Learner", "PVP", "RLIF", "Thrifty", "human_seconds",
           "intervened", "read_episodes"]
