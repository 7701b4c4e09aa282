"""``HighwayVectorEnv(threads=T)``: the worlds stepped in ``T`` blocks on numba's threads
give every bit the serial kernel gives, autoresets and queued seeds included (a user trades
nothing for the speed); bad thread counts and buffers without room are refused."""

from __future__ import annotations

import numpy as np
import pytest

from takeover.envs import dynamics as D
from takeover.envs.vector import HighwayVectorEnv

CFG = dict(scenario="mixed", duration=2.0)  # 20 steps: every world ends and autoresets


def _trajectory(threads: int, n: int = 7, steps: int = 70) -> tuple[list[np.ndarray], int]:
    """Every buffer of the batch (its scratch left out) after each of ``steps``
    random-action steps, some worlds' next episodes queued (``set_next_seeds``) and some
    MRMs engaged; and how many episodes ended."""
    env = HighwayVectorEnv(n, CFG, threads=threads)
    env.reset(seed=3)
    b = env._batch
    floats = b.f64.size - b.threads * D._scratch_size(b.p, b.veh.shape[1])[1]
    rng = np.random.default_rng(0)
    out, ended = [], 0
    for k in range(steps):
        if k % 9 == 0:
            env.set_next_seeds([1000 + k, None, 2000 + k])
        if k == 30:
            env.set_mrm(np.arange(n) % 3 == 0)
        env.step(rng.uniform(-1, 1, (n, 2)))
        ended += int(np.count_nonzero(b.ended))
        out += [b.f64[:floats].copy(), b.f32.copy(), b.status.copy(), b.order.copy(),
                b.rank.copy(), b.ended.copy(), b.took.copy(), b.queue.copy(), b.queued.copy()]
    return out, ended


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_worlds_step_the_same_bits_as_the_serial_kernel(threads):
    (serial, ended), (threaded, _) = _trajectory(1), _trajectory(threads)
    assert ended >= 14  # 7 worlds x at least 2 time limits in 70 steps: autoresets ran
    for a, b in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("threads", [0, 8, 1.5, True, "2"])
def test_a_thread_count_outside_one_to_num_envs_is_refused(threads):
    with pytest.raises(ValueError, match=r"threads must be an integer in 1\.\.7 \(at most one per"):
        HighwayVectorEnv(7, CFG, threads=threads)


def test_buffers_without_room_for_every_threads_scratch_are_refused():
    env = HighwayVectorEnv(4, CFG)  # one scratch
    env.reset(seed=0)
    b = env._batch
    b.i64[D.THREADS] = 2  # as if it had two
    with pytest.raises(ValueError, match="without room for the kernels' scratch"):
        D.step_batch_threads(b.f64, b.f32, b.i64, True)
