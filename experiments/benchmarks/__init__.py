"""Benchmark scripts (speed is measured as ratios against a reference in the same run)."""
