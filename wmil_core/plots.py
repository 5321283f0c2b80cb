"""Small plotting helpers shared by the learning-curve writers (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def steps_axis(ax: Any) -> None:
    """Label ``ax``'s x axis as environment steps: at most 6 ticks, thousands as ``k``."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(6, steps=[1, 2, 2.5, 5, 10], integer=True))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}"))
    ax.set_xlabel("environment steps")


def save_png(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` as PNG atomically (folders made) and close it."""
    import matplotlib.pyplot as plt

    from wmil_core.config import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path
