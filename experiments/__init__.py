"""Experiments: configs, runs, sweeps, metrics, statistics and reports."""
