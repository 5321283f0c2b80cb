"""The torch-free runtime: bundle validation, observation checks, MPPI identical to torch."""

import dataclasses
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from agent_harness import MODES, TINY, tiny_agent

from wmil_core import planning
from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
from wmil_core.config import from_dict
from wmil_core.export import export_agent
from wmil_core.runtime import (
    Planner,
    PlannerConfig,
    as_noise,
    load_bundle,
    plan,
    planner_flops,
    sample_noise,
    to_actuator,
    trajectory_value,
)
from wmil_core.runtime.flops import mlp_flops

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
META = {"task": "dmc/reacher-easy", "joint_names": ["shoulder", "wrist"],
        "action_low": [-1.0, 0.0], "action_high": [1.0, 4.0]}


@pytest.fixture(scope="module", params=list(MODES))
def exported(request, tmp_path_factory):
    agent = tiny_agent(request.param)
    out = tmp_path_factory.mktemp("bundles") / "b"
    export_agent(agent, out, META, batch_check=8)
    return agent, out


@pytest.fixture(scope="module")
def state_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "state"
    export_agent(tiny_agent("state"), out, META, batch_check=4)
    return out


def random_obs(spec: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {k: (rng.integers(0, 256, s, dtype=np.uint8) if k == "image"
                else rng.standard_normal(s, dtype=np.float32)) for k, s in spec.items()}


# -- torch-free ----------------------------------------------------------------------------------
def test_importing_the_runtime_does_not_import_torch():
    code = ("import sys, wmil_core.runtime; "
            "bad = [m for m in ('torch', 'onnx') if m in sys.modules]; print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_planner_config_is_the_torch_one():
    ours = [(f.name, f.default) for f in dataclasses.fields(PlannerConfig)]
    theirs = [(f.name, f.default) for f in dataclasses.fields(planning.PlannerConfig)]
    assert ours == theirs
    with pytest.raises(ValueError, match="num_elites"):
        PlannerConfig(num_samples=16, num_pi_trajs=2, num_elites=32)


# -- MPPI: the numpy twin of planning.py -----------------------------------------------------------
class Analytic:
    """z' = z + a; Q = -||z + a - goal||^2 - head / 10; pi proposes tanh(eps), log pi = -|eps|."""

    def __init__(self, goal, xp):
        self.goal, self.xp = goal, xp

    def next(self, z, a):
        return z + a

    def pi_sample(self, z, eps):
        if self.xp is np:
            return np.tanh(eps), -np.abs(eps).sum(-1, keepdims=True)
        return torch.tanh(eps), -eps.abs().sum(-1, keepdim=True)

    def _q(self, z, a, heads):
        d = z + a - self.goal
        q = -(d * d).sum(-1)[None] - 0.1 * heads[:, None]  # (K, B)
        return q[..., None]

    def q_heads(self, z, a, heads):
        return self._q(z, a, heads.astype(np.float32))

    def Q_heads(self, z, a, heads):  # noqa: N802 - the torch planner's name
        return self._q(z, a, heads.float())


def test_numpy_mppi_equals_the_torch_mppi_on_an_analytic_model():
    goal = [0.4, -0.2]
    cfg = PlannerConfig(horizon=3, num_samples=64, num_pi_trajs=8, num_elites=8, iterations=3)
    tcfg = planning.PlannerConfig(**dataclasses.asdict(cfg))
    np_model = Analytic(np.array(goal, dtype=np.float32), np)
    t_model = Analytic(torch.tensor(goal), torch)
    gen = torch.Generator().manual_seed(0)
    prev_t = prev_n = None
    for step in range(3):
        noise = planning.sample_noise(tcfg, 2, 5, gen)
        ref = planning.plan(t_model, torch.zeros(2), tcfg, 0.9, 0.01, noise, prev_t,
                            explore=step == 1)
        got = plan(np_model, np.zeros(2, np.float32), cfg, 0.9, 0.01, as_noise(noise), prev_n,
                   explore=step == 1)
        prev_t, prev_n = ref.mean, got.mean
        np.testing.assert_allclose(got.action, ref.action.numpy(), atol=1e-5)
        np.testing.assert_allclose(got.mean, ref.mean.numpy(), atol=1e-5)
        np.testing.assert_allclose(got.std, ref.std.numpy(), atol=1e-5)
        assert got.value == pytest.approx(float(ref.value), abs=1e-4)
    # trajectory_value alone
    z0 = torch.randn(5, 2, generator=gen)
    acts = torch.rand(3, 5, 2, generator=gen) * 2 - 1
    eps = torch.randn(4, 5, 2, generator=gen)
    heads = torch.tensor([[0, 3], [2, 1], [4, 0], [1, 2]])
    ref = planning.trajectory_value(t_model, z0, acts, 0.9, 0.01, eps, heads)
    got = trajectory_value(np_model, z0.numpy(), acts.numpy(), 0.9, 0.01, eps.numpy(),
                           heads.numpy())
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_sample_noise_has_the_torch_shapes():
    cfg = PlannerConfig(horizon=3, num_samples=32, num_pi_trajs=4, num_elites=4, iterations=2)
    ours = sample_noise(cfg, 21, 5, np.random.default_rng(0))  # 21 dims: 2 more iterations
    theirs = planning.sample_noise(planning.PlannerConfig(**dataclasses.asdict(cfg)), 21, 5,
                                   torch.Generator().manual_seed(0))
    for f in dataclasses.fields(ours):
        a, b = getattr(ours, f.name), getattr(theirs, f.name)
        assert a.shape == tuple(b.shape), f.name
        assert a.dtype == (np.int64 if f.name == "heads" else np.float32), f.name
    assert ours.actions.shape[0] == 4
    assert np.all(ours.heads[..., 0] != ours.heads[..., 1])
    assert ours.heads.min() >= 0 and ours.heads.max() < 5 and 0 <= ours.select < 1


# -- the planner on exported bundles ---------------------------------------------------------------
@pytest.mark.parametrize("value_graph", ["fused", "split"])
def test_runtime_and_torch_plan_the_same_actions(exported, value_graph):
    agent, out = exported
    planner = Planner(load_bundle(out), threads=1, value_graph=value_graph)
    assert planner.value_graph == value_graph
    cfg, rng = agent.cfg.planner, np.random.default_rng(0)
    gen = torch.Generator().manual_seed(1)
    prev, actions = None, []
    for step in range(4):  # warm starts, one exploring step
        obs = random_obs(agent.obs_shapes, rng)
        noise = planning.sample_noise(cfg, 2, 2, gen)
        with torch.no_grad():
            z = agent.model.encode(agent.obs_to_tensors(obs))
        ref = planning.plan(agent.model, z[0], cfg, agent.gamma, agent.cfg.beta, noise,
                            prev_mean=prev, explore=step == 2)
        prev = ref.mean
        action = planner.act(obs, t0=step == 0, explore=step == 2, noise=noise)
        assert action.dtype == np.float32 and action.shape == (2,)
        np.testing.assert_allclose(action, ref.action.numpy(), atol=1e-4)
        np.testing.assert_allclose(planner.last.mean, ref.mean.numpy(), atol=1e-4)
        np.testing.assert_allclose(planner.last.std, ref.std.numpy(), atol=1e-4)
        actions.append(action)
    assert np.ptp(np.stack(actions), axis=0).max() > 1e-3  # not a constant planner


@pytest.mark.parametrize("value_graph", ["fused", "split"])
def test_sharded_samples_plan_the_same_actions_on_parallel_sessions(state_bundle, value_graph):
    bundle = load_bundle(state_bundle)
    one = Planner(bundle, threads=1, value_graph=value_graph)
    three = Planner(bundle, threads=1, value_graph=value_graph, shards=3)
    assert three.shards == 3 and len({id(m) for m in three._shard_models}) == 3
    calls = []  # every shard's sessions are used, on more than one thread

    def recording(model_id, run):
        def wrapped(*args):
            calls.append((model_id, threading.get_ident()))
            return run(*args)
        return wrapped

    for m in three._shard_models:
        for name in ("value", "q"):
            m._run[name] = recording(id(m), m._run[name])
    rng = np.random.default_rng(0)
    obs = random_obs({k: v.shape for k, v in bundle.obs_spec.items()}, rng)
    for step in range(3):
        noise = one.sample_noise()
        a1 = one.act(obs, t0=step == 0, noise=noise)
        a3 = three.act(obs, t0=step == 0, noise=noise)
        np.testing.assert_allclose(a3, a1, atol=1e-6)
        np.testing.assert_allclose(three.last.mean, one.last.mean, atol=1e-6)
    assert len({c[0] for c in calls}) == 3 and len({c[1] for c in calls}) >= 2
    with pytest.raises(ValueError, match="shards: must be an integer >= 1"):
        Planner(bundle, threads=1, shards=0)
    for m in Planner(bundle, threads=2).model.sessions.values():  # idle threads sleep
        opts = m.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_act_with_its_own_noise_warm_starts_and_resets(state_bundle):
    bundle = load_bundle(state_bundle)
    # one value graph for both: "auto" picks by timing, and the fused and split graphs agree
    # only to float rounding
    planner = Planner(bundle, threads=1, seed=3, value_graph="fused")
    obs = random_obs({k: v.shape for k, v in bundle.obs_spec.items()}, np.random.default_rng(0))
    a = planner.act(obs, t0=True)
    assert np.all(np.abs(a) <= 1) and planner.prev_mean.shape == (3, 2)
    same = Planner(bundle, threads=1, seed=3, value_graph="fused")
    np.testing.assert_array_equal(same.act(obs, t0=True), a)  # seeded: reproducible
    prev = planner.prev_mean.copy()
    # with fixed noise: the next step warm-starts from the shifted previous mean...
    n = planner.sample_noise()
    b = planner.act(obs, noise=n)
    z = planner.encode(obs)
    cfg, g, beta = planner.cfg, bundle.gamma, bundle.beta
    warm = plan(planner.model, z, cfg, g, beta, n, prev_mean=prev, value_fn=planner._value)
    cold = plan(planner.model, z, cfg, g, beta, n, value_fn=planner._value)
    np.testing.assert_array_equal(b, warm.action)
    np.testing.assert_array_equal(planner.prev_mean, warm.mean)
    assert np.abs(warm.mean - cold.mean).max() > 1e-3  # the warm start changes the result
    # ... and t0 drops it: the same noise then plans as from scratch
    np.testing.assert_array_equal(planner.act(obs, t0=True, noise=n), cold.action)
    np.testing.assert_array_equal(planner.prev_mean, cold.mean)
    planner.reset()
    assert planner.prev_mean is None


def test_a_policy_prior_agent_acts_with_pi(tmp_path):
    agent = tiny_agent("state")
    agent.cfg.mpc = False
    export_agent(agent, tmp_path / "b", META, batch_check=4)
    planner = Planner(load_bundle(tmp_path / "b"), threads=1)
    obs = random_obs(MODES["state"], np.random.default_rng(0))
    with torch.no_grad():
        mean, *_ = agent.model.pi(agent.model.encode(agent.obs_to_tensors(obs)))
    np.testing.assert_allclose(planner.act(obs, t0=True), mean[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(agent.act(obs, t0=True, eval_mode=True), mean[0].numpy())
    assert planner.prev_mean is None and planner.act(obs, explore=True).shape == (2,)


def test_to_actuator_maps_and_clips(state_bundle):
    planner = Planner(load_bundle(state_bundle), threads=1)
    np.testing.assert_allclose(planner.to_actuator(np.array([-1.0, 1.0])), [-1.0, 4.0])
    np.testing.assert_allclose(planner.to_actuator(np.array([0.0, 0.0])), [0.0, 2.0])
    np.testing.assert_allclose(planner.to_actuator(np.array([-3.0, 7.0])), [-1.0, 4.0])
    np.testing.assert_allclose(to_actuator(np.array([0.5]), np.array([0.0]), np.array([2.0])),
                               [1.5])


def test_providers_are_chosen_and_overridable(state_bundle):
    bundle = load_bundle(state_bundle)
    planner = Planner(bundle, threads=1)
    assert planner.providers[-1] == "CPUExecutionProvider"
    # auto: both value computations were timed and the faster one is in use
    times = planner.value_graph_times
    assert set(times) == {"fused", "split"} and min(times, key=times.get) == planner.value_graph
    assert Planner(bundle, providers=["CPUExecutionProvider"], threads=2).providers == [
        "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="providers: 'NoSuchExecutionProvider'"):
        Planner(bundle, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="value_graph: the bundle has no fused value graph"):
        Planner(bundle, config=dataclasses.replace(bundle.planner, horizon=2),
                value_graph="fused")
    # another horizon plans with the split graphs
    other = Planner(bundle, threads=1, config=dataclasses.replace(bundle.planner, horizon=2))
    assert other.value_graph == "split" and other.last is None
    obs = random_obs({k: v.shape for k, v in bundle.obs_spec.items()}, np.random.default_rng(0))
    assert other.act(obs, t0=True).shape == (2,) and other.last.mean.shape == (2, 2)


def _bad_obs(case: str, obs: dict) -> dict:
    obs = dict(obs)
    if case == "missing":
        del obs["joints"]
    elif case == "shape":
        obs["joints"] = np.zeros(5, np.float32)
    elif case == "dtype":
        obs["joints"] = obs["joints"].astype(np.float64)
    elif case == "nan":
        obs["joints"] = obs["joints"].copy()
        obs["joints"][1] = np.nan
    elif case == "inf":
        obs["features"] = np.full(6, np.inf, np.float32)
    elif case == "unexpected":
        obs["image"] = np.zeros((4, 4, 3), np.uint8)
    return obs


@pytest.mark.parametrize("case,key,what", [
    ("missing", "joints", "missing key"), ("shape", "joints", r"shape \(5,\)"),
    ("dtype", "joints", "dtype float64"), ("nan", "joints", "non-finite"),
    ("inf", "features", "non-finite"), ("unexpected", "image", "unexpected key"),
])
def test_act_rejects_bad_observations_naming_the_key(state_bundle, case, key, what):
    bundle = load_bundle(state_bundle)
    planner = Planner(bundle, threads=1)
    obs = random_obs({k: v.shape for k, v in bundle.obs_spec.items()}, np.random.default_rng(0))
    with pytest.raises(ValueError, match=what) as err:
        planner.act(_bad_obs(case, obs))
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)
    assert planner.prev_mean is None  # nothing happened


def test_act_rejects_noise_of_the_wrong_shape(state_bundle):
    bundle = load_bundle(state_bundle)
    planner = Planner(bundle, threads=1)
    obs = random_obs({k: v.shape for k, v in bundle.obs_spec.items()}, np.random.default_rng(0))
    noise = planner.sample_noise()
    noise.value = noise.value[:, :2]
    with pytest.raises(ValueError, match=r"noise.value: shape"):
        planner.act(obs, noise=noise)


# -- bundle validation -----------------------------------------------------------------------------
def _edit_manifest(root: Path, fn) -> None:
    m = json.loads((root / "manifest.json").read_text())
    fn(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _tamper(root: Path) -> None:
    data = bytearray((root / "q.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (root / "q.onnx").write_bytes(bytes(data))


CASES = {
    "tampered graph": (_tamper, r"q\.onnx: sha256 does not match"),
    "missing graph": (lambda r: (r / "pi.onnx").unlink(), r"pi\.onnx: listed in the manifest"),
    "format version": (lambda r: _edit_manifest(r, lambda m: m.update(format_version=2)),
                       "format_version 2, this runtime reads 1"),
    "missing key": (lambda r: _edit_manifest(r, lambda m: m.pop("observation")),
                    "missing key 'observation'"),
    "missing spec": (lambda r: _edit_manifest(r, lambda m: m["observation"].pop("spec")),
                     "missing key 'spec'"),
    "spec dtype": (lambda r: _edit_manifest(
        r, lambda m: m["observation"]["spec"]["joints"].update(dtype="float64")),
        r"observation\.spec\.joints\.dtype is 'float64'"),
    "joints vs names": (lambda r: _edit_manifest(
        r, lambda m: m["observation"].update(joint_names=["a", "b", "c"])),
        r"observation\.spec\.joints\.shape \[4\] is not 2 x 3 joint_names"),
    "unknown key": (lambda r: _edit_manifest(
        r, lambda m: m["observation"]["spec"].update(depth={"shape": [1], "dtype": "float32"})),
        r"observation\.spec\.depth: unknown observation key"),
    "mode mismatch": (lambda r: _edit_manifest(r, lambda m: m.update(obs_mode="pixels")),
                      "do not fit obs_mode 'pixels'"),
    "action bounds": (lambda r: _edit_manifest(r, lambda m: m["action"].update(low=[-1.0])),
                      r"action\.low must be 2 finite numbers"),
    "planner field": (lambda r: _edit_manifest(r, lambda m: m["planner"].pop("horizon")),
                      r"planner\.horizon: missing field"),
    "unlisted graph": (lambda r: _edit_manifest(r, lambda m: m["files"].pop("dynamics.onnx")),
                       r"graphs\.dynamics\.file 'dynamics\.onnx' is not listed in files"),
    "path in files": (lambda r: _edit_manifest(
        r, lambda m: m["files"].update({"../x.onnx": "0"})), "is not a plain file name"),
    "not json": (lambda r: (r / "manifest.json").write_text("{"), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_bundle_refuses_a_bad_bundle_in_one_line(state_bundle, tmp_path, case):
    root = tmp_path / "bundle"
    shutil.copytree(state_bundle, root)
    load_bundle(root)  # the copy is fine
    edit, message = CASES[case]
    edit(root)
    with pytest.raises(ValueError, match=message) as err:
        load_bundle(root)
    assert "\n" not in str(err.value)


def test_load_bundle_reads_the_manifest(state_bundle, tmp_path):
    b = load_bundle(state_bundle / "manifest.json")
    assert b.path == state_bundle and b.name == "state" and b.action_dim == 2
    assert {k: v.shape for k, v in b.obs_spec.items()} == MODES["state"]
    assert b.joint_names == ["shoulder", "wrist"] and b.value_horizon == 3
    assert set(b.graphs) == {"encoder", "dynamics", "q", "pi", "value"}
    with pytest.raises(ValueError, match="no such file"):
        load_bundle(tmp_path)


def test_flops_count_the_layer_shapes():
    assert mlp_flops([2, 3, 4]) == 2 * (2 * 3 + 3 * 4)
    model = {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_enc_layers": 2,
             "num_channels": 8}
    cfg = PlannerConfig(horizon=3, num_samples=32, num_pi_trajs=4, num_elites=4, iterations=2)
    f = planner_flops(model, {"joints": (4,), "features": (6,)}, 2, cfg)
    pi, dyn = mlp_flops([16, 32, 32, 4]), mlp_flops([18, 32, 32, 16])
    q = mlp_flops([18, 32, 32, 1])
    assert f["encoder"] == mlp_flops([10, 32, 16])
    assert f["proposals"] == 4 * (3 * pi + 2 * dyn)
    assert f["iterations"] == 2 * 32 * (3 * dyn + 4 * pi + 12 * q)
    assert f["total"] == f["encoder"] + f["proposals"] + f["iterations"]


@pytest.mark.parametrize("every_head", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_flop_count_matches_torchs_count_of_the_value_graph(shared, every_head):
    """flops.py against torch's FlopCounterMode on the exported value graph's module: one
    MPPI iteration's matrix products, per-sample or with the shared start, the two Q heads
    gathered or unrolled."""
    from torch.utils.flop_counter import FlopCounterMode

    from wmil_core.export import ValueGraph, export_copy

    agent = tiny_agent("state")
    mc = agent.cfg.model
    h, n = 3, 24
    cfg = PlannerConfig(horizon=h, num_samples=n, num_pi_trajs=0, num_elites=4, iterations=1)
    model = {"latent_dim": mc.latent_dim, "mlp_dim": mc.mlp_dim, "enc_dim": mc.enc_dim,
             "num_enc_layers": mc.num_enc_layers, "num_channels": mc.num_channels}
    want = planner_flops(model, MODES["state"], 2, cfg, shared_start=shared)["iterations"]
    graph = ValueGraph(export_copy(agent.model), 0.99, 1e-4, h, shared_start=shared,
                       every_head=every_head).eval()
    z0 = agent.model.encode({k: torch.randn(1, *v) for k, v in MODES["state"].items()}).detach()
    args = (z0 if shared else z0.expand(n, -1), torch.rand(h, n, 2) * 2 - 1,
            torch.randn(h + 1, n, 2), torch.tensor([[0, 1]] * (h + 1)))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        graph(*args)
    assert counter.get_total_flops() == want
    if shared:  # the shared start saves what the docstring says, and the values agree
        plain = planner_flops(model, MODES["state"], 2, cfg)["iterations"]
        assert want < plain
        with torch.no_grad():
            per_sample = ValueGraph(export_copy(agent.model), 0.99, 1e-4, h).eval()
            ref = per_sample(z0.expand(n, -1), *args[1:])
            torch.testing.assert_close(graph(*args), ref, atol=1e-5, rtol=1e-5)


def test_with_settings_overrides_by_node_parameter_name():
    from wmil_core.runtime import PlannerConfig, with_settings

    base = PlannerConfig()
    cfg = with_settings(base, {"samples": 64, "iterations": 0, "horizon": 2})
    assert (cfg.num_samples, cfg.iterations, cfg.horizon) == (64, base.iterations, 2)
    assert with_settings(base, None) is base
    assert with_settings(base, {"max_std": 0.5}).max_std == 0.5  # a float setting stays one
    with pytest.raises(ValueError, match="min_std"):
        with_settings(base, {"max_std": 0.01})  # below min_std
    with pytest.raises(ValueError, match=r"unknown \['elites'\]"):
        with_settings(base, {"elites": 8})
    with pytest.raises(ValueError, match="planner settings"):
        with_settings(base, {"iterations": -1})


def test_make_planner_takes_node_settings_and_shards(state_bundle):
    from wmil.model import make_planner

    planner, manifest = make_planner(str(state_bundle), threads=1,
                                     settings={"samples": 24, "shards": 2})
    assert planner.cfg.num_samples == 24 and planner.shards == 2
    assert manifest["task"] == planner.bundle.manifest["task"]
    planner, _ = make_planner(str(state_bundle), threads=1, settings={"iterations": 1})
    assert planner.shards == 1 and planner.cfg.iterations == 1
    with pytest.raises(ValueError, match="unknown"):
        make_planner(str(state_bundle), settings={"sample": 24})


def test_every_shipped_bundle_loads_and_records_its_evaluation():
    from wmil_core.paths import models_dir

    bundles = sorted(p.parent for p in models_dir().glob("*/manifest.json"))
    assert {b.name for b in bundles} >= {"reacher-easy", "cartpole-swingup"}
    for path in bundles:
        bundle = load_bundle(path)  # hashes, format version and spec checked
        ev = bundle.manifest["evaluation"]
        assert ev["episodes"] >= 10 and np.isfinite(ev["normalized_score"]), path


def test_per_sample_value_graphs_of_older_bundles_still_plan():
    """Bundles exported before the shared start (z0 (N, L); the 10-demo reacher) load as
    ``per_sample`` and their fused graph plans as their split graphs do."""
    from wmil_core.paths import models_dir

    # exported 2026-11-25, shipped as the default until session 9
    bundle = load_bundle(models_dir() / "reacher-easy-10demos")
    assert "start" not in bundle.manifest["graphs"]["value"]
    assert bundle.value_start == "per_sample"
    cfg = dataclasses.replace(bundle.planner, num_samples=32, num_pi_trajs=4, num_elites=8)
    fused = Planner(bundle, threads=1, config=cfg, value_graph="fused")
    split = Planner(bundle, threads=1, config=cfg, value_graph="split")
    obs = random_obs({k: v.shape for k, v in bundle.obs_spec.items()}, np.random.default_rng(1))
    noise = fused.sample_noise()
    np.testing.assert_allclose(fused.act(obs, t0=True, noise=noise),
                               split.act(obs, t0=True, noise=noise), atol=1e-4)
    np.testing.assert_allclose(fused.last.value, split.last.value, rtol=1e-4)


def test_a_bad_value_start_is_refused(state_bundle, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(state_bundle, bad)
    m = json.loads((bad / "manifest.json").read_text())
    assert m["graphs"]["value"]["start"] == "shared"
    m["graphs"]["value"]["start"] = "everywhere"
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="graphs.value.start must be one of"):
        load_bundle(bad)


@pytest.mark.parametrize("shared", [False, True])
def test_unrolled_q_heads_value_what_the_gathered_heads_do_in_either_order(shared):
    """The unrolled value graph (two heads, each a chain of fused operators) against
    ``trajectory_value``: heads named in either order at each step give the same returns."""
    from wmil_core.export import ValueGraph, export_copy

    agent = tiny_agent("state")
    h, n = 3, 16
    model = export_copy(agent.model)
    unrolled = ValueGraph(model, 0.99, 1e-4, h, shared_start=shared, every_head=True).eval()
    z0 = agent.model.encode({k: torch.randn(1, *v) for k, v in MODES["state"].items()}).detach()
    acts, eps = torch.rand(h, n, 2) * 2 - 1, torch.randn(h + 1, n, 2)
    with torch.no_grad():
        values = []
        for order in ([[0, 1]] * (h + 1), [[1, 0], [0, 1], [1, 0], [1, 0]]):
            heads = torch.tensor(order)
            ref = planning.trajectory_value(agent.model.eval(), z0.expand(n, -1), acts, 0.99,
                                            1e-4, eps, heads)
            got = unrolled(z0 if shared else z0.expand(n, -1), acts, eps, heads)
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
            values.append(got)
        assert values[0].std() > 0  # returns that vary between samples
        # the heads differ (tiny_agent's output layers are not zero): the order is moot
        # for min and mean only, not for the heads themselves
        qs = agent.model.Q_heads(z0.expand(n, -1), acts[0], torch.tensor([0, 1]))
        assert (qs[0] - qs[1]).abs().max() > 1e-3
    three = IQMPC(MODES["state"], 2, 50, from_dict(
        IQMPCConfig, {**TINY, "model": {**TINY["model"], "num_q": 3}}))
    with pytest.raises(ValueError, match="needs an ensemble of two Q heads, got 3"):
        ValueGraph(export_copy(three.model), 0.99, 1e-4, h, every_head=True)


def test_value_heads_layout_resolves_and_is_recorded(state_bundle, tmp_path):
    from wmil_core.export import resolve_value_heads

    assert resolve_value_heads("auto", 2) == "unrolled"
    assert resolve_value_heads("auto", 5) == "gathered"
    assert resolve_value_heads("gathered", 2) == "gathered"
    with pytest.raises(ValueError, match="unrolled needs an ensemble of two Q heads, got 5"):
        resolve_value_heads("unrolled", 5)
    with pytest.raises(ValueError, match="must be auto or one of gathered, unrolled"):
        resolve_value_heads("each", 2)
    bundle = load_bundle(state_bundle)
    assert bundle.value_heads == "unrolled"
    # the unread heads input stays declared, so every runtime feeds the same inputs
    import onnxruntime as ort

    sess = ort.InferenceSession(bundle.graphs["value"], providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["z0", "actions", "value_eps", "heads"]
    bad = tmp_path / "bad"
    shutil.copytree(state_bundle, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["graphs"]["value"]["q_heads"] = "some"
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="graphs.value.q_heads must be one of"):
        load_bundle(bad)


def test_profile_graph_sums_kernel_time_per_operator(state_bundle):
    from wmil_core.runtime.profile import profile_graph

    bundle = load_bundle(state_bundle)
    h, n = bundle.value_horizon, 16
    rng = np.random.default_rng(0)
    feeds = {"z0": rng.random((1, bundle.latent_dim), dtype=np.float32),
             "actions": rng.uniform(-1, 1, (h, n, 2)).astype(np.float32),
             "value_eps": rng.standard_normal((h + 1, n, 2), dtype=np.float32),
             "heads": np.tile(np.arange(2, dtype=np.int64), (h + 1, 1))}
    prof = profile_graph(bundle.graphs["value"], feeds, calls=3)
    ops = prof["ops"]
    assert prof["calls"] == 3 and prof["kernel_ms_per_call"] > 0
    assert sum(o["share"] for o in ops.values()) == pytest.approx(1.0)
    assert sum(o["ms_per_call"] for o in ops.values()) == pytest.approx(
        prof["kernel_ms_per_call"])
    # nodes per call, in the shared-start two-head graph: pi (2 normalised hidden layers) at
    # z_0..z_H, d (2 hidden + a normalised output) at H steps, 2 per Q head at H + 1 steps
    assert ops["LayerNormalization"]["nodes"] == 2 * (h + 1) + 3 * h + 2 * 2 * (h + 1)
    times = [o["ms_per_call"] for o in ops.values()]
    assert times == sorted(times, reverse=True)  # largest first
    with pytest.raises(ValueError, match="calls: must be >= 1"):
        profile_graph(bundle.graphs["value"], feeds, calls=0)
