"""The sweep's Pareto plot: validation AUC against energy per inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neurocxr.fileio import atomic_write


def plot_pareto(
    rows: list[dict[str, Any]], front: list[dict[str, Any]], path: Path, profile: str = "loihi2"
) -> Path:
    """Validation AUC against energy per inference (log x), every trial, the front joined."""
    # matplotlib is imported when the plot is drawn (about a second), as in neurocxr.report.plots;
    # its object API with the Agg canvas leaves the caller's pyplot backend and figures alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = [r for r in rows if r.get("status") == "ok" and profile in (r.get("energy") or {})]
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    models = sorted({str(r["model"]) for r in ok})
    for i, m in enumerate(models):
        pts = [r for r in ok if str(r["model"]) == m]
        ax.scatter(
            [r["energy"][profile]["dynamic_j"] * 1e6 for r in pts],
            [r["val_auc"] for r in pts],
            label=m,
            alpha=0.7,
            s=28,
            color=f"C{i % 10}",
        )
    if front:
        ax.plot(
            [r["energy"][profile]["dynamic_j"] * 1e6 for r in front],
            [r["val_auc"] for r in front],
            "k--",
            lw=1,
            label="Pareto front (validation)",
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"{profile} dynamic energy per inference (uJ, chip counts)")
    ax.set_ylabel("validation ROC-AUC (chip emulator)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, dpi=120, format="png")

    return atomic_write(path, write)
