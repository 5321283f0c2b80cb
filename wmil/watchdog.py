"""The planner's safety watchdog and timing statistics, as pure functions (no rclpy).

The planner node keeps the latest sample of every input with its receive time. Before each
tick it asks :func:`input_problem` whether the model may run; if not, it publishes
:func:`safe_command` and lets :class:`Watchdog` decide what to say (at most once a period).
Times are seconds on one monotonic clock chosen by the caller.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

SAFE_MODES = ("zeros", "hold")


@dataclasses.dataclass(frozen=True)
class InputSample:
    """The latest message of one input, converted.

    Attributes:
        value: the observation array, or None when the message could not be used.
        received: receive time (s, the caller's monotonic clock).
        stamp: the message's header stamp (s), where it has one.
        error: why the message could not be used (None: it could).
    """

    value: np.ndarray | None
    received: float
    stamp: float | None = None
    error: str | None = None


def input_problem(samples: Mapping[str, InputSample | None], required: Sequence[str],
                  now: float, stale_timeout: float) -> str | None:
    """Why the model must not run on ``samples`` now, or None when every input is usable.

    An input is unusable when it never arrived, its last message could not be converted,
    it is older than ``stale_timeout`` or holds a non-finite value. The first problem found,
    in the order of ``required``, is named.
    """
    for key in required:
        s = samples.get(key)
        if s is None:
            return f"no {key} received yet"
        if s.error is not None:
            return f"{key}: {s.error}"
        if s.value is None:
            return f"{key}: no usable value"
        age = now - s.received
        if age > stale_timeout:
            return f"{key} is stale ({age:.2f} s old, limit {stale_timeout:.2f} s)"
        if s.value.dtype.kind == "f" and not np.all(np.isfinite(s.value)):
            return f"{key} has a non-finite value"
    return None


def safe_command(mode: str, last: np.ndarray | None, dim: int) -> np.ndarray:
    """The command sent while the watchdog holds: zeros, or the last command (``hold``).

    ``hold`` without a previous command gives zeros.
    """
    if mode not in SAFE_MODES:
        raise ValueError(f"safe_command: must be one of {', '.join(SAFE_MODES)}, got {mode!r}")
    if mode == "hold" and last is not None:
        return np.array(last, dtype=np.float64).reshape(dim)
    return np.zeros(dim, dtype=np.float64)


@dataclasses.dataclass
class Watchdog:
    """Trip and resume bookkeeping: what to log, throttled to once per ``period`` seconds.

    Attributes:
        period: minimum time between two warnings while tripped (s).
        reason: why the watchdog holds now (None: it does not).
        trips: how many times it went from running to holding.
    """

    period: float = 1.0
    reason: str | None = None
    trips: int = 0
    last_said: float = -math.inf

    @property
    def tripped(self) -> bool:
        """Whether the safe command is being published."""
        return self.reason is not None

    def update(self, reason: str | None, now: float) -> str | None:
        """Record this tick's ``reason`` (None: inputs fine); returns a line to log, or None.

        While tripped, a warning naming the reason is returned at most once per ``period``
        (a new trip always says so at once); resuming is announced once.
        """
        if reason is None:
            if self.reason is None:
                return None
            self.reason = None
            return "inputs are usable again: planning resumed"
        if self.reason is None:
            self.trips += 1
            self.last_said = -math.inf
        self.reason = reason
        if now - self.last_said < self.period:
            return None
        self.last_said = now
        return f"publishing the safe command: {reason}"


class LatencyWindow:
    """The last ``size`` durations (s), for percentiles over a sliding window."""

    def __init__(self, size: int = 1000) -> None:
        self._values: collections.deque[float] = collections.deque(maxlen=size)
        self.count = 0  # durations added, ever

    def add(self, seconds: float) -> None:
        """Record one duration."""
        self._values.append(float(seconds))
        self.count += 1

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> np.ndarray:
        """The durations in the window, oldest first."""
        return np.asarray(self._values, dtype=np.float64)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the window; NaN when it is empty."""
        if not self._values:
            return math.nan
        return float(np.percentile(self.values(), q))


def missed_ticks(period: float, last_tick: float | None, now: float) -> int:
    """Whole timer periods skipped between two ticks (0 when on time or for the first tick).

    A tick later than 1.5 periods after the previous one has skipped at least one.
    """
    if last_tick is None or period <= 0:
        return 0
    return max(0, int(round((now - last_tick) / period)) - 1)
