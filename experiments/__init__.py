"""Experiments: configs, runs, sweeps, metrics, statistics and reports.

The last layer: it may import every other one. Modules, in the order data flows:

* ``config``      the typed experiment config (YAML in ``configs/``, CLI overrides);
* ``episodes``    plays one episode of one condition with the real supervisor;
* ``rounds``      supervise -> log -> fine-tune -> evaluate, round after round;
* ``runner``      ``takeover run``: rounds, final evaluation vs baselines, metrics files;
* ``metrics``     every metric, defined once from the per-step log;
* ``stats``       rliable IQM and stratified bootstrap confidence intervals;
* ``plots`` / ``report``  figures and ``report.md`` / ``report.html``;
* ``provenance``  the run folder's config, seeds, git revision, versions and machine;
* ``expect``      ``--expect`` checks and JUnit XML for CI (example workflow in ``ci/``);
* ``sweep``       ``takeover sweep``: resumable grids on a process pool or Ray.
"""
