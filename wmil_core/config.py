"""Typed dataclass configs that load from and save to YAML.

Every component has one config dataclass; its fields carry units and paper symbols in their
comments and are validated in ``__post_init__``. This module turns nested dicts (from YAML or
the command line) into those dataclasses, refusing unknown keys and wrong types with a
``ValueError`` that names the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ValueError naming ``name``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ValueError as exc:  # try the next member of the union
                errors.append(str(exc))
        raise ValueError(errors[0] if errors else f"{name}: cannot be {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{name}: must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, prefix=f"{name}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: expected a list, got {type(value).__name__}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{name}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{name}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, name): _coerce(v, vt, f"{name}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{name}: expected an integer, got {value!r}") from None
            if number.is_integer():
                return int(number)
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name}: expected a string, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ValueError."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"{prefix}{unknown[0]}: unknown field of {cls.__name__} (known: {', '.join(fields)})"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML-safe) form of a dataclass, recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; a missing or malformed file raises ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with path.open() as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def load_config(cls: type[T], path: str | Path, overrides: dict[str, Any] | None = None) -> T:
    """Load dataclass ``cls`` from a YAML mapping, with optional top-level overrides."""
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    data.update(overrides or {})
    try:
        return from_dict(cls, data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def json_object(text: str) -> dict[str, Any]:
    """argparse type of a JSON object option (config overrides such as ``--agent``)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object {{...}} expected, got {text!r}")
    return value


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def staging_dir(out_dir: Path, overwrite: bool) -> Path:
    """A fresh hidden directory beside ``out_dir`` to build it in (refused if ``out_dir``
    exists and ``overwrite`` is off)."""
    if out_dir.exists() and not overwrite:
        raise ValueError(f"{out_dir}: exists already (overwrite it with --overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial",
                                 dir=out_dir.parent))


def replace_dir(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` into place as ``out_dir``; an old ``out_dir`` (``overwrite``)
    is moved aside first and put back if the rename fails."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    if not overwrite:
        raise ValueError(f"{out_dir}: exists already (overwrite it with --overwrite)")
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.replace(out_dir, old / "bundle")
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old / "bundle", out_dir)  # put the old bundle back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def save_config(obj: Any, path: str | Path) -> Path:
    """Write a dataclass config as YAML, atomically."""
    return atomic_write(path, yaml.safe_dump(to_dict(obj), sort_keys=False))
