"""Figures of ``fairser robustness``: degradation curves per gender and language, and the per-class recall
change per gender as a heat map (METHODS.md §6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "class_ranking",
    "plot_degradation_curves",
    "plot_per_class_heatmap",
    "render_class_changes",
    "robustness_section",
    "signed_gap_label",
]

_COLORS = {"male": "#1f77b4", "female": "#d62728"}


def _first_cell(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the first objective and setting (the baseline), and a title naming them."""
    objective, setting = frame["objective"].iloc[0], frame["setting"].iloc[0]
    sub = frame[(frame["objective"] == objective) & (frame["setting"] == setting)]
    return sub, f"{objective}, setting {setting}"


def signed_gap_label(table: pd.DataFrame) -> str:
    """Which groups a robustness table's signed gap compares (``female − male``), or ``—``."""
    if "signed_gap_of" in table and table["signed_gap_of"].notna().any():
        return str(table["signed_gap_of"].dropna().iloc[0])
    return "—"


def plot_degradation_curves(
    table: pd.DataFrame, per_class: pd.DataFrame | None = None, *, synthetic: bool = False
) -> Figure:
    """W-F1 per gender under degradation (first objective and setting), one column per language x modality.

    Top row: every condition as its own point (clean as a dashed reference line per gender), since distinct
    conditions are categories, not a scale. Bottom row (when the table has a ``family`` and a measured
    ``bitrate_kbps_mean``): the codec families' W-F1 against the measured bitrate (log scale), one line per
    family and gender, so a family tested at several bitrates shows a degradation curve."""
    sub, title = _first_cell(table)
    panels = list(dict.fromkeys(zip(sub["language"], sub["modality"], strict=True)))
    has_rate = "family" in sub and "bitrate_kbps_mean" in sub and np.isfinite(sub["bitrate_kbps_mean"]).any()
    n_rows = 2 if has_rate else 1
    fig = Figure(figsize=(max(4.5 * len(panels), 6), 4.2 * n_rows))
    FigureCanvasAgg(fig)
    conditions = list(dict.fromkeys(sub["condition"]))
    x = np.arange(len(conditions))
    offsets = {"male": -0.12, "female": 0.12}
    for i, (lang, modality) in enumerate(panels):
        part = sub[(sub["language"] == lang) & (sub["modality"] == modality)].set_index("condition")
        part = part.loc[[c for c in conditions if c in part.index]]
        ax = fig.add_subplot(n_rows, len(panels), i + 1)
        for value, color in _COLORS.items():
            col = f"weighted_f1_{value}"
            if f"{col}_clean" not in part:
                continue
            ax.axhline(
                part[f"{col}_clean"].iloc[0] * 100, color=color, ls="--", lw=1, label=f"{value}, clean"
            )
            xs = np.array([conditions.index(c) for c in part.index]) + offsets[value]
            ax.plot(
                xs,
                part[f"{col}_degraded"] * 100,
                ls="none",
                marker="o",
                color=color,
                label=f"{value}, degraded",
            )
        ax.set_xticks(x, conditions, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{lang} / {modality}", fontsize=10)
        ax.set_ylabel("W-F1 (%)")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
        if not has_rate:
            continue
        ax = fig.add_subplot(n_rows, len(panels), len(panels) + i + 1)
        rated = part[np.isfinite(part["bitrate_kbps_mean"].to_numpy(dtype=float))]
        styles = ["-", "--", ":", "-."]
        for f, (family, fam) in enumerate(rated.groupby("family", sort=False)):
            fam = fam.sort_values("bitrate_kbps_mean")
            for value, color in _COLORS.items():
                col = f"weighted_f1_{value}_degraded"
                if col in fam:
                    ax.plot(fam["bitrate_kbps_mean"], fam[col] * 100, marker="o", color=color,
                            ls=styles[f % len(styles)], label=f"{family} · {value}")  # fmt: skip
        for value, color in _COLORS.items():
            if f"weighted_f1_{value}_clean" in part:
                ax.axhline(part[f"weighted_f1_{value}_clean"].iloc[0] * 100, color=color, ls="--", lw=1)
        ax.set_xscale("log")
        ticks = [t for t in (2, 4, 8, 16, 32, 64, 128, 256) if len(rated)]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        if len(rated):
            rates = rated["bitrate_kbps_mean"].to_numpy(dtype=float)
            ax.set_xlim(rates.min() / 1.3, rates.max() * 1.3)
        ax.set_xlabel("measured bitrate (kbps, log)")
        ax.set_ylabel("W-F1 (%)")
        ax.grid(alpha=0.3, which="both")
        if i == 0:
            ax.legend(fontsize=6, ncol=2)
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
    if "delta_weighted_f1_signed_gap" in sub:  # which gender the condition cost more
        of = signed_gap_label(sub)
        shown[f"Δ(W-F1 {of}) [CI]"] = [ci(r, "delta_weighted_f1_signed_gap") for _, r in sub.iterrows()]
        shown[f"p (Δ {of})"] = [f"{p:.3f}" for p in sub["delta_weighted_f1_signed_gap_p"]]
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


def class_ranking(per_class: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Which classes lose most recall under degradation, per objective x setting x language x modality x group:
    the mean recall change over the conditions (``mean_delta``, descriptive), its rank within the group (1 =
    the largest loss), the worst condition, and in how many conditions this group's change differs from the
    other group's at p < ``alpha`` (``n_worse`` / ``n_better``: this group lost significantly more / less).
    The per-condition changes with their CIs are the rows of ``per_class`` itself."""
    keys = ["objective", "setting", "language", "modality", "group"]
    # a class a group has no test utterances of (EmoDB has no surprise) has no recall to change
    frame = per_class[per_class["delta"].notna()].copy()
    has_inter = "delta_vs_other_p" in frame
    sig = frame["delta_vs_other_p"] < alpha if has_inter else pd.Series(False, index=frame.index)
    frame["worse"] = sig & (frame.get("delta_vs_other", 0) < 0)
    frame["better"] = sig & (frame.get("delta_vs_other", 0) > 0)
    worst = frame.loc[
        frame.groupby([*keys, "label"], sort=False)["delta"].idxmin(), [*keys, "label", "condition"]
    ]
    out = (
        frame.groupby([*keys, "label"], sort=False)
        .agg(
            mean_delta=("delta", "mean"),
            n_conditions=("delta", "size"),
            n_worse=("worse", "sum"),
            n_better=("better", "sum"),
            n=("n", "first"),
        )  # fmt: skip
        .reset_index()
        .merge(worst.rename(columns={"condition": "worst_condition"}), on=[*keys, "label"])
    )
    out["rank"] = out.groupby(keys, sort=False)["mean_delta"].rank(method="min").astype(int)
    return out


def render_class_changes(per_class: pd.DataFrame, *, ci: float = 0.95, alpha: float = 0.05) -> str:
    """Markdown: the class ranking (:func:`class_ranking`) per objective x setting x language x modality, men and
    women side by side, then every condition's recall change per class and group with the paired CI and the
    women − men difference with its CI and p (the class x gender interaction)."""
    if per_class.empty:
        return ""
    pct = int(round(ci * 100))
    ranking = class_ranking(per_class, alpha=alpha)
    groups = list(dict.fromkeys(per_class["group"]))
    lines = ["## Which classes lose most recall", "",
             "Mean recall change over the conditions (percentage points; rank 1 = largest loss within the group). "
             f"'worse in k' counts the conditions in which this group lost significantly more recall than the other "
             f"(paired permutation of group labels among speakers, p < {alpha}); the per-condition changes with their "
             f"{pct}% CIs follow.", ""]  # fmt: skip
    cell_keys = ["objective", "setting", "language", "modality"]
    for key, sub in ranking.groupby(cell_keys, sort=False):
        lines += [f"### {key[0]}, setting {key[1]}: {key[2]} / {key[3]}", "",
                  "| class | " + " | ".join(f"{g}: mean Δ (rank) | {g}: worst condition | {g}: worse in k" for g in groups) + " |",
                  "|---|" + "---|---|---|" * len(groups)]  # fmt: skip
        for label, rows in sub.groupby("label", sort=False):
            cells = []
            for g in groups:
                r = rows[rows["group"] == g]
                if r.empty:
                    cells += ["—", "—", "—"]
                    continue
                r = r.iloc[0]
                cells += [f"{r['mean_delta'] * 100:+.1f} ({r['rank']})", str(r["worst_condition"]),
                          f"{int(r['n_worse'])}/{int(r['n_conditions'])}"]  # fmt: skip
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Recall change per condition, class and group", "",
              f"Δ = degraded − clean recall (pp) with the paired speaker-level {pct}% CI; '{groups[-1]} − {groups[0]}' is "
              "the difference of the two groups' changes with its CI and p.", ""]  # fmt: skip
    two = len(groups) == 2 and "delta_vs_other" in per_class
    head = "| objective | setting | condition | language | modality | class | " + " | ".join(
        f"Δ {g} [CI]" for g in groups
    )
    head += f" | {groups[-1]} − {groups[0]} [CI] | p |" if two else " |"
    lines += [head, "|---" * (6 + len(groups) + (2 if two else 0)) + "|"]
    for key, sub in per_class.groupby([*cell_keys[:2], "condition", *cell_keys[2:], "label"], sort=False):
        by = sub.set_index("group")
        cells = [
            _ci_text(by.loc[g], "delta", low="ci_low", high="ci_high") if g in by.index else "—"
            for g in groups
        ]
        if two and groups[-1] in by.index:
            r = by.loc[groups[-1]]
            cells += [_ci_text(r, "delta_vs_other"), f"{r['delta_vs_other_p']:.3f}"]
        lines.append("| " + " | ".join(str(k) for k in key) + " | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def _ci_text(row: pd.Series, col: str, *, low: str | None = None, high: str | None = None) -> str:
    v = row[col]
    if not np.isfinite(v):
        return "—"
    lo, hi = row[low or col + "_ci_low"], row[high or col + "_ci_high"]
    return f"{v * 100:+.1f} [{lo * 100:+.1f}, {hi * 100:+.1f}]"
