"""How an episode ends: the outcome names every layer reports and counts.

=================  ===========================================================  =========
outcome            the episode's last step                                      ends by
=================  ===========================================================  =========
arrived            the ego reached the route's end (``route_length`` m): the    terminated
                   only success
collision          the ego touched another vehicle, a stalled car or a cone     terminated
off_road           the ego's centre left the paved road (shoulder included)     terminated
stopped            the ego stood (< 0.5 m/s) in a live lane for ``stop_grace``   terminated
                   s while the lane ahead was free for 30 m, not in a
                   minimal-risk manoeuvre: stopping on a free highway
pulled_over        the minimal-risk manoeuvre ended at rest on the hard         terminated
                   shoulder
stopped_in_lane    the minimal-risk manoeuvre ended at rest in a live lane      terminated
                   (no gap to reach the shoulder)
timeout            ``duration`` s passed without arriving: a failure to         truncated
                   deliver
=================  ===========================================================  =========

On every other step ``info["outcome"]`` is ``""``.
"""

from __future__ import annotations

from takeover.envs.layout import STATUS_OUTCOMES

OUTCOMES = ("arrived", "collision", "off_road", "stopped", "pulled_over", "stopped_in_lane",
            "timeout")
SUCCESS_OUTCOMES = ("arrived",)
SAFE_OUTCOMES = tuple(o for o in OUTCOMES if o not in ("collision", "off_road"))
MRM_OUTCOMES = ("pulled_over", "stopped_in_lane")
"""Outcomes of a minimal-risk manoeuvre: safe, never a success."""

LEGACY_REASON = {"collision": "collision", "off_road": "offroad", "timeout": "time_limit"}
"""``info["reason"]`` (v0's key, kept one version for old callers): the outcome, with v0's
spellings for the three outcomes v0 had."""

STATUS_NAMES = (*STATUS_OUTCOMES, "timeout")
"""Outcome by kernel status code, with ``timeout`` (decided by the env) as the last code."""
TIMEOUT_STATUS = len(STATUS_OUTCOMES)

assert set(STATUS_NAMES[1:]) == set(OUTCOMES)


def reason(outcome: str) -> str:
    """v0's ``info["reason"]`` for an outcome."""
    return LEGACY_REASON.get(outcome, outcome)
