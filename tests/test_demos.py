"""Demo datasets: bit-exact round trip, atomic writes, and one clear error per bad input."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from wmil_core.collect import collect_demos
from wmil_core.demos import DatasetError, DemoWriter, Episode, load_demos

SPEC = {
    "joints": {"shape": [4], "dtype": "float32"},
    "image": {"shape": [8, 8, 6], "dtype": "uint8"},
}


def make_episode(rng: np.random.Generator, t: int = 5) -> Episode:
    return Episode(
        obs={
            "joints": rng.standard_normal((t + 1, 4)).astype(np.float32),
            "image": rng.integers(0, 256, (t + 1, 8, 8, 6), dtype=np.uint8),
        },
        actions=rng.uniform(-1, 1, (t, 2)).astype(np.float32),
        rewards=rng.uniform(0, 1, t).astype(np.float32),
        success=bool(rng.integers(2)),
    )


def write(path: Path, episodes: list[Episode], task: str = "dmc/reacher-easy") -> Path:
    with DemoWriter(path, task, "pixels+joints", SPEC, 2, ["shoulder", "wrist"],
                    {"name": "test"}) as w:
        for ep in episodes:
            w.add_episode(ep)
    return path


def test_round_trip_is_bit_exact(tmp_path: Path):
    rng = np.random.default_rng(0)
    eps = [make_episode(rng, t) for t in (5, 3, 7)]
    ds = load_demos(write(tmp_path / "d.h5", eps), task="dmc/reacher-easy",
                    obs_spec=SPEC, action_dim=2)
    assert ds.task == "dmc/reacher-easy" and ds.joint_names == ["shoulder", "wrist"]
    assert len(ds.episodes) == 3 and ds.num_steps == 15
    for a, b in zip(eps, ds.episodes):
        for k in SPEC:
            assert a.obs[k].dtype == b.obs[k].dtype
            assert np.array_equal(a.obs[k], b.obs[k])
        assert np.array_equal(a.actions, b.actions)
        assert np.array_equal(a.rewards, b.rewards)
        assert a.success == b.success
    with h5py.File(tmp_path / "d.h5") as f:  # images are chunked per frame and compressed
        img = f["episode_000000/obs/image"]
        assert img.chunks == (1, 8, 8, 6) and img.compression == "gzip"


def test_collect_writes_loadable_state_and_pixel_files(tmp_path: Path):
    out = tmp_path / "r.h5"
    stats = collect_demos("dmc/reacher-easy", 2, "state", out, seed=5, expert="random",
                          progress=False)
    ds = load_demos(out, task="dmc/reacher-easy")
    assert ds.num_steps == 1000 and stats.steps == 1000
    assert np.isclose(ds.summary()["return_mean"], stats.return_mean, atol=1e-3)
    assert ds.obs_spec["joints"]["shape"] == [4]
    # the same seed gives the same file contents
    collect_demos("dmc/reacher-easy", 2, "state", tmp_path / "s.h5", seed=5, expert="random",
                  progress=False)
    again = load_demos(tmp_path / "s.h5")
    assert np.array_equal(ds.episodes[1].actions, again.episodes[1].actions)
    assert np.array_equal(ds.episodes[1].obs["features"], again.episodes[1].obs["features"])

    pix = tmp_path / "p.h5"
    collect_demos("jaco/reach-site", 1, "pixels+joints", pix, seed=0, expert="random",
                  progress=False)
    ep = load_demos(pix, task="jaco/reach-site").episodes[0]
    assert ep.obs["image"].shape == (251, 64, 64, 9) and ep.obs["joints"].shape == (251, 12)


def test_interrupted_collection_leaves_nothing(tmp_path: Path, monkeypatch):
    import wmil_core.collect as collect

    calls = {"n": 0}
    real = collect.rollout

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(collect, "rollout", flaky)
    out = tmp_path / "demo.h5"
    out.write_bytes(b"previous")  # an older file by that name is not damaged either
    with pytest.raises(KeyboardInterrupt):
        collect.collect_demos("dmc/reacher-easy", 3, "state", out, expert="random",
                              progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.h5"]
    assert out.read_bytes() == b"previous"


def _mutate(path: Path, fn) -> Path:
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


@pytest.mark.parametrize(
    "breaker, message",
    [
        (lambda f: f.attrs.__setitem__("format_version", 99), "format version 99"),
        (lambda f: f.attrs.__delitem__("obs_spec"), "missing attribute 'obs_spec'"),
        (lambda f: f.__delitem__("episode_000001/obs/joints"), "missing observation 'joints'"),
        (lambda f: f.__delitem__("episode_000000/actions"), "missing 'actions'"),
        (lambda f: (f.__delitem__("episode_000000/obs/joints"),
                    f.create_dataset("episode_000000/obs/joints", data=np.zeros((6, 5), "f4"))),
         r"obs/joints has shape \(6, 5\), expected \(6, 4\)"),
        (lambda f: (f.__delitem__("episode_000000/obs/joints"),
                    f.create_dataset("episode_000000/obs/joints", data=np.zeros((6, 4), "f8"))),
         "obs/joints has dtype float64"),
        (lambda f: f["episode_000000/obs/joints"].__setitem__((2, 1), np.nan),
         "obs/joints holds NaN"),
        (lambda f: f["episode_000001/actions"].__setitem__((0, 0), np.inf),
         "actions hold NaN or infinite"),
        (lambda f: [f.__delitem__(k) for k in list(f.keys())], "declares 2 episodes but holds 0"),
        (lambda f: f.attrs.__setitem__("obs_spec", json.dumps({"pose": SPEC["joints"]})),
         "'pose' is not one of"),
    ],
)
def test_bad_files_get_one_clear_error(tmp_path: Path, breaker, message):
    rng = np.random.default_rng(1)
    path = _mutate(write(tmp_path / "d.h5", [make_episode(rng), make_episode(rng)]), breaker)
    with pytest.raises(DatasetError, match=message) as info:
        load_demos(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_empty_missing_truncated_and_other_task(tmp_path: Path):
    with pytest.raises(DatasetError, match="no such file"):
        load_demos(tmp_path / "nope.h5")
    rng = np.random.default_rng(2)
    path = write(tmp_path / "d.h5", [make_episode(rng)])
    with pytest.raises(DatasetError, match="recorded for task 'dmc/reacher-easy', not 'jaco"):
        load_demos(path, task="jaco/reach-site")
    with pytest.raises(DatasetError, match="does not match the task"):
        load_demos(path, obs_spec={"joints": SPEC["joints"]})
    with pytest.raises(DatasetError, match="action size 2, the task has 9"):
        load_demos(path, action_dim=9)
    data = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_demos(tmp_path / "cut.h5")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        for k, v in {"format_version": 1, "task": "t", "obs_mode": "state", "action_dim": 2,
                     "obs_spec": json.dumps(SPEC), "joint_names": "[]", "expert": "{}"}.items():
            f.attrs[k] = v
    with pytest.raises(DatasetError, match="has no episodes"):
        load_demos(tmp_path / "empty.h5")


def test_writer_refuses_bad_episodes_and_empty_files(tmp_path: Path):
    rng = np.random.default_rng(3)
    ep = make_episode(rng)
    ep.actions = ep.actions.astype(np.float64)
    with pytest.raises(DatasetError, match="actions must be float32"):
        write(tmp_path / "a.h5", [ep])
    with pytest.raises(DatasetError, match="no episodes to write"):
        write(tmp_path / "b.h5", [])
    assert list(tmp_path.iterdir()) == []


def test_cli_collect_with_image_settings_and_info(tmp_path: Path, capsys):
    from wmil_core.cli import main

    out = tmp_path / "p.h5"
    assert main(["demos", "collect", "--task", "dmc/reacher-easy", "--episodes", "1", "--obs",
                 "pixels", "--image-size", "32", "--frames", "2", "--expert", "random",
                 "--out", str(out)]) == 0
    ds = load_demos(out)
    assert ds.obs_spec == {"image": {"shape": [32, 32, 6], "dtype": "uint8"}}
    assert main(["demos", "info", str(out)]) == 0
    assert "valid" in capsys.readouterr().out
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    assert main(["demos", "info", str(tmp_path / "bad.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "truncated or corrupt" in err
