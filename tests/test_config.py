"""Typed configs from YAML: types are checked, unknown keys refused, writes are atomic."""

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from wmil_core.config import atomic_write, from_dict, load_config, save_config, to_dict


@dataclasses.dataclass
class Inner:
    lr: float = 3e-4
    dims: tuple[int, ...] = (256, 256)


@dataclasses.dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    mode: Literal["a", "b"] = "a"
    seed: int | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps: must be >= 0, got {self.steps}")


def test_from_dict_coerces_and_nests():
    cfg = from_dict(Outer, {"steps": "100", "inner": {"lr": "1e-3", "dims": [8, 4]}, "seed": 3})
    assert cfg.steps == 100 and cfg.seed == 3
    assert cfg.inner == Inner(lr=1e-3, dims=(8, 4))


@pytest.mark.parametrize(
    "data, field",
    [
        ({"stepz": 1}, "stepz"),
        ({"steps": 1.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"mode": "c"}, "mode"),
        ({"inner": {"lr": "fast"}}, "inner.lr"),
        ({"inner": {"depth": 2}}, "inner.depth"),
        ({"inner": 3}, "inner"),
    ],
)
def test_bad_values_name_the_field(data, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        from_dict(Outer, data)


def test_post_init_validation_runs():
    with pytest.raises(ValueError, match="steps: must be >= 0"):
        from_dict(Outer, {"steps": -1})


def test_yaml_round_trip(tmp_path: Path):
    cfg = Outer(name="run", steps=5, mode="b", inner=Inner(lr=0.5, dims=(3,)))
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(Outer, tmp_path / "c.yaml") == cfg
    assert to_dict(cfg)["inner"]["dims"] == [3]


def test_load_config_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ValueError, match="no such file"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_config(Outer, bad)
    bad.write_text("steps: many\n")
    with pytest.raises(ValueError, match="bad.yaml: steps: expected an integer"):
        load_config(Outer, bad)


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path):
    target = tmp_path / "f.txt"
    atomic_write(target, "old")

    with pytest.raises(TypeError):
        atomic_write(target, 123)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_json_object_option_refuses_non_objects_in_one_line(capsys):
    import argparse

    from wmil_core.cli import main
    from wmil_core.config import json_object

    assert json_object('{"grad_pen": 0.6}') == {"grad_pen": 0.6}
    for bad, why in (("[1]", "a JSON object"), ("{bad", "not valid JSON"), ("3", "a JSON object")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            json_object(bad)
    # both options that take overrides refuse before doing any work, naming the option
    for cmd in (["bench", "speed", "--agent", "[1]"],
                ["bench", "imitation", "--tasks", "dmc/reacher-easy", "--agent", "[1]",
                 "--out", "never-created"]):
        with pytest.raises(SystemExit) as exc:
            main(cmd)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "argument --agent: a JSON object {...} expected" in err
