"""The supervisor: uncertainty estimators, takeover gates, the handover protocol, humans,
and the engine that runs them over N worlds at once.

* ``engine``: :class:`~takeover.supervisor.engine.Engine` (N worlds, one decision path over
  arrays), :class:`~takeover.supervisor.engine.Supervisor` (one env, step by step: the live
  drive), :class:`~takeover.supervisor.engine.PerWorldHumans` (any per-world ``Human`` as
  the batched ``takeover.types.Humans``);
* ``estimators`` (``ESTIMATORS``), ``gates`` (``GATES``), ``handover`` (``HandoverConfig``),
  ``counterfactual`` (labels by agent-alone rollouts), ``calibration``, ``adapters``
  (highway-env), ``humans`` (scripted), ``keyboard`` / ``replay`` (people).
"""
