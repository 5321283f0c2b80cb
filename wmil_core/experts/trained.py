"""Trained experts: SAC policies written by ``wmil expert train`` (registered as ``sac``).

The policy file ``models/experts/<slug>/expert.pt`` holds plain tensors and metadata and is
loaded with ``torch.load(weights_only=True)``: no pickled code runs. The expert acts with the
actor's mean action on the state observation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from wmil_core.experts.base import register_expert

if TYPE_CHECKING:
    from wmil_core.tasks.env import WmilEnv


class TrainedExpert:
    """A SAC actor (encoder + tanh-Gaussian policy) trained on the task's reward."""

    name = "sac"
    kind = "trained"

    def __init__(self, task: str, path: str | Path | None = None) -> None:
        from wmil_core.config import from_dict
        from wmil_core.expert_train import EXPERT_FORMAT, expert_dir
        from wmil_core.world_model import ModelConfig, WorldModel

        self.task = task
        d = Path(path) if path is not None else expert_dir(task)
        f = d / "expert.pt" if d.suffix != ".pt" else d
        if not f.is_file():
            raise ValueError(f"{f}: no trained expert for {task} (train one: wmil expert train "
                             f"--task {task})")
        try:
            data = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one user error
            raise ValueError(f"{f}: unreadable expert file ({exc})") from None
        if data.get("format") != EXPERT_FORMAT:
            raise ValueError(f"{f}: expert format {data.get('format')!r}, expected "
                             f"{EXPERT_FORMAT}")
        if data.get("task") != task:
            raise ValueError(f"{f}: an expert for {data.get('task')}, not {task}")
        shapes = {k: tuple(v["shape"]) for k, v in data["obs_spec"].items()}
        self.keys = list(shapes)
        model = WorldModel(shapes, int(data["action_dim"]), from_dict(ModelConfig, data["model"]))
        model._encoder.load_state_dict(data["encoder"])
        model._pi.load_state_dict(data["pi"])
        self.model = model.eval()
        self.path = f

    def reset(self, env: WmilEnv) -> None:
        """Nothing to bind: the policy reads the observation only."""

    @torch.no_grad()
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The actor's mean action for the state observation."""
        o = {k: torch.as_tensor(np.asarray(obs[k], dtype=np.float32)).unsqueeze(0)
             for k in self.keys}
        mu, _, _, _ = self.model.pi(self.model.encode(o), deterministic=True)
        return mu[0].numpy()


register_expert("sac")(TrainedExpert)
