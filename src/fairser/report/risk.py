"""The report's training-data bias risk section: per language, the Jensen-Shannon divergence between the
sensitive values' emotion distributions in the training split (``data_risk.csv``, :mod:`fairser.data.risk`)
beside the baseline's measured W-F1 gap (mean ± std over seeds), as a table and a figure.

Only a benchmark folder written since the risk table exists holds ``data_risk.csv``; without it the section is
left out (:func:`risk_section` returns ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.transforms import offset_copy

from fairser.data.risk import JS_BASE, DataRisk, read_data_risk
from fairser.report.figures import MARKERS, _decorate, _figure, figure_png
from fairser.report.html import ReportFigure
from fairser.results.aggregate import seed_stats

__all__ = ["DATA_RISK_FILE", "RiskSection", "plot_risk_vs_gap", "risk_section", "risk_vs_gap"]

#: The file a benchmark writes into its output folder (:func:`fairser.bench.runner.run_benchmark`).
DATA_RISK_FILE = "data_risk.csv"


@dataclass
class RiskSection:
    """A report section: title, paragraphs, a table and a figure."""

    id: str
    title: str
    paragraphs: list[str]
    table: pd.DataFrame
    figure: ReportFigure | None


def risk_vs_gap(
    risk: DataRisk, rows: list[dict[str, Any]], *, baseline: str, alpha: float = 0.05
) -> pd.DataFrame:
    """One row per language x modality: the language's training-data JS divergence and the ``baseline``
    objective's W-F1 gap in that domain, mean and std over seeds (fractions), with the number of seeds and of
    seeds whose permutation p-value is below ``alpha``.

    Columns: ``language, modality, js_divergence, gap, gap_std, n_seeds, n_significant``. A language of the
    risk table without runs has no row; a domain without a risk row has a NaN divergence.
    """
    recs = []
    for r in rows:
        if r.get("objective_label") != baseline:
            continue
        for d in r["domains"]:
            gap, p = d.get("weighted_f1_gap"), d.get("weighted_f1_p_value")
            recs.append(
                {
                    "language": str(d["language"]),
                    "modality": str(d["modality"]),
                    "seed": r["seed"],
                    "gap": np.nan if gap is None else float(gap),
                    "significant": float(p is not None and np.isfinite(p) and p < alpha),
                }
            )
    columns = ["language", "modality", "js_divergence", "gap", "gap_std", "n_seeds", "n_significant"]
    if not recs:
        return pd.DataFrame(columns=columns)
    long = pd.DataFrame(recs)
    stats = seed_stats(long, by=["language", "modality"], values=["gap"])
    stats["n_significant"] = (
        long.groupby(["language", "modality"], sort=False)["significant"].sum().astype(int).to_numpy()
    )
    js = risk.per_language().set_index("language")["js_divergence"].astype(float)
    stats["js_divergence"] = stats["language"].map(js).astype(float)
    return stats[columns]


def _fmt(x: float, digits: int) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _display_table(risk: DataRisk, points: pd.DataFrame, *, baseline: str) -> pd.DataFrame:
    """Per language: training rows per value, the JS divergence and the baseline's gap per modality."""
    per_lang = risk.per_language()
    out = []
    for rec in per_lang.to_dict(orient="records"):
        row: dict[str, Any] = {"language": rec["language"], "corpus": rec["corpus"]}
        for v in risk.values:
            row[f"n train {v}"] = int(rec.get(f"n_{v}", 0))
        row["n unknown"] = int(rec["n_unknown"])
        js = float(rec["js_divergence"])
        row[f"JS divergence (base {JS_BASE})"] = _fmt(js, 4) if np.isfinite(js) else f"– ({rec['reason']})"
        if len(risk.values) > 2:
            row["pair"] = rec["js_pair"]
        for p in points[points["language"] == rec["language"]].to_dict(orient="records"):
            gap = f"{_fmt(100 * p['gap'], 1)}"
            if np.isfinite(p["gap_std"]):
                gap += f" ± {100 * p['gap_std']:.1f}"
            gap += f" (p < 0.05: {p['n_significant']}/{p['n_seeds']})"
            row[f"{baseline} W-F1 gap, {p['modality']} (%)"] = gap
        out.append(row)
    return pd.DataFrame(out)


def plot_risk_vs_gap(
    points: pd.DataFrame, *, baseline: str, attribute: str, synthetic: bool = False, source: str | None = None
) -> Figure:
    """Scatter of the baseline's W-F1 gap (y, %, mean ± std over seeds) against the language's training-data JS
    divergence (x), one marker shape per modality, each point labelled with its language."""
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    shown = points[
        np.isfinite(points["js_divergence"].astype(float)) & np.isfinite(points["gap"].astype(float))
    ]
    groups = list(shown.groupby("modality", sort=False))
    for i, (modality, sub) in enumerate(groups):
        std = sub["gap_std"].astype(float).to_numpy()
        # the modalities of a language share its divergence: dodge them a few points apart (display only)
        dodge = offset_copy(ax.transData, fig=fig, x=7.0 * (i - (len(groups) - 1) / 2), y=0.0, units="points")
        ax.errorbar(
            sub["js_divergence"].astype(float),
            100 * sub["gap"].astype(float),
            yerr=np.where(np.isfinite(std), 100 * std, 0.0),
            fmt=MARKERS[i % len(MARKERS)],
            markersize=8,
            color="black",
            ecolor="0.4",
            capsize=4,
            markerfacecolor="white" if i % 2 else "black",
            markeredgewidth=1.4,
            label=str(modality),
            transform=dodge,
        )
    labelled: set[str] = set()  # each language once, beside its right-most point
    for i, (_, sub) in reversed(list(enumerate(groups))):
        for rec in sub.to_dict(orient="records"):
            if str(rec["language"]) in labelled:
                continue
            labelled.add(str(rec["language"]))
            ax.annotate(
                str(rec["language"]),
                (float(rec["js_divergence"]), 100 * float(rec["gap"])),
                xytext=(6 + 7.0 * (i - (len(groups) - 1) / 2), 3),
                textcoords="offset points",
                fontsize=9,
            )
    if len(shown):  # dodged artists do not update the data limits: give them the points and their bars
        x = shown["js_divergence"].astype(float).to_numpy()
        y, std = (
            100 * shown["gap"].astype(float).to_numpy(),
            100 * shown["gap_std"].astype(float).fillna(0).to_numpy(),
        )
        ax.update_datalim(np.column_stack([np.r_[x, x, 0.0], np.r_[y - std, y + std, 0.0]]))
        ax.autoscale_view()
    ax.set_xlabel(f"training-data JS divergence of the {attribute} emotion distributions (base {JS_BASE})")
    ax.set_ylabel(f"{baseline} W-F1 {attribute} gap (%)")
    ax.grid(True, color="0.85", linewidth=0.6)
    ax.margins(0.2)
    if len(shown):
        ax.legend(title="modality", fontsize=8, loc="best", frameon=True)
    fig.suptitle("Training-data bias risk vs measured gap", y=0.93 if synthetic else 0.985)
    _decorate(
        fig,
        synthetic=synthetic,
        source=source,
        caption="Error bars: ± std over seeds. One point per language x modality; the modalities of a language "
        "share its divergence and are drawn a few points apart.",
    )
    fig.subplots_adjust(left=0.12, right=0.96, top=0.82 if synthetic else 0.88, bottom=0.2)
    return fig


def risk_section(
    path: str | Path,
    rows: list[dict[str, Any]],
    *,
    baseline: str,
    synthetic: bool,
    source: str | None,
    dpi: int = 110,
) -> RiskSection | None:
    """The section for a benchmark folder holding ``data_risk.csv``; ``None`` when it has none."""
    file = Path(path) / DATA_RISK_FILE
    if not file.is_file():
        return None
    risk = read_data_risk(file)
    points = risk_vs_gap(risk, rows, baseline=baseline)
    what = "all labelled rows" if risk.split is None else f"the {risk.split!r} split"
    paragraphs = [
        f"Per language, the emotion distribution of each {risk.attribute} value in {what}, and the Jensen–Shannon "
        f"divergence between them (base {JS_BASE}: 0 = the same distribution, 1 = disjoint"
        + ("; the largest pairwise one, with its pair" if len(risk.values) > 2 else "")
        + "), set beside the measured W-F1 gap of "
        f"{baseline} (mean ± std over seeds; in brackets the seeds whose permutation test gives p < 0.05). "
        f"Lin et al. (2024, Emo-bias) found such training-data differences to predict the gap better than the "
        f"encoder does (METHODS.md §5). Rows of unknown {risk.attribute} are left out and counted. The "
        f"distributions and counts are in `{DATA_RISK_FILE}`.",
    ]
    n_lang = risk.per_language()["language"].nunique()
    if n_lang < 3:
        paragraphs.append(f"With {n_lang} language(s) the figure cannot show a relation, only the values.")
    figure = None
    if len(points):
        fig = plot_risk_vs_gap(
            points, baseline=baseline, attribute=risk.attribute, synthetic=synthetic, source=source
        )
        missing = sorted(set(points.loc[~np.isfinite(points["js_divergence"].astype(float)), "language"]))
        figure = ReportFigure(
            "data_risk",
            figure_png(fig, dpi=dpi),
            f"{baseline}'s W-F1 {risk.attribute} gap per language and modality (mean ± std over seeds) against "
            f"the language's training-data JS divergence."
            + (f" Not drawn (divergence undefined): {', '.join(missing)}." if missing else ""),
            "Scatter of the measured gap against the training-data Jensen-Shannon divergence, per language",
        )
    return RiskSection(
        id="data-risk",
        title="Training-data bias risk",
        paragraphs=paragraphs,
        table=_display_table(risk, points, baseline=baseline),
        figure=figure,
    )
