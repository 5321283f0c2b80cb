"""The planner's watchdog and timing statistics: pure functions on hand-made samples."""

import math

import numpy as np
import pytest

from wmil.watchdog import (
    InputSample,
    LatencyWindow,
    Watchdog,
    input_problem,
    missed_ticks,
    safe_command,
)

J = np.zeros(4, np.float32)
F = np.ones(3, np.float32)


def fresh(now: float = 10.0) -> dict[str, InputSample]:
    return {"joints": InputSample(J, now - 0.01, stamp=1.0), "features": InputSample(F, now)}


def test_usable_inputs_pass():
    assert input_problem(fresh(), ["joints", "features"], 10.0, 0.5) is None


@pytest.mark.parametrize("samples, expect", [
    ({"features": InputSample(F, 10.0)}, "no joints received yet"),
    ({"joints": InputSample(None, 10.0, error="joint state has no joint 'wrist'"),
      "features": InputSample(F, 10.0)}, "joints: joint state has no joint 'wrist'"),
    ({"joints": InputSample(J, 9.0), "features": InputSample(F, 10.0)},
     "joints is stale (1.00 s old, limit 0.50 s)"),
    ({"joints": InputSample(J, 10.0), "features": InputSample(np.array([1, np.nan, 0],
                                                                       np.float32), 10.0)},
     "features has a non-finite value"),
    ({"joints": InputSample(J, 10.0), "features": InputSample(None, 10.0)},
     "features: no usable value"),
])
def test_unusable_inputs_are_named(samples, expect):
    assert input_problem(samples, ["joints", "features"], 10.0, 0.5) == expect


def test_first_problem_in_required_order():
    samples = {"joints": InputSample(J, 0.0), "features": None}
    assert input_problem(samples, ["features", "joints"], 10.0, 0.5) == "no features received yet"
    assert input_problem(samples, ["joints", "features"], 10.0, 0.5).startswith("joints is stale")


def test_uint8_images_need_no_finite_check():
    img = np.zeros((4, 4, 9), np.uint8)
    assert input_problem({"image": InputSample(img, 1.0)}, ["image"], 1.0, 0.5) is None


def test_safe_command():
    last = np.array([0.5, -1.0])
    np.testing.assert_array_equal(safe_command("zeros", last, 2), [0.0, 0.0])
    np.testing.assert_array_equal(safe_command("hold", last, 2), last)
    np.testing.assert_array_equal(safe_command("hold", None, 2), [0.0, 0.0])
    held = safe_command("hold", last, 2)
    held[0] = 9.0
    assert last[0] == 0.5  # a copy
    with pytest.raises(ValueError, match="zeros, hold"):
        safe_command("brake", last, 2)


def test_watchdog_speaks_at_most_once_per_period_and_resumes_once():
    w = Watchdog(period=1.0)
    assert w.update(None, 0.0) is None and not w.tripped
    assert w.update("no joints received yet", 0.0) == \
        "publishing the safe command: no joints received yet"
    assert w.tripped and w.trips == 1
    assert w.update("no joints received yet", 0.5) is None  # throttled
    assert w.update("joints is stale", 0.99) is None
    assert w.update("joints is stale", 1.0) == "publishing the safe command: joints is stale"
    assert w.reason == "joints is stale"
    assert w.update(None, 1.1) == "inputs are usable again: planning resumed"
    assert w.update(None, 1.2) is None and not w.tripped
    assert w.update("features has a non-finite value", 1.3) is not None  # new trip: at once
    assert w.trips == 2


def test_latency_window():
    lw = LatencyWindow(size=4)
    assert math.isnan(lw.percentile(50)) and len(lw) == 0
    for v in [5.0, 1.0, 2.0, 3.0, 4.0]:
        lw.add(v)
    assert len(lw) == 4 and lw.count == 5
    np.testing.assert_array_equal(lw.values(), [1.0, 2.0, 3.0, 4.0])
    assert lw.percentile(50) == 2.5
    assert lw.percentile(99) == pytest.approx(np.percentile([1, 2, 3, 4], 99))


@pytest.mark.parametrize("last, now, expect", [
    (None, 5.0, 0), (1.0, 1.1, 0), (1.0, 1.14, 0), (1.0, 1.16, 1), (1.0, 1.31, 2),
])
def test_missed_ticks(last, now, expect):
    assert missed_ticks(0.1, last, now) == expect
