"""The report's five plots as base64 PNG data URIs: accuracy vs energy with the SNN and CNN Pareto
fronts, the sweep panels, the two counting bases per layer, per-layer energy by device profile and
spikes per layer. matplotlib's object API with the Agg canvas: never touches the global pyplot
backend."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from neurocxr.energy.types import EnergyEstimate
from neurocxr.report.formatting import _finite
from neurocxr.report.model import (
    SummaryRow,
    SweepTable,
    _pick,
    _trial_ok,
    is_headline,
    sweep_devices,
)

__all__ = ["pareto_front"]

_KIND_HATCH = {"measured": "", "estimated": "//", "not measurable": "xx"}


def _figure(width: float = 7.5, height: float = 4.0) -> Any:
    # matplotlib is imported when a plot is drawn (about a second): importing the report for its
    # data model, verdict or JSON does not pay for it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _colormap(name: str) -> Any:
    import matplotlib  # lazily, as in _figure

    return matplotlib.colormaps[name]


def _png_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _short(text: str, n: int = 28) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


_MODEL_COLORS = [
    "#1565c0",
    "#c62828",
    "#6a1b9a",
    "#2e7d32",
    "#ef6c00",
    "#00838f",
    "#5d4037",
    "#ad1457",
]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (energy, score) points no other point beats on both (less energy and a higher score),
    sorted by energy: the line a family of models draws on an accuracy-vs-energy plot."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


# SNN and CNN fronts: one colour and line style per family, the same on every plot.
_FRONT_STYLE = {"SNN": ("#ff8f00", "-"), "CNN": ("#37474f", "--")}


def _draw_fronts(ax: Any, families: dict[str, list[tuple[float, float]]], what: str) -> None:
    """A line through each family's Pareto points (``families``: name -> (energy, score) points)."""
    for name, pts in families.items():
        front = pareto_front([p for p in pts if _finite(p[0]) and p[0] > 0 and _finite(p[1])])
        if not front:
            continue
        color, style = _FRONT_STYLE.get(name, ("#555555", ":"))
        # a one-point front is drawn as a ring around its point, so it stays visible under the marker
        ax.plot(
            [p[0] for p in front],
            [p[1] for p in front],
            linestyle=style,
            color=color,
            linewidth=1.8,
            marker="o" if len(front) == 1 else None,
            markersize=13,
            fillstyle="none",
            markeredgewidth=1.6,
            alpha=0.9,
            zorder=2,
            label=f"{name} front ({what}, {len(front)} point{'s' if len(front) != 1 else ''})",
        )


def _plot_accuracy_vs_energy(rows: Sequence[SummaryRow]) -> str | None:
    """Test ROC-AUC (or accuracy where AUC is missing) against dynamic energy per inference: one
    colour per model, one point per device; circles for measured, triangles for estimated energy;
    a line through the SNN family's Pareto points and one through the CNN baselines', on the same axes."""
    use_auc = any(_finite(r.auc) and r.is_baseline for r in rows) and any(
        _finite(r.auc) and not r.is_baseline for r in rows
    )

    def score(r: SummaryRow) -> float | None:
        v = r.auc if use_auc else r.accuracy
        return float(v) if v is not None and _finite(v) else None

    metric = "test ROC-AUC" if use_auc else "test accuracy (%)"
    title = "ROC-AUC" if use_auc else "Accuracy"
    scale = 1.0 if use_auc else 100.0
    data = [r for r in rows if score(r) is not None and _finite(r.dynamic_j) and r.dynamic_j > 0]  # type: ignore[operator]
    if not data:
        return None
    fig = _figure(7.6, 4.3)
    ax = fig.add_subplot(1, 1, 1)
    models = list(dict.fromkeys(r.model for r in data))
    energies = [float(r.dynamic_j) for r in data]  # type: ignore[arg-type]
    # x range in decades over about 470 pt of axes; a 6.5 pt character is about 3.7 pt wide
    decades_per_char = (math.log10(max(energies) / min(energies)) + math.log10(100)) * 3.7 / 470
    _draw_fronts(
        ax,
        {
            "SNN": [(float(r.dynamic_j), scale * score(r)) for r in data if not r.is_baseline],  # type: ignore[arg-type, operator]
            "CNN": [(float(r.dynamic_j), scale * score(r)) for r in data if r.is_baseline],
        },  # type: ignore[arg-type, operator]
        "AUC" if use_auc else "accuracy",
    )
    for i, model in enumerate(models):
        pts = [r for r in data if r.model == model]
        color = _MODEL_COLORS[i % len(_MODEL_COLORS)]
        for kind, marker in (("measured", "o"), ("estimated", "^")):
            sel = [r for r in pts if r.kind == kind]
            if sel:
                ax.scatter(
                    [r.dynamic_j for r in sel],
                    [scale * score(r) for r in sel],  # type: ignore[operator]
                    c=color,
                    marker=marker,
                    edgecolors="black",
                    s=46,
                    zorder=3,
                    label=f"{_short(model, 26)} ({kind})",
                )
        _label_by_device(ax, pts, score, scale, decades_per_char)
    ax.set_xscale("log")
    ax.set_xlim(min(energies) / 5, max(energies) * 20)
    ax.margins(y=0.45)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("dynamic energy per inference (J, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(
        f"Test {title} vs energy per inference: SNN and CNN fronts, one point per model × device",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="lower right")
    return _png_data_uri(fig)


def _label_by_device(
    ax: Any,
    pts: Sequence[SummaryRow],
    score: Callable[[SummaryRow], float | None],
    scale: float,
    decades_per_char: float,
) -> None:
    """Label one model's points by device.

    Points of one model mostly share a height: label them by device, level, and stack a label one
    line higher while it would still run into a label to its left at that height (a label's width
    in decades follows its length); points at (nearly) the same energy share one label.
    """
    groups: list[list[SummaryRow]] = []
    for r in sorted(pts, key=lambda r: r.dynamic_j):  # type: ignore[arg-type, return-value]
        if (
            groups
            and score(r) == score(groups[-1][0])
            and math.log10(float(r.dynamic_j) / float(groups[-1][0].dynamic_j)) < 0.05
        ):  # type: ignore[arg-type]
            groups[-1].append(r)
        else:
            groups.append([r])
    placed: list[tuple[float, float, float, int]] = []  # (score, left, right in log10 J, level)
    for group in groups:
        first = group[0]
        label = ", ".join(_short(r.device, 22) for r in group)
        x = math.log10(float(first.dynamic_j))  # type: ignore[arg-type]
        right = x + len(label) * decades_per_char
        y = score(first)
        busy = {lv for acc, lo, hi, lv in placed if acc == y and lo <= x <= hi}
        level = next(lv for lv in range(len(placed) + 1) if lv not in busy)
        placed.append((y, x, right, level))  # type: ignore[arg-type]
        ax.annotate(
            label,
            (first.dynamic_j, scale * y),
            fontsize=6.5,  # type: ignore[operator]
            xytext=(3, 5 + 8 * level),
            textcoords="offset points",
            ha="left",
            va="bottom",
        )


def _plot_sweep(sweep: SweepTable, rows: Sequence[SummaryRow]) -> str | None:
    """One panel per device: every finished sweep trial's test accuracy (circles) and ROC-AUC
    (squares) against its dynamic energy on that device, the report's own models on that device,
    and the CNN baselines' rows on the same axes (stars: accuracy, diamonds: AUC)."""
    trials = [t for t in sweep.trials if _trial_ok(t)]
    devices = sweep_devices(sweep)
    if not devices:
        return None
    cols = 2 if len(devices) > 1 else 1
    nrows = (len(devices) + cols - 1) // cols
    fig = _figure(9.5 if cols == 2 else 7.6, 1.4 + 3.2 * nrows)
    handles: list[Any] = []
    labels: list[str] = []
    baselines = [r for r in rows if r.is_baseline and _finite(r.dynamic_j) and r.dynamic_j > 0]  # type: ignore[operator]
    steps = sorted({t["num_steps"] for t in trials if t.get("num_steps") is not None})
    cmap = _colormap("viridis")
    for k, device in enumerate(devices):
        ax = fig.add_subplot(nrows, cols, k + 1)
        _draw_sweep_panel(ax, device, trials, rows, baselines, steps, cmap)
        if k == 0:
            handles, labels = ax.get_legend_handles_labels()
    if steps:
        fig.suptitle(
            "Sweep: colour = time steps (" + ", ".join(str(s) for s in steps) + ", dark to light)",
            fontsize=9,
        )
    # One legend under all panels, so no panel's points are hidden behind it.
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.03 + 0.04 * math.ceil(len(labels) / 3) / nrows, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _draw_sweep_panel(
    ax: Any,
    device: str,
    trials: Sequence[dict[str, Any]],
    rows: Sequence[SummaryRow],
    baselines: Sequence[SummaryRow],
    steps: list[Any],
    cmap: Any,
) -> None:
    """One device's panel of the sweep plot: trials coloured by time steps, the report's own rows,
    the SNN and CNN fronts and the CNN baselines."""
    xs, acc, auc, col = [], [], [], []
    for t in trials:
        e: Any = (t["energy"].get(device) or {}).get("dynamic_j")
        if not _finite(e) or e <= 0:
            continue
        xs.append(e)
        acc.append(t.get("test_accuracy"))
        auc.append(t.get("test_auc"))
        s = t.get("num_steps")
        col.append(cmap(steps.index(s) / max(1, len(steps) - 1)) if s in steps else "#777777")
    for ys, marker, label in (
        (acc, "o", "SNN trials: accuracy"),
        (auc, "s", "SNN trials: ROC-AUC"),
    ):
        pts = [(x, y, c) for x, y, c in zip(xs, ys, col) if _finite(y)]
        if pts:
            ax.scatter(
                [p[0] for p in pts],
                [p[1] for p in pts],
                c=[p[2] for p in pts],
                marker=marker,
                edgecolors="black",
                linewidths=0.4,
                s=30,
                label=label,
                zorder=3,
            )
    for r in rows:
        if (
            not r.is_baseline
            and r.device == device
            and is_headline(r)
            and _finite(r.dynamic_j)
            and _finite(r.accuracy)
        ):
            ax.scatter(
                [r.dynamic_j],
                [r.accuracy],
                marker="P",
                c="#c62828",
                s=70,
                edgecolors="black",
                label=f"{_short(r.model, 20)} (this report)",
                zorder=4,
            )
    mine = [
        (float(r.dynamic_j), float(r.auc))
        for r in rows  # type: ignore[arg-type]
        if not r.is_baseline
        and r.device == device
        and is_headline(r)
        and _finite(r.dynamic_j)
        and _finite(r.auc)
    ]
    trial_pts = [
        (float(x), float(y))
        for x, y in zip(xs, auc)
        if x is not None and y is not None and _finite(y)
    ]
    base_pts = [
        (float(r.dynamic_j), float(r.auc))
        for r in baselines  # type: ignore[arg-type]
        if _finite(r.auc)
    ]
    _draw_fronts(ax, {"SNN": trial_pts + mine, "CNN": base_pts}, "ROC-AUC")
    for i, r in enumerate(baselines):
        color = _MODEL_COLORS[(i + 2) % len(_MODEL_COLORS)]
        what = _short(f"{r.model}, {r.device}", 34)
        if _finite(r.accuracy):
            ax.scatter(
                [r.dynamic_j],
                [r.accuracy],
                marker="*",
                c=color,
                s=110,
                edgecolors="black",
                label=f"{what}: accuracy",
                zorder=4,
            )
        if _finite(r.auc):
            ax.scatter(
                [r.dynamic_j],
                [r.auc],
                marker="D",
                c=color,
                s=40,
                edgecolors="black",
                label=f"{what}: AUC",
                zorder=4,
            )
    ax.set_xscale("log")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"energy on {device}", fontsize=9)
    ax.set_xlabel("dynamic energy per inference (J, log)", fontsize=8)
    ax.set_ylabel("test accuracy / ROC-AUC", fontsize=8)
    ax.tick_params(labelsize=7)


def _plot_counting_bases(bases: Sequence[dict[str, Any]]) -> str | None:
    def chip_ops(b: dict[str, Any]) -> Any:
        return _pick(b, "chip_synaptic_ops", "chip_effective_ops")

    def nb_ops(b: dict[str, Any]) -> Any:
        return _pick(b, "neurobench_synaptic_ops", "neurobench_effective_ops")

    rows = [b for b in bases if _finite(chip_ops(b)) or _finite(nb_ops(b))]
    if not rows:
        return None
    fig = _figure(7.6, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(rows))
    chip = [float(chip_ops(b) or np.nan) for b in rows]
    nb = [float(nb_ops(b) or np.nan) for b in rows]
    ax.bar(
        x - 0.2,
        chip,
        width=0.4,
        color="#ef8f00",
        edgecolor="black",
        label="chip counts (energy estimates use these)",
    )
    ax.bar(
        x + 0.2,
        nb,
        width=0.4,
        color="#1565c0",
        edgecolor="black",
        label="NeuroBench float-model counts",
    )
    ax.set_xticks(x)
    ax.set_xticklabels([_short(str(_pick(b, "chip_layer", "layer")), 16) for b in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("effective synaptic ops per sample")
    ax.set_title("Two counting bases per layer", fontsize=10)
    ax.legend(fontsize=7)
    return _png_data_uri(fig)


def _plot_layer_breakdown(estimates: Sequence[EnergyEstimate]) -> str | None:
    """Grouped bars, log scale, one panel per model: per layer, one bar per device profile.

    Grouped rather than stacked because profiles differ by orders of magnitude; on a linear stack
    the Loihi bars would vanish next to the CPU/GPU ones.
    """
    data = [e for e in estimates if any(float(v) > 0 for v in e.per_layer_j.values())]
    if not data:
        return None
    by_model: dict[str, list[EnergyEstimate]] = {}
    for e in data:
        by_model.setdefault(e.model, []).append(e)
    fig = _figure(9.0, 0.6 + 3.6 * len(by_model))
    cmap = _colormap("tab20")
    for row, (model, group) in enumerate(by_model.items()):
        ax = fig.add_subplot(len(by_model), 1, row + 1)
        layers: list[str] = []
        for e in group:
            layers += [name for name in e.per_layer_j if name not in layers]
        width = 0.85 / len(group)
        for k, e in enumerate(group):
            values = [float(e.per_layer_j.get(layer, 0.0)) for layer in layers]
            x = np.arange(len(layers)) + (k - (len(group) - 1) / 2) * width
            bars = ax.bar(
                x,
                [v if v > 0 else np.nan for v in values],
                width=width,
                color=cmap(k % 20),
                edgecolor="black",
                linewidth=0.3,
                label=_short(e.device, 32),
            )
            for bar in bars:
                bar.set_hatch(_KIND_HATCH.get(e.kind, ""))
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels([_short(n, 16) for n in layers], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("J per inference (log)")
        ax.set_title(f"Per-layer energy by device profile: {_short(model, 40)}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _png_data_uri(fig)


def _plot_spikes_per_layer(layer_counts: dict[str, list[dict[str, Any]]]) -> str | None:
    series = {}
    for model, layers in layer_counts.items():
        names: list[str] = []
        spikes: list[float] = []
        for layer in layers:
            mean = layer.get("per_sample_mean", {})
            if "output_spikes" in mean:
                names.append(str(layer.get("name", f"layer{len(names)}")))
                spikes.append(float(mean["output_spikes"]))
        if names:
            series[model] = (names, spikes)
    if not series:
        return None
    all_names: list[str] = []
    for names, _ in series.values():
        all_names += [n for n in names if n not in all_names]
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for k, (model, (names, spikes)) in enumerate(series.items()):
        by_name = dict(zip(names, spikes))
        x = np.arange(len(all_names)) + (k - (len(series) - 1) / 2) * width
        ax.bar(x, [by_name.get(n, np.nan) for n in all_names], width=width, label=_short(model, 30))
    ax.set_xticks(np.arange(len(all_names)))
    ax.set_xticklabels([_short(n, 16) for n in all_names], fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("output spikes per sample (all steps)")
    ax.set_title("Spikes per layer")
    ax.legend(fontsize=8)
    return _png_data_uri(fig)
