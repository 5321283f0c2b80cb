"""Latency summaries shared by the benchmarks and the training clock (numpy only, cheap to
import)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

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


class TrainingClock:
    """Wall time of a training run summed over its resumed segments.

    Work lost to a kill after the last checkpoint is not counted (it is redone).
    """

    def __init__(self) -> None:
        self.before = 0.0  # seconds of the earlier segments (from the checkpoint)
        self._t0: float | None = None

    def start(self) -> None:
        """This segment starts now."""
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training so far."""
        return self.before + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def restore(self, state: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
        """Take the earlier segments' time from a checkpoint ``state``; checkpoints written
        before it was kept fall back on the last evaluation's ``wall_s``."""
        last = history[-1].get("wall_s", 0.0) if history else 0.0
        self.before = float(state.get("wall_s", last))
