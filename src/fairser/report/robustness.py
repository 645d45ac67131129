"""Figures of ``fairser robustness``: degradation curves per gender and language, and the per-class recall
change per gender as a heat map (METHODS.md §6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_degradation_curves", "plot_per_class_heatmap", "robustness_section"]

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


def robustness_section(path, *, synthetic: bool, source: str, dpi: int = 110):
    """The report's robustness section when the folder holds ``robustness.csv`` (``fairser robustness``), else
    None: per condition x language x modality of the first objective and setting, the change of W-F1 and of the
    gender gap with their paired CIs, and the degradation curves."""
    from pathlib import Path

    from fairser.report.figures import figure_png
    from fairser.report.html import ReportFigure
    from fairser.report.risk import RiskSection

    folder = Path(path)
    file = folder / "robustness.csv"
    if not file.is_file():
        return None
    table = pd.read_csv(file)
    per_class_file = folder / "robustness_per_class.csv"
    if table.empty:
        return None
    sub, title = _first_cell(table)

    def ci(r, col):
        return f"{r[col] * 100:+.1f} [{r[col + '_ci_low'] * 100:+.1f}, {r[col + '_ci_high'] * 100:+.1f}]"

    shown = pd.DataFrame(
        {
            "condition": sub["condition"],
            "language": sub["language"],
            "modality": sub["modality"],
            "W-F1 clean → degraded": [
                f"{a * 100:.1f} → {b * 100:.1f}"
                for a, b in zip(sub["weighted_f1_clean"], sub["weighted_f1_degraded"], strict=True)
            ],
            "ΔW-F1 [CI]": [ci(r, "delta_weighted_f1") for _, r in sub.iterrows()],
            "gap clean → degraded": [
                f"{a * 100:.1f} → {b * 100:.1f}"
                for a, b in zip(sub["weighted_f1_gap_clean"], sub["weighted_f1_gap_degraded"], strict=True)
            ],
            "Δgap [CI]": [ci(r, "delta_weighted_f1_gap") for _, r in sub.iterrows()],
            "p (Δgap)": [f"{p:.3f}" for p in sub["delta_weighted_f1_gap_p"]],
        }
    )
    per_class = pd.read_csv(per_class_file) if per_class_file.is_file() else None
    fig = plot_degradation_curves(table, per_class, synthetic=synthetic)
    figure = ReportFigure(
        "robustness_curves",
        figure_png(fig, dpi=dpi),
        f"W-F1 per gender on clean and degraded test audio ({title}), one panel per language x modality.",
        "Line plots of W-F1 per gender across degradation conditions",
    )
    paragraphs = [
        f"`fairser robustness` re-fitted every finished run (each reproduced its stored predictions exactly) and "
        f"tested it on degraded test audio ({title} shown; every objective and the measured bitrate / SNR of each "
        "condition are in `robustness.md` and `robustness*.csv`). Δ = degraded − clean in percentage points with "
        "the paired speaker-level bootstrap CI; the gap is |W-F1(female) − W-F1(male)| (METHODS.md §6). The recall "
        "change per class and gender is in `figures/robustness_per_class.png`.",
        f"Data: {source}.",
    ]
    return RiskSection(id="robustness", title="Robustness to codecs, channels and noise", paragraphs=paragraphs,
                       table=shown.reset_index(drop=True), figure=figure)  # fmt: skip
