"""``wmil bench tdmpc2`` without TD-MPC2: argument errors and the command's registration."""

import argparse
import importlib.util

import pytest

from wmil_core.bench_tdmpc2 import add_command, cmd_bench_tdmpc2, compare


def test_missing_source_is_one_line_naming_the_path(tmp_path):
    missing = tmp_path / "no-tdmpc2-here"
    with pytest.raises(ValueError) as err:
        compare(str(missing))
    msg = str(err.value)
    assert str(missing) in msg
    assert "\n" not in msg


def test_folder_without_tdmpc2_is_refused(tmp_path):
    (tmp_path / "tdmpc2").mkdir()
    with pytest.raises(ValueError, match="no TD-MPC2 source"):
        compare(str(tmp_path))


def test_missing_tensordict_is_named(tmp_path, monkeypatch):
    src = tmp_path / "tdmpc2"
    (src / "common").mkdir(parents=True)
    (src / "tdmpc2.py").write_text("")
    (src / "common" / "world_model.py").write_text("")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensordict" else real(name, *a))
    with pytest.raises(ValueError, match="^tensordict is not installed[^\\n]*$"):
        compare(str(tmp_path))


def test_registered_on_bench_subparsers():
    parser = argparse.ArgumentParser(prog="wmil")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench")
    add_command(bench.add_subparsers(dest="bench_command", required=True))
    args = parser.parse_args(["bench", "tdmpc2", "--src", "/x"])
    assert args.func is cmd_bench_tdmpc2
    assert (args.src, args.size, args.threads, args.updates, args.plans, args.out) == (
        "/x", "1m", 1, 20, 30, None)
    args = parser.parse_args(["bench", "tdmpc2", "--src", "/x", "--size", "5m", "--threads",
                              "2", "--updates", "5", "--plans", "7", "--out", "o.json"])
    assert (args.size, args.threads, args.updates, args.plans, args.out) == (
        "5m", 2, 5, 7, "o.json")
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "tdmpc2", "--src", "/x", "--size", "19m"])
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "tdmpc2"])  # --src is required
    assert (args.compile, args.precision) == (False, "float32")
    args = parser.parse_args(["bench", "tdmpc2", "--src", "/x", "--compile"])
    assert args.compile is True
    args = parser.parse_args(["bench", "tdmpc2", "--src", "/x", "--compile", "planner",
                              "--precision", "bfloat16"])
    assert (args.compile, args.precision) == ("planner", "bfloat16")
    import typing

    from wmil_core.agents.iqmpc import Precision

    choices = next(a.choices for a in bench._subparsers._group_actions[0].choices["tdmpc2"]
                   ._actions if a.dest == "precision")
    assert list(choices) == list(typing.get_args(Precision))  # the config's precisions
    for bad in (["--compile", "update"], ["--precision", "float16"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["bench", "tdmpc2", "--src", "/x", *bad])


def test_paired_ratios_and_latency_stats():
    from wmil_core.timing import latency_stats, paired_ratios

    r = paired_ratios([2.0, 4.0, 9.0], [1.0, 4.0, 3.0])
    assert r == {"of_medians": 4.0 / 3.0, "median_paired": 2.0}
    s = latency_stats([1.0, 2.0, 3.0, 10.0])
    assert s["p50_ms"] == 2.5 and s["mean_ms"] == 4.0 and s["n"] == 4
    assert 3.0 < s["p99_ms"] <= 10.0


def test_training_clock_adds_resumed_segments_and_reads_old_checkpoints():
    from wmil_core.timing import TrainingClock

    clock = TrainingClock()
    assert clock.elapsed() == 0.0  # not started
    clock.restore({"wall_s": 30.0}, [{"wall_s": 12.0}])
    assert clock.elapsed() == 30.0
    clock.start()
    assert 30.0 <= clock.elapsed() < 31.0
    old = TrainingClock()  # a checkpoint without wall_s: the last evaluation's time
    old.restore({}, [{"wall_s": 5.0}, {"wall_s": 12.0}])
    assert old.before == 12.0
    old.restore({}, [])
    assert old.before == 0.0
