"""The expert interface: an observation dict in, an action in [-1, 1]^A out.

Scripted experts may read the simulator's state through the environment they are bound to
in :meth:`Expert.reset` (they are demonstrators, not learners); trained experts act on the
state observation alone. Both plug into demo collection and ``wmil expert eval`` the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv


class Expert(Protocol):
    """A demonstrator for one task."""

    name: str

    def reset(self, env: WmilEnv) -> None:
        """Bind to ``env`` at the start of an episode (after ``env.reset``)."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action in [-1, 1]^A for the state observation ``obs`` (``joints``, ``features``)."""


_EXPERTS: dict[str, Callable[[str], Expert]] = {}


def register_expert(name: str) -> Callable[[Callable[[str], Expert]], Callable[[str], Expert]]:
    """Decorator: register a factory ``f(task_name) -> Expert`` under ``name``."""

    def wrap(factory: Callable[[str], Expert]) -> Callable[[str], Expert]:
        _EXPERTS[name] = factory
        return factory

    return wrap


def expert_names() -> list[str]:
    """Names of every registered expert."""
    _load_builtin()
    return sorted(_EXPERTS)


def _load_builtin() -> None:
    # importing the modules registers their experts
    from wmil_core.experts import scripted, simple, trained  # noqa: F401


def make_expert(task: str, name: str | None = None) -> Expert:
    """The expert for registry task ``task`` (its YAML ``expert`` unless ``name`` is given)."""
    from wmil_core.tasks.spec import get_task

    _load_builtin()
    spec = get_task(task)
    name = name or spec.expert
    if name is None:
        raise ValueError(f"{task}: no expert is registered for this task (see `wmil tasks`)")
    if name not in _EXPERTS:
        raise ValueError(f"unknown expert {name!r} (known: {', '.join(sorted(_EXPERTS))})")
    return _EXPERTS[name](task)
