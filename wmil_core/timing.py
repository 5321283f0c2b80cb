"""Latency summaries shared by the benchmarks (numpy only, cheap to import)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latency_stats(ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean (milliseconds) and the count of a list of timings."""
    a = np.asarray(ms, dtype=float)
    return {"p50_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(a.size)}


def paired_ratios(ref: Sequence[float], other: Sequence[float]) -> dict[str, float]:
    """``ref / other`` as the ratio of the medians and as the median of per-pair ratios.

    Pairs are timings taken back to back (alternating), so the paired median is robust to
    load changes that hit both alike.
    """
    return {"of_medians": float(np.median(ref) / np.median(other)),
            "median_paired": float(np.median(np.asarray(ref) / np.asarray(other)))}
