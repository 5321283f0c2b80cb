"""Held-out reacher scores by target radius: where the reacher-ema checkpoints fail.

Reads ``heldout.json`` (heldout.sh: 30 episodes on seeds 20000-20029 per checkpoint), or
``wmil eval`` JSON files given as ``--eval LABEL=FILE`` (each its own row; their ``seed`` is
the first episode's), finds each episode's target radius (distance from the shoulder) by
resetting the task on its seed, and prints every target's returns for the chosen
checkpoints, sorted by radius, then the episodes per radius band. Also prints the radius and
the final elbow angle of each demo (the expert bends the elbow the way nearer its start).
Writes ``radius.json`` beside ``heldout.json`` (or ``--out``). Usage, from the repo root::

    python bench/reacher-ema/radius.py [BENCH_DIR] [--nets best,best-prior] [--demos F.h5]
    python bench/reacher-ema/radius.py --eval a=A.json --eval b=B.json --out R.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from wmil_core.tasks import make_env

BANDS = ((0.0, 0.1), (0.1, 0.15), (0.15, 0.25))
FAIL = 800.0  # a return below it: the fingertip reached the target late or never


def target_radius(env, seed: int) -> float:
    """Distance of the target from the shoulder axis in the episode of ``seed``."""
    env.reset(seed=seed)
    x, y = env.backend.physics.named.data.geom_xpos["target", :2]
    return float(np.hypot(x, y))


def main() -> None:
    """Print and write the radius breakdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench", nargs="?", default="bench/reacher-ema")
    p.add_argument("--nets", default="best", help="heldout.json columns, comma-separated")
    p.add_argument("--demos", default="", help="demo file: print its radii and elbow angles")
    p.add_argument("--eval", action="append", default=[], metavar="LABEL=FILE",
                   help="a wmil eval JSON instead of heldout.json (repeatable)")
    p.add_argument("--out", default="", help="JSON to write (default: BENCH_DIR/radius.json)")
    args = p.parse_args()
    root = Path(args.bench)
    if args.eval:  # one row per file, all on the same episodes
        evals = dict(e.split("=", 1) for e in args.eval)
        loaded = {k: json.loads(Path(f).read_text()) for k, f in evals.items()}
        first = {d["seed"] for d in loaded.values()}
        if len(first) != 1:
            raise SystemExit(f"--eval files start at different seeds: {sorted(first)}")
        seeds, nets, start = ["eval"], list(loaded), first.pop()
        table = {"eval": {k: d for k, d in loaded.items()}}
    else:
        table = json.loads((root / "heldout.json").read_text())
        seeds = sorted(k for k in table if k.startswith("seed "))
        nets, start = args.nets.split(","), 20000
    env = make_env("dmc/reacher-easy", obs_mode="state")
    n = len(table[seeds[0]][nets[0]]["returns"])
    radii = [target_radius(env, start + i) for i in range(n)]
    out: dict = {"radius": radii, "returns": {}, "bands": {}}
    for net in nets:
        rets = np.array([table[s][net]["returns"] for s in seeds])  # (seeds, episodes)
        out["returns"][net] = rets.tolist()
        print(f"{net}: returns per target ({', '.join(seeds)}), by target radius")
        for i in np.argsort(radii):
            print(f"  r={radii[i]:.3f}  " + "  ".join(f"{r:6.0f}" for r in rets[:, i]))
        for lo, hi in BANDS:
            sel = [i for i, r in enumerate(radii) if lo <= r < hi]
            band = rets[:, sel].ravel()
            row = {"targets": len(sel), "episodes": int(band.size),
                   "return_mean": float(band.mean()), "below_800": int((band < FAIL).sum())}
            out["bands"].setdefault(net, {})[f"[{lo}, {hi})"] = row
            print(f"  radius [{lo}, {hi}): {row['targets']} targets, {row['episodes']} episodes, "
                  f"mean return {row['return_mean']:.0f}, {row['below_800']} below {FAIL:.0f}")
    if args.demos:
        phys = env.backend.physics
        demo = []
        with h5py.File(args.demos, "r") as f:
            for k in sorted(f):
                joints = f[k]["obs"]["joints"][()]
                # the target: the fingertip at the first observed pose plus to_target
                phys.named.data.qpos[["shoulder", "wrist"]] = joints[0, :2]
                phys.forward()
                tip = phys.named.data.geom_xpos["finger", :2]
                r = float(np.hypot(*(tip + f[k]["obs"]["features"][0])))
                demo.append({"episode": k, "radius": r, "final_elbow": float(joints[-1, 1])})
        out["demos"] = demo
        print("demos (radius, final elbow angle):")
        for d in sorted(demo, key=lambda d: d["radius"]):
            print(f"  r={d['radius']:.3f}  elbow {d['final_elbow']:+.2f} rad")
    dest = Path(args.out) if args.out else root / "radius.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
