"""Expert demonstrators: scripted controllers and (later) trained policies."""

from wmil_core.experts.base import Expert, expert_names, make_expert, register_expert

__all__ = ["Expert", "expert_names", "make_expert", "register_expert"]
