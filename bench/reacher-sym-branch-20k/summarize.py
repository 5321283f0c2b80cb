"""Write curves.json from the branch runs' metrics CSVs: every evaluation, and the means of
the training metrics over 5k-step windows. Usage: python summarize.py [BENCH_DIR]."""

import csv
import json
import sys
from pathlib import Path

import numpy as np

KEYS = ["reward_expert", "reward_behaviour", "chi2_loss", "grad_norm", "q_expert",
        "q_behaviour", "pi_bc_loss", "value_loss", "rank_loss", "rank_accuracy"]


def main(root: Path) -> None:
    """Summarise every run under ``root/runs`` into ``root/curves.json``."""
    out = {}
    for run in sorted(p for p in (root / "runs").iterdir() if (p / "metrics.csv").is_file()):
        rows = list(csv.DictReader(open(run / "metrics.csv")))
        evals = [{"step": int(r["step"]), "normalized_score": float(r["normalized_score"]),
                  "success_rate": float(r["success_rate"]) if r.get("success_rate") else None,
                  # runs with an averaged copy (agent ema) also score the online networks
                  **({"online_normalized_score": float(r["online_normalized_score"])}
                     if r.get("online_normalized_score") else {}),
                  **({"online_success_rate": float(r["online_success_rate"])}
                     if r.get("online_success_rate") else {})}
                 for r in rows if r.get("normalized_score")]
        train = [r for r in rows if r["phase"] == "online" and r.get("grad_norm")]
        windows = []
        for lo in range(0, 100000, 5000):
            w = [r for r in train if lo <= int(r["step"]) < lo + 5000]
            if w:
                windows.append({"steps": [lo, lo + 5000],
                                **{k: float(np.mean([float(r[k]) for r in w if r.get(k)]))
                                   for k in KEYS if any(r.get(k) for r in w)}})
        out[run.name] = {"evaluations": evals, "train_windows_5k_mean": windows,
                         "config_yaml": (run / "config.yaml").read_text()}
    (root / "curves.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent))
