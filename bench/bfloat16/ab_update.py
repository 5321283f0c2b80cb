"""A float32 and a bfloat16 IQ-MPC agent (tdmpc2-1m, batch 128 + 128), same weights and
batches, alternating: medians of update and plan times and of their paired ratios.

Usage: python bench/bfloat16/ab_update.py  (session 16 ran it at e15f535 and at 17bac9b to
see what the LayerNorm-Mish dtype change bought, beside two training runs)
"""

import time

import numpy as np
import torch

from wmil_core.agents.iqmpc import IQMPC
from wmil_core.buffer import Batch
from wmil_core.presets import agent_config

if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    h, b, obs, a_dim = 3, 128, {"joints": (4,), "features": (2,)}, 2

    def agent(precision: str) -> IQMPC:
        cfg = agent_config("tdmpc2-1m", {"batch_size": b, "planner": {"horizon": h},
                                         "precision": precision})
        return IQMPC(obs, a_dim, 500, cfg, seed=0)

    def batch() -> Batch:
        o = {k: torch.from_numpy(rng.standard_normal((h + 1, b, *s)).astype(np.float32))
             for k, s in obs.items()}
        act = torch.from_numpy(rng.uniform(-1, 1, (h, b, a_dim)).astype(np.float32))
        return Batch(o, act, torch.zeros(h, b, 1))

    a32, a16 = agent("float32"), agent("bfloat16")
    a16.model.load_state_dict(a32.model.state_dict())
    batches = [(batch(), batch()) for _ in range(4)]
    ob = {k: np.zeros(s, np.float32) for k, s in obs.items()}
    for name, fn, n in [("update", lambda ag, i: ag.update(*batches[i % 4]), 20),
                        ("plan", lambda ag, i: ag.act(ob, t0=True, eval_mode=True), 10)]:
        for i in range(5):
            fn(a32, i), fn(a16, i)
        pairs = []
        for i in range(n):
            t = time.perf_counter()
            fn(a32, i)
            t32 = time.perf_counter() - t
            t = time.perf_counter()
            fn(a16, i)
            pairs.append((t32, time.perf_counter() - t))
        r = np.array(pairs)
        print(f"{name}: float32 p50 {1e3 * np.median(r[:, 0]):.1f} ms, bfloat16 p50 "
              f"{1e3 * np.median(r[:, 1]):.1f} ms, float32/bfloat16 "
              f"{np.median(r[:, 0] / r[:, 1]):.2f}x (median of paired ratios)")
