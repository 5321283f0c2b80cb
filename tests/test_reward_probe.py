"""The decoded-reward probe: statistics, alignment of decoded with true rewards, CLI."""

import json

import numpy as np
import pytest

from wmil_core.cli import main
from wmil_core.collect import collect_demos
from wmil_core.reward_probe import correlations, paired_ranking, probe
from wmil_core.tasks.env import make_env


def ep(name, true, dec):
    return {"behaviour": name, "true": np.asarray(true, float), "decoded": np.asarray(dec, float)}


def test_correlations_on_hand_made_episodes():
    eps = [ep("a", [0, 1, 0], [1, 3, 1]), ep("b", [1, 1, 2], [3, 3, 5])]  # decoded = 2 true + 1
    r = correlations(eps)
    assert r["steps"] == 6 and r["episodes"] == 2
    assert r["step_pearson"] == pytest.approx(1.0)
    assert r["behaviours"]["a"]["return_mean"] == 1 and r["behaviours"]["b"]["steps"] == 3
    assert r["behaviours"]["b"]["decoded_return_mean"] == 11
    # returns (2, 4, 6 against 0, -1, -3) ranked the other way round, not linearly
    eps = [ep("a", [1, 1], [0, 0]), ep("a", [2, 2], [-1, 0]), ep("b", [3, 3], [-2, -1])]
    r = correlations(eps)
    assert r["return_spearman"] == pytest.approx(-1.0)
    assert r["return_pearson"] == pytest.approx(-0.98198, abs=1e-4)
    # a constant decoded reward has no correlation to report
    r = correlations([ep("a", [0, 1, 2], [5, 5, 5])])
    assert r["step_pearson"] is None and r["behaviours"]["a"]["step_pearson"] is None
    with pytest.raises(ValueError, match="2 true rewards but 3 decoded"):
        correlations([ep("a", [0, 1], [0, 1, 2])])
    with pytest.raises(ValueError, match="no episodes"):
        correlations([])


class RecordingEnv:
    """The real env, remembering the simulator's rewards of the current episode."""

    def __init__(self, env):
        self.env, self.rewards = env, []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, **kw):
        self.rewards = []
        return self.env.reset(**kw)

    def step(self, a):
        out = self.env.step(a)
        self.rewards.append(out[4]["reward"])
        return out


class OracleAgent:
    """Decodes exactly the simulator's reward, so every correlation must come out as 1."""

    def __init__(self, env):
        self.env = env

    def act(self, obs, t0=False, eval_mode=False):
        return np.zeros(self.env.action_space.shape, np.float32)

    def decode_rewards(self, obs, actions):
        assert len(obs["joints"]) == len(actions) + 1
        return np.asarray(self.env.rewards, np.float32)


def test_probe_pairs_every_transition_with_its_decoded_reward():
    env = RecordingEnv(make_env("dmc/reacher-easy", "state", episode_length=60))
    r = probe(OracleAgent(env), env, "dmc/reacher-easy", episodes=2, seed=3, noise=(0.5,))
    assert list(r["behaviours"]) == ["agent", "expert", "expert+noise0.5", "random"]
    assert all(g["steps"] == 120 and g["episodes"] == 2 for g in r["behaviours"].values())
    assert r["step_pearson"] == pytest.approx(1.0, abs=1e-6)
    assert r["return_pearson"] == pytest.approx(1.0, abs=1e-6)
    assert r["return_spearman"] == pytest.approx(1.0, abs=1e-6)
    # reacher's reward is sparse (0/1): windows where it stays constant count 0, every other
    # window correlates exactly, so the mean is the share of windows where the reward changes
    assert r["window"] == 3 and 0 < r["window_pearson"] < 1
    assert all(0 <= g["window_pearson"] <= 1 + 1e-9 for g in r["behaviours"].values())
    g = r["behaviours"]
    assert g["expert"]["return_mean"] > g["random"]["return_mean"]  # the behaviours differ
    assert [x["seed"] for x in r["returns"][:2]] == [3, 4]
    with pytest.raises(ValueError, match="--episodes"):
        probe(OracleAgent(env), env, "dmc/reacher-easy", episodes=0)
    with pytest.raises(ValueError, match="--noise"):
        probe(OracleAgent(env), env, "dmc/reacher-easy", noise=(-1.0,))


def test_cli_probes_a_tiny_run(tmp_path, capsys):
    demos = tmp_path / "d.h5"
    collect_demos("dmc/reacher-easy", 2, "state", demos, seed=0, progress=False)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        "agent:\n  model: {latent_dim: 16, mlp_dim: 32, enc_dim: 32, num_q: 2}\n"
        "  batch_size: 8\n"
        "  planner: {num_samples: 32, num_pi_trajs: 4, num_elites: 4, iterations: 2}\n"
        "episode_length: 30\nbuffer_size: 500\nthreads: 1\neval_episodes: 1\n")
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--task", "dmc/reacher-easy", "--demos",
                 str(demos), "--steps", "60", "--seed-steps", "30", "--eval-every", "60",
                 "--checkpoint-every", "60", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["bench", "reward-corr", str(run), "--episodes", "2", "--noise", "0.5",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "per episode return: Pearson" in out and "| expert+noise0.5 |" in out
    r = json.loads((run / "reward-corr-60.json").read_text())
    assert r["step"] == 60 and r["steps"] == 4 * 2 * 30 and len(r["returns"]) == 8
    assert r["step_pearson"] is not None and r["window"] == 3  # the run's planning horizon
    # the table prints the JSON's numbers, and the groups agree with the episode list
    for name, g in r["behaviours"].items():
        assert f"| {name} | {g['return_mean']:.1f} | {g['decoded_return_mean']:.1f} |" in out
        mine = [e for e in r["returns"] if e["behaviour"] == name]
        assert len(mine) == g["episodes"] == 2
        assert g["return_mean"] == pytest.approx(np.mean([e["return"] for e in mine]))
        assert g["decoded_return_mean"] == pytest.approx(
            np.mean([e["decoded_return"] for e in mine]), rel=1e-5)
    pr = r["paired"]  # agent and expert on the same two seeds
    assert pr["seeds"] == 2 and [row["seed"] for row in pr["per_seed"]] == [20_000, 20_001]
    assert f"ranks the expert higher on {pr['critic_agrees']} of those" in out
    assert main(["bench", "reward-corr", str(run), "--noise", "a,b"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wmil: error: --noise") and "\n" not in err


def test_paired_ranking_counts_seeds_where_the_critic_prefers_the_better_episode():
    def e(name, seed, true, dec):
        return {**ep(name, true, dec), "seed": seed}

    eps = [e("agent", 1, [0, 0], [5, 5]), e("expert", 1, [1, 1], [1, 1]),  # critic wrong
           e("agent", 2, [0, 0], [0, 0]), e("expert", 2, [1, 1], [2, 2]),  # critic right
           e("agent", 3, [1, 1], [0, 0]), e("expert", 3, [1, 1], [9, 9]),  # a tie: not worse
           e("random", 1, [0, 0], [0, 0]), e("agent", 4, [0, 0], [0, 0])]  # no expert at 4
    r = paired_ranking(eps, margin=0.5)
    assert (r["seeds"], r["agent_worse"], r["critic_agrees"]) == (3, 2, 1)
    assert r["per_seed"][0] == {"seed": 1, "agent_return": 0.0, "expert_return": 2.0,
                                "agent_decoded": 10.0, "expert_decoded": 2.0}
    assert paired_ranking(eps[6:]) is None


def test_window_pearson_matches_numpy_per_window():
    from wmil_core.reward_probe import window_pearson

    rng = np.random.default_rng(0)
    t, d = rng.normal(size=20), rng.normal(size=20)
    w = window_pearson(t, d, 3)
    assert w.shape == (18,)
    for i in (0, 7, 17):
        assert w[i] == pytest.approx(np.corrcoef(t[i:i + 3], d[i:i + 3])[0, 1])
    # rising together in every window: 1, whatever the levels; the other way round: -1
    assert window_pearson(np.arange(6.0), 5 * np.arange(6.0) - 100, 3) == pytest.approx(1.0)
    assert window_pearson(np.arange(6.0), 7 - 2 * np.arange(6.0), 3) == pytest.approx(-1.0)
    # a constant side counts as 0 (the official code's nan_to_num), a short episode as nothing
    assert np.all(window_pearson(np.ones(5), np.arange(5.0), 3) == 0)
    assert window_pearson(np.arange(2.0), np.arange(2.0), 3).shape == (0,)
    with pytest.raises(ValueError, match="window"):
        window_pearson(t, d, 1)
    # pooled over episodes: the mean over all windows; per behaviour likewise
    r = correlations([ep("a", [0, 1, 2, 3], [0, 1, 2, 3]), ep("b", [0, 1, 2], [2, 1, 0])], 3)
    assert r["window"] == 3
    assert r["window_pearson"] == pytest.approx((1 + 1 - 1) / 3)
    assert r["behaviours"]["a"]["window_pearson"] == pytest.approx(1.0)
    assert r["behaviours"]["b"]["window_pearson"] == pytest.approx(-1.0)
    assert correlations([ep("a", [0, 1], [0, 1])])["window_pearson"] is None
