"""The behaviour buffer's persistence: a saved buffer restores exactly, and may grow on resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wmil_core.buffer import EpisodeBuffer

SPEC = {"joints": {"shape": [2], "dtype": "float32"}}


def episode(t: int, value: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    obs = {"joints": np.full((t + 1, 2), value, np.float32)}
    return obs, np.full((t, 1), value / 10, np.float32)


def filled(capacity: int, episodes: int, t: int = 4) -> EpisodeBuffer:
    buf = EpisodeBuffer(SPEC, 1, capacity, 2)
    for i in range(episodes):
        buf.add_episode(*episode(t, float(i + 1)))
    return buf


def test_larger_buffer_restores_an_unwrapped_save_and_keeps_filling(tmp_path: Path):
    small = filled(capacity=12, episodes=2)  # 10 of 12 rows used, never wrapped
    small.save(tmp_path / "b.npz")
    big = EpisodeBuffer(SPEC, 1, 30, 2)
    big.load(tmp_path / "b.npz")
    assert (big.pos, big.num_episodes, big.num_steps, len(big)) == (10, 2, 8, 10)
    np.testing.assert_array_equal(big.obs["joints"][:10], small.obs["joints"][:10])
    assert big.num_windows == small.num_windows == 2 * 3
    # the room gained is used: where the small buffer would have wrapped, this one appends
    big.add_episode(*episode(4, 3.0))
    small.add_episode(*episode(4, 3.0))
    assert big.pos == 15 and len(big) == 15  # all three episodes
    assert small.pos == 5 and len(small) == 10  # the first episode was overwritten
    values = {float(v) for v in big.sample(200, np.random.default_rng(0)).obs["joints"][0, :, 0]}
    assert values == {1.0, 2.0, 3.0}


def test_wrapped_or_smaller_or_other_horizon_is_refused(tmp_path: Path):
    wrapped = filled(capacity=12, episodes=3)  # the third episode wrapped to row 0
    assert wrapped.pos == 5
    wrapped.save(tmp_path / "w.npz")
    with pytest.raises(ValueError, match="capacity/horizon 12/2 differ from 30/2"):
        EpisodeBuffer(SPEC, 1, 30, 2).load(tmp_path / "w.npz")
    filled(capacity=12, episodes=1).save(tmp_path / "s.npz")
    with pytest.raises(ValueError, match="differ from 8/2"):
        EpisodeBuffer(SPEC, 1, 8, 2).load(tmp_path / "s.npz")
    with pytest.raises(ValueError, match="differ from 30/3"):
        EpisodeBuffer(SPEC, 1, 30, 3).load(tmp_path / "s.npz")


def test_recent_fraction_draws_that_share_from_the_latest_episodes_only():
    buf = filled(capacity=200, episodes=10)  # episode i holds the value i + 1 everywhere
    rng = np.random.default_rng(0)
    b = buf.sample(400, rng, recent_fraction=0.25, recent_episodes=2)
    first = b.obs["joints"][0, :, 0].numpy()
    assert set(first[:100]) == {9.0, 10.0}  # the latest two episodes only
    rest = first[100:]
    assert set(rest) == {float(i) for i in range(1, 11)}  # uniform over all ten
    assert abs((rest >= 9).mean() - 0.2) < 0.08
    # off (the default) and a window of every episode: uniform
    assert set(buf.sample(400, rng).obs["joints"][0, :100, 0].numpy()) == set(rest)
    # a window wider than the buffer reaches every episode
    wide = buf.sample(400, rng, recent_fraction=1.0, recent_episodes=50)
    assert set(wide.obs["joints"][0, :, 0].numpy()) == set(rest)


def test_recent_window_after_wrapping_keeps_to_stored_episodes():
    buf = filled(capacity=20, episodes=7)  # 5 rows each: only the latest four fit
    b = buf.sample(200, np.random.default_rng(1), recent_fraction=0.5, recent_episodes=2)
    first = b.obs["joints"][0, :, 0].numpy()
    assert set(first[:100]) == {6.0, 7.0}
    assert set(first[100:]) <= {4.0, 5.0, 6.0, 7.0}
