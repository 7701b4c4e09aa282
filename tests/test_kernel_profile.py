"""The kernel's profile measures the real thing (its phase-by-phase stepping is ``env.step``
bit for bit), and ``takeover bench env`` reports what the speed issue asks: ratios against
highway-fast-v0, microseconds per world-step at each size, and the per-phase profile."""

from __future__ import annotations

import numpy as np
import pytest

from takeover.envs.profile import PHASES, PYTHON, profile
from takeover.envs.vector import HighwayVectorEnv


@pytest.mark.parametrize("cfg", [dict(scenario="mixed"),
                                 dict(scenario="lane_closure", action_type="discrete",
                                      substeps=3)])
def test_profiled_steps_equal_env_step_bit_for_bit(cfg):
    n, steps = 6, 120  # long enough for episodes to end and autoreset
    timed, plain = HighwayVectorEnv(n, cfg), HighwayVectorEnv(n, cfg)
    timed.reset(seed=3)
    plain.reset(seed=3)
    discrete = cfg.get("action_type") == "discrete"
    actions = np.ones(n, dtype=np.int64) if discrete else np.zeros((n, 2))
    result = profile(timed, actions, steps)
    ends = 0
    for _ in range(steps):
        *_, term, trunc, _ = plain.step(actions)
        ends += int((term | trunc).sum())
    assert ends > 0
    assert np.array_equal(timed.vehicles, plain.vehicles)
    assert np.array_equal(timed.world, plain.world, equal_nan=True)
    assert np.array_equal(timed._obs, plain._obs)
    assert np.array_equal(timed._rng, plain._rng)  # the same episodes were started
    assert set(result) == {*PHASES, *PYTHON, "dispatch", "total"}
    assert all(v >= 0.0 for v in result.values())
    assert result["total"] == pytest.approx(sum(v for k, v in result.items() if k != "total"))


def test_bench_env_reports_ratios_us_per_world_step_and_profile():
    pytest.importorskip("highway_env")
    from takeover.experiments.benchmarks.env import main

    out = main(seconds=0.02, repeats=1, sizes=(1, 4), profile_steps=3)
    assert out["highway_fast"] > 0.0
    for name in ("single", "batched_1", "batched_4"):
        assert out[name] > 0.0 and out[f"{name}_ratio"] > 0.0
    assert out["batched_1_us_per_world_step"] > 0.0 and out["single_us_per_step"] > 0.0
    assert out["batched_4_matched_ratio"] > 0.0
    assert set(out["profile"]) == {"worlds", *PHASES, *PYTHON, "dispatch", "total"}


@pytest.mark.slow  # compiles a second copy of the kernel (~30 s)
def test_kernel_ab_compares_against_another_checkout_and_checks_the_bits(tmp_path):
    """The A/B runs in a process of its own, so this worker never holds a second kernel."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "envs").mkdir()
    here = Path(__file__).resolve().parents[1] / "envs" / "dynamics.py"
    shutil.copy(here, tmp_path / "envs" / "dynamics.py")  # the same kernel: same bits
    cmd = [sys.executable, "-m", "takeover.experiments.benchmarks.kernel_ab"]
    done = subprocess.run([*cmd, str(tmp_path), "--sizes", "2", "--rounds", "4",
                           "--warmup", "50", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    (res,) = json.loads(done.stdout)
    assert res["bit_identical"]
    assert res["ratio"] > 0.0 and res["world_steps"] == 4 * 200 * 2
    done = subprocess.run([*cmd, str(tmp_path / "nowhere")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode != 0 and "envs/dynamics.py" in done.stderr


def test_kernel_ab_loads_the_reference_only_for_the_comparison(tmp_path):
    """``reference_kernel`` leaves no second ``dynamics`` behind in ``sys.modules``, nor a
    numba cache under the reference checkout (it loads a private copy)."""
    import sys

    from takeover.experiments.benchmarks.kernel_ab import REFERENCE, reference_kernel

    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "dynamics.py").write_text("X = 1\n")
    with reference_kernel(tmp_path) as module:
        assert module.X == 1 and sys.modules[REFERENCE] is module
        assert not module.__file__.startswith(str(tmp_path))  # numba caches the copy elsewhere
    assert REFERENCE not in sys.modules
    with pytest.raises(SystemExit, match="envs/dynamics.py"), reference_kernel(tmp_path / "no"):
        pass
