"""Figures of ``fairser robustness``: degradation curves per gender and language, and the per-class recall
change per gender as a heat map (METHODS.md §6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_degradation_curves", "plot_per_class_heatmap"]

_COLORS = {"male": "#1f77b4", "female": "#d62728"}


def _first_cell(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the first objective and setting (the baseline), and a title naming them."""
    objective, setting = frame["objective"].iloc[0], frame["setting"].iloc[0]
    sub = frame[(frame["objective"] == objective) & (frame["setting"] == setting)]
    return sub, f"{objective}, setting {setting}"


def plot_degradation_curves(
    table: pd.DataFrame, per_class: pd.DataFrame | None = None, *, synthetic: bool = False
) -> Figure:
    """W-F1 per gender, clean then each condition, one panel per language x modality (first objective)."""
    sub, title = _first_cell(table)
    panels = list(dict.fromkeys(zip(sub["language"], sub["modality"], strict=True)))
    fig = Figure(figsize=(max(4.5 * len(panels), 6), 4.2))
    FigureCanvasAgg(fig)
    conditions = list(dict.fromkeys(sub["condition"]))
    x = np.arange(len(conditions) + 1)
    for i, (lang, modality) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        part = (
            sub[(sub["language"] == lang) & (sub["modality"] == modality)]
            .set_index("condition")
            .loc[conditions]
        )
        for value, color in _COLORS.items():
            col = f"weighted_f1_{value}"
            if f"{col}_clean" not in part:
                continue
            y = [part[f"{col}_clean"].iloc[0], *part[f"{col}_degraded"]]
            ax.plot(x, np.asarray(y) * 100, marker="o", color=color, label=value)
        ax.plot(x, np.r_[part["weighted_f1_clean"].iloc[0], part["weighted_f1_degraded"]] * 100,
                color="grey", ls="--", label="all")  # fmt: skip
        ax.set_xticks(x, ["clean", *conditions], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{lang} / {modality}", fontsize=10)
        ax.set_ylabel("W-F1 (%)")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    fig.suptitle(
        ("SYNTHETIC DATA — " if synthetic else "") + f"W-F1 per gender under degradation ({title})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_per_class_heatmap(per_class: pd.DataFrame, *, synthetic: bool = False) -> Figure:
    """Recall change (pp, degraded - clean) per class (columns) and condition x gender (rows), one panel per
    language x modality (first objective)."""
    sub, title = _first_cell(per_class)
    panels = list(dict.fromkeys(zip(sub["language"], sub["modality"], strict=True)))
    labels = list(dict.fromkeys(sub["label"]))
    rows = list(dict.fromkeys(zip(sub["condition"], sub["group"], strict=True)))
    fig = Figure(figsize=(max(4.8 * len(panels), 6), 0.32 * len(rows) + 2.2))
    FigureCanvasAgg(fig)
    vmax = max(float(np.nanmax(np.abs(sub["delta"].to_numpy(dtype=float)))) * 100, 1.0) if len(sub) else 1.0
    im = None
    for i, (lang, modality) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        part = sub[(sub["language"] == lang) & (sub["modality"] == modality)]
        grid = part.pivot_table(index=["condition", "group"], columns="label", values="delta", sort=False)
        grid = grid.reindex(index=pd.MultiIndex.from_tuples(rows), columns=labels) * 100
        im = ax.imshow(grid.to_numpy(dtype=float), cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), [f"{c} · {g}" for c, g in rows] if i == 0 else [], fontsize=7)
        ax.set_title(f"{lang} / {modality}", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.8, label="Δ recall (pp)")
    fig.suptitle(
        ("SYNTHETIC DATA — " if synthetic else "") + f"Recall change per class and gender ({title})",
        fontsize=10,
    )
    return fig
