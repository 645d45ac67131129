"""Report figures (matplotlib, Agg): gap heatmap, W-F1 vs worst-domain gap trade-off, per-class TPR gaps,
and ERM-MinMaxGAP's training dynamics (lambda_t and R_t per epoch).

Every figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas (no pyplot state, no display,
and a notebook's backend is left alone), reads in
grayscale (values written in the cells, distinct marker shapes and fills, hatching for undefined cells, a
luminance-monotone colour map), labels its axes, names its data source and carries a "SYNTHETIC DATA"
banner when the numbers come from the built-in synthetic corpus. Texts name the gap of the runs' sensitive
attribute (``sensitive=``, a :class:`~fairser.results.labels.SensitiveLabels`; gender by default).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from fairser.results.aggregate import seed_stats
from fairser.results.labels import GENDER, SensitiveLabels
from fairser.results.tables import long_results

__all__ = [
    "MARKERS",
    "figure_png",
    "gap_cells",
    "plot_gap_heatmap",
    "plot_per_class_gaps",
    "plot_tradeoff",
    "plot_weight_dynamics",
    "tradeoff_points",
]

#: Marker shapes cycled over objectives / series (distinct in grayscale); fills alternate solid / hollow.
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_CMAP = "cividis"  # perceptually uniform and monotone in lightness: readable when printed in grayscale
_NA = "n/a"


def _pct(x: Any) -> float:
    return math.nan if x is None or not np.isfinite(x) else 100.0 * float(x)


def _decorate(fig: Figure, *, synthetic: bool, source: str | None, caption: str | None = None) -> None:
    """Footer with the data source (and caption), banner when synthetic."""
    if synthetic:
        fig.text(
            0.5,
            0.995,
            "SYNTHETIC DATA — built-in eSpeak NG corpus, not real speech",
            ha="center",
            va="top",
            fontsize=10,
            fontweight="bold",
            color="white",
            bbox={"facecolor": "black", "edgecolor": "black", "boxstyle": "square,pad=0.3"},
        )
    lines = [t for t in (caption, f"Data: {source}" if source else None) if t]
    if lines:
        fig.text(0.01, 0.005, "\n".join(lines), ha="left", va="bottom", fontsize=7, wrap=True)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)  # render with Agg whatever pyplot's backend is
    return fig


def figure_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (for files and for base64 embedding in the HTML report)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- heatmap


def gap_cells(rows: list[dict[str, Any]], *, alpha: float = 0.05) -> pd.DataFrame:
    """Per objective × language × modality: mean and std over seeds of the W-F1 gender gap, and in how
    many seeds the permutation test rejects a zero gap (``p < alpha``).

    ``rows`` are benchmark result rows (``results.jsonl``; see :mod:`fairser.results.rows`).
    """
    out = []
    for r in rows:
        for d in r["domains"]:
            gap, p = d.get("weighted_f1_gap"), d.get("weighted_f1_p_value")
            out.append(
                {
                    "objective": r["objective_label"],
                    "language": str(d["language"]),
                    "modality": str(d["modality"]),
                    "seed": r["seed"],
                    "gap": np.nan if gap is None else float(gap),
                    "significant": None if p is None or not np.isfinite(p) else bool(p < alpha),
                    "reason": d.get("weighted_f1_reason") or "",
                }
            )
    cols = ["objective", "language", "modality"]
    if not out:
        return pd.DataFrame(
            columns=[*cols, "gap", "gap_std", "n_seeds", "n_tested", "n_significant", "reason"]
        )
    frame = pd.DataFrame(out)
    stats = seed_stats(frame, by=cols, values=["gap"])
    tests = frame.groupby(cols, sort=False).agg(
        n_tested=("significant", lambda s: int(s.notna().sum())),
        n_significant=("significant", lambda s: int((s == True).sum())),  # noqa: E712 (object column)
        reason=("reason", lambda s: "; ".join(dict.fromkeys(x for x in s if x))),
    )
    return stats.join(tests, on=cols)


def plot_gap_heatmap(
    cells: pd.DataFrame,
    *,
    row_name: str = "language",
    col_name: str = "modality",
    synthetic: bool = False,
    source: str | None = None,
    alpha: float = 0.05,
    sensitive: SensitiveLabels = GENDER,
) -> Figure:
    """Language × modality heatmap of the W-F1 gap of the ``sensitive`` attribute (gender by default), one
    panel per objective (METHODS.md §2).

    Each cell shows the gap in % (mean ± std over seeds when several) and how many seeds' permutation
    tests give ``p < alpha``; undefined cells are hatched and marked "n/a". One colour scale for all panels.

    Parameters
    ----------
    cells : DataFrame
        From :func:`gap_cells`: ``objective, language, modality, gap, gap_std, n_seeds, n_tested,
        n_significant``.
    row_name, col_name : str
        Axis labels for the ``language`` and ``modality`` keys (other domain columns can be mapped on them).
    """
    objectives = list(dict.fromkeys(cells["objective"]))
    rows = sorted(dict.fromkeys(cells["language"]))
    cols = sorted(dict.fromkeys(cells["modality"]))
    n = max(1, len(objectives))
    ncols = min(n, 4)  # a method zoo wraps onto several rows of panels
    nrows = math.ceil(n / ncols)
    width = min(4.0 + 0.2 * len(cols), 2.2 + 1.4 * len(cols))
    header, footer, panel, gap = (1.2 if synthetic else 0.8), 1.3, 0.75 * len(rows) + 0.3, 0.9  # inches
    height = header + footer + nrows * panel + (nrows - 1) * gap
    fig = _figure(max(5.0, width * ncols + 1.2), height)
    grid_axes = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid_axes.ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    values = 100 * cells["gap"].to_numpy(dtype=float)
    vmax = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    vmax = max(vmax, 1e-6)
    image = None
    for ax, obj in zip(axes, objectives, strict=False):
        sub = cells[cells["objective"] == obj].set_index(["language", "modality"])
        grid = np.full((len(rows), len(cols)), np.nan)
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                if (r, c) in sub.index:
                    grid[i, j] = 100 * float(sub.loc[(r, c), "gap"])
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=_CMAP, vmin=0, vmax=vmax, aspect="auto")
        cmap = image.get_cmap()
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                if (r, c) not in sub.index or not np.isfinite(grid[i, j]):
                    ax.add_patch(
                        Rectangle(
                            (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.55", linewidth=0
                        )
                    )
                    ax.text(
                        j,
                        i,
                        _NA,
                        ha="center",
                        va="center",
                        fontsize=9,
                        color="black",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
                    )
                    continue
                rec = sub.loc[(r, c)]
                text = f"{grid[i, j]:.1f}"
                if rec["n_seeds"] > 1 and np.isfinite(rec["gap_std"]):
                    text += f" ± {100 * rec['gap_std']:.1f}"
                if rec["n_tested"]:
                    text += (
                        f"\np<{alpha:g}: {int(rec['n_significant'])}/{int(rec['n_tested'])}"
                        if rec["n_tested"] > 1
                        else (f"\np<{alpha:g}" if rec["n_significant"] else "\nn.s.")
                    )
                lum = np.dot(cmap(grid[i, j] / vmax)[:3], (0.299, 0.587, 0.114))
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=9, color="black" if lum > 0.5 else "white"
                )
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel(col_name)
        ax.set_ylabel(row_name)
        ax.set_title(str(obj))
    top, bottom = 1 - header / height, footer / height
    fig.subplots_adjust(left=0.08, right=0.86, top=top, bottom=bottom, wspace=0.35, hspace=gap / panel)
    if image is not None:
        cax = fig.add_axes((0.89, bottom, 0.018, top - bottom))
        bar = fig.colorbar(image, cax=cax)
        sep = " " if len(sensitive.values) == 2 else ", "  # |male − female| or , max − min
        bar.set_label(f"W-F1 {sensitive.gap}{sep}{sensitive.spread} (%)")
    fig.suptitle(
        f"{sensitive.gap_title} in weighted F1 per domain", y=1 - (0.6 if synthetic else 0.25) / height
    )
    caption = (
        f"Cell: gap in % (mean ± std over seeds); p<{alpha:g}: k/n = seeds whose permutation test ({sensitive.name} "
        "shuffled between speakers) rejects a zero gap. Hatched n/a: undefined (see the report's list)."
    )
    _decorate(fig, synthetic=synthetic, source=source, caption=caption)
    return fig


# ----------------------------------------------------------------------------------------------- trade-off


def tradeoff_points(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Overall W-F1 and worst-domain W-F1 gap per objective (and setting), mean ± std over seeds.

    ``rows`` are benchmark result rows. With one seed, the error bars fall back to the bootstrap CI when
    the row carries one (``overall_weighted_f1_ci_low/high``; the ``summary`` record of ``weighted_f1``),
    else there is none. Columns: ``objective, setting, n_seeds, wf1, wf1_low, wf1_high, gap, gap_low,
    gap_high, error`` (``error`` says what the bars are); W-F1 and gaps as fractions.
    """
    long = long_results(rows)
    cols = [
        "objective",
        "setting",
        "n_seeds",
        "wf1",
        "wf1_low",
        "wf1_high",
        "gap",
        "gap_low",
        "gap_high",
        "error",
    ]
    if long.empty:
        return pd.DataFrame(columns=cols)
    by = ["objective", "setting"]
    overall = seed_stats(long[long["language"] == "Overall"], by=by, values=["weighted_f1"])
    worst = seed_stats(long[long["language"] == "Worst domain"], by=by, values=["gap"])
    stats = overall.merge(worst[[*by, "gap", "gap_std"]], on=by, how="left")
    out = []
    for s in stats.to_dict(orient="records"):
        obj, setting, n_seeds = s["objective"], s["setting"], int(s["n_seeds"])
        wf1, gap = float(s["weighted_f1"]), float(s["gap"])
        if n_seeds > 1:
            wsd, gsd = float(s["weighted_f1_std"]), float(s["gap_std"])
            rec = (wf1 - wsd, wf1 + wsd, gap - gsd, gap + gsd, "mean ± std over seeds")
        else:
            run = next(r for r in rows if r["objective_label"] == obj and r["setting"] == setting)
            summ = next((s for s in run.get("summary") or [] if s.get("metric") == "weighted_f1"), {})
            rec = (
                _num(run.get("overall_weighted_f1_ci_low")),
                _num(run.get("overall_weighted_f1_ci_high")),
                _num(summ.get("worst_gap_ci_low")),
                _num(summ.get("worst_gap_ci_high")),
                "bootstrap CI (one seed)",
            )
        out.append(
            dict(
                zip(
                    cols,
                    (obj, setting, n_seeds, wf1, rec[0], rec[1], gap, rec[2], rec[3], rec[4]),
                    strict=True,
                )
            )
        )
    return pd.DataFrame(out, columns=cols)


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def plot_tradeoff(
    points: pd.DataFrame,
    *,
    ax=None,
    title: str | None = "Accuracy–fairness trade-off",
    synthetic: bool = False,
    source: str | None = None,
    sensitive: SensitiveLabels = GENDER,
) -> Figure:
    """Overall W-F1 against the worst-domain W-F1 gap of the ``sensitive`` attribute (gender by default), one
    point per objective, with error bars.

    Up and to the left is better (accurate and fair). One panel per ``setting`` when there are several and
    no ``ax`` is given.

    Parameters
    ----------
    points : DataFrame
        From :func:`tradeoff_points` (or any table with ``objective, wf1, wf1_low, wf1_high, gap, gap_low,
        gap_high``, optional ``setting`` and ``error``; fractions, drawn in %). Missing bounds draw no bar.
    ax : matplotlib Axes, optional
        Draw into this axes (a single panel; all settings together); the figure is then ``ax.figure`` and
        no banner or footer is added.
    """
    settings = list(dict.fromkeys(points["setting"])) if "setting" in points.columns else [None]
    own = ax is None
    if own:
        fig = _figure(4.6 * len(settings) + 0.8, 4.8)
        axes = list(fig.subplots(1, len(settings), squeeze=False)[0])
    else:
        fig, axes, settings = ax.figure, [ax], [None]
    objectives = list(dict.fromkeys(points["objective"]))
    # shape cycles through MARKERS and fill alternates; with an even number of shapes the fill parity flips
    # on each pass through them, so 2 * len(MARKERS) objectives all get distinct (shape, fill) styles
    n = len(MARKERS)
    flip = n % 2 == 0
    style = {obj: (MARKERS[i % n], (i + flip * (i // n)) % 2 == 1) for i, obj in enumerate(objectives)}
    for ax_, setting in zip(axes, settings, strict=True):
        sub = points if setting is None else points[points["setting"] == setting]
        for rec in sub.to_dict(orient="records"):
            marker, hollow = style[rec["objective"]]
            x, y = _pct(rec["gap"]), _pct(rec["wf1"])
            xerr = _err(x, rec.get("gap_low"), rec.get("gap_high"))
            yerr = _err(y, rec.get("wf1_low"), rec.get("wf1_high"))
            ax_.errorbar(
                x,
                y,
                xerr=xerr,
                yerr=yerr,
                fmt=marker,
                markersize=9,
                color="black",
                ecolor="0.35",
                elinewidth=1.2,
                capsize=4,
                markerfacecolor="white" if hollow else "black",
                markeredgewidth=1.5,
                label=str(rec["objective"]),
            )
            ax_.annotate(str(rec["objective"]), (x, y), xytext=(7, 7), textcoords="offset points", fontsize=8)
        ax_.set_xlabel(f"worst-domain {sensitive.gap} in W-F1 (%)")
        ax_.set_ylabel("overall W-F1 (%)")
        if setting is not None and len(settings) > 1:
            ax_.set_title(f"setting: {setting}")
        ax_.grid(True, color="0.85", linewidth=0.6)
        ax_.margins(0.25)
        ax_.annotate(
            "better",
            xy=(0.03, 0.97),
            xytext=(0.2, 0.82),
            xycoords="axes fraction",
            textcoords="axes fraction",
            fontsize=8,
            color="0.3",
            arrowprops={"arrowstyle": "->", "color": "0.3"},
        )
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    axes[-1].legend(uniq.values(), uniq.keys(), fontsize=8, loc="lower right", frameon=True)
    if own:
        errors = sorted(set(points["error"].dropna())) if "error" in points.columns else []
        caption = "Error bars: " + "; ".join(errors) + "." if errors else None
        if title:
            fig.suptitle(title, y=0.93 if synthetic else 0.985)
        _decorate(fig, synthetic=synthetic, source=source, caption=caption)
        fig.subplots_adjust(left=0.1, right=0.97, top=0.80 if synthetic else 0.86, bottom=0.22, wspace=0.3)
    return fig


def _err(center: float, low: Any, high: Any):
    low, high = _pct(_num(low) if low is not None else None), _pct(_num(high) if high is not None else None)
    if not (np.isfinite(center) and np.isfinite(low) and np.isfinite(high)):
        return None
    return np.array([[max(center - low, 0.0)], [max(high - center, 0.0)]])


# ----------------------------------------------------------------------------------------------- per class


def plot_per_class_gaps(
    per_class: pd.DataFrame,
    *,
    domain_cols: Sequence[str] = ("language", "modality"),
    series_col: str = "series",
    classes: Sequence[str] | None = None,
    rate: str = "tpr",
    ci: float = 0.95,
    synthetic: bool = False,
    source: str | None = None,
    caption: str | None = None,
    group_label: str = "|male − female|",
    error_label: str | None = None,
    max_panels: int = 12,
) -> Figure:
    """Per-class gender gap in TPR (recall; the ΔEO of each class) with bootstrap CIs, one panel per domain.

    Parameters
    ----------
    per_class : DataFrame
        Tidy per-class table (:attr:`fairser.metrics.Evaluation.per_class`, stacked over series) with
        ``<domain_cols>, class, <rate>_gap, <rate>_gap_ci_low, <rate>_gap_ci_high`` and ``series_col``.
    rate : {"tpr", "fpr", "sp"}
        Which per-class rate's gap to draw.
    group_label : str
        How the gap is taken, for the axis label (another attribute than gender: e.g. ``"max − min"``).
    error_label : str, optional
        What the bars are (default: the ``ci`` speaker-level bootstrap CI).
    """
    key = list(domain_cols)
    if key:
        dom_of = per_class[key].fillna("unknown").astype(str).agg(lambda r: " / ".join(map(str, r)), axis=1)
        domains = list(dict.fromkeys(dom_of))
    else:
        domains, dom_of = ["all"], pd.Series("all", index=per_class.index)
    shown = domains[:max_panels]
    classes = list(classes) if classes is not None else list(dict.fromkeys(per_class["class"]))
    series = list(dict.fromkeys(per_class[series_col]))
    ncols = min(3, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    header, footer, panel, gap = (1.35 if synthetic else 1.0), 1.0, 2.5, 1.0  # inches
    height = header + footer + nrows * panel + (nrows - 1) * gap
    fig = _figure(
        min(14.0, max(7.0, (0.5 * len(classes) * max(1, len(series)) ** 0.5 + 1.2) * ncols + 0.8)), height
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    fig.subplots_adjust(
        left=0.08,
        right=0.98,
        top=1 - header / height,
        bottom=footer / height,
        hspace=gap / panel,
        wspace=0.08,
    )
    width = 0.8 / max(1, len(series))
    col = f"{rate}_gap"
    top = np.nanmax(per_class[[f"{col}_ci_high", col]].to_numpy(dtype=float)) if len(per_class) else np.nan
    top = 100 * (top if np.isfinite(top) else 0.1)
    rotate = len(classes) > 5 or max((len(str(c)) for c in classes), default=0) > 9
    handles: dict[str, Any] = {}
    for k, dom in enumerate(shown):
        ax = axes[k // ncols][k % ncols]
        sub = per_class[dom_of == dom]
        drawn = 0
        for s_i, name in enumerate(series):
            part = sub[sub[series_col] == name].set_index("class")
            marker, hollow = MARKERS[s_i % len(MARKERS)], s_i % 2 == 1
            for c_i, cls in enumerate(classes):
                if cls not in part.index:
                    continue
                x = c_i - 0.4 + width * (s_i + 0.5)
                rec = part.loc[cls]
                y = _pct(rec[col])
                if not np.isfinite(y):
                    ax.plot([x], [0], marker="x", color="0.45", markersize=5, linestyle="none")
                    continue
                drawn += 1
                handles[str(name)] = ax.errorbar(
                    x,
                    y,
                    yerr=_err(y, rec.get(f"{col}_ci_low"), rec.get(f"{col}_ci_high")),
                    fmt=marker,
                    color="black",
                    ecolor="0.4",
                    capsize=2.5,
                    markersize=6,
                    markerfacecolor="white" if hollow else "black",
                )
        if not drawn:  # say why on the panel itself
            reasons = "; ".join(dict.fromkeys(str(r) for r in sub.get("reason", []) if str(r)))
            ax.text(
                0.5,
                0.55,
                "undefined\n" + (reasons or "no data"),
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=8,
                wrap=True,
                color="0.2",
            )
        ax.set_xlim(-0.6, len(classes) - 0.4)
        ax.set_xticks(
            range(len(classes)),
            classes,
            rotation=35 if rotate else 0,
            ha="right" if rotate else "center",
            rotation_mode="anchor",
            fontsize=8,
        )
        ax.set_title(dom, fontsize=10)
        ax.set_ylim(0, max(top * 1.1, 1.0))
        ax.grid(True, axis="y", color="0.85", linewidth=0.6)
        if k % ncols == 0:
            ax.set_ylabel(f"{rate.upper()} gap {group_label} (%)")
        if k // ncols == nrows - 1 or k + ncols >= len(shown):
            ax.set_xlabel("emotion class")
    for k in range(len(shown), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    title_y = 1 - ((0.65 if synthetic else 0.35) / height)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="center right",
            fontsize=8,
            ncols=min(4, len(handles)),
            bbox_to_anchor=(0.98, title_y),
        )
    names = {"tpr": "TPR (recall)", "fpr": "FPR", "sp": "selection rate"}
    fig.text(
        0.08, title_y, f"Per-class gap in {names.get(rate, rate)} between groups", fontsize=12, va="center"
    )
    bars = error_label or f"{int(round(100 * ci))}% speaker-level bootstrap CI"
    text = f"Markers: gap in %; bars: {bars}; x on the axis: undefined."
    if len(domains) > len(shown):
        text += f" First {len(shown)} of {len(domains)} domains shown."
    _decorate(fig, synthetic=synthetic, source=source, caption=" ".join(t for t in (caption, text) if t))
    return fig


_LINESTYLES: tuple[str, ...] = ("-", "--", ":", "-.")


def plot_weight_dynamics(
    dynamics: pd.DataFrame,
    *,
    synthetic: bool = False,
    source: str | None = None,
    sensitive: SensitiveLabels = GENDER,
    max_columns: int = 4,
) -> Figure:
    """ERM-MinMaxGAP's penalty ``R_t`` (top) and adaptive weight ``lambda_t`` (bottom) per epoch, one panel
    pair per (setting, variant), one line per run (seed).

    Pang, Gao, Kawahara, Chen (2026) weight the largest male-female loss gap adaptively; this shows whether
    the weight settles (the gap met its budget) or keeps rising (batch noise or a gap the penalty cannot
    close). With ``noise: permutation`` the runs also logged ``R_null``, the same gap with the sensitive
    values shuffled within each domain: drawn in gray (dashed) under ``R_t``, it shows how much of ``R_t`` is
    sampling noise. Panel pairs wrap after ``max_columns``.

    Parameters
    ----------
    dynamics : DataFrame
        From :func:`fairser.report.data.weight_dynamics`: ``run_id, objective, setting, seed, epoch, lambda,
        R`` and optionally ``R_null`` (one line per ``run_id``).
    """
    if dynamics.empty:
        raise ValueError("plot_weight_dynamics: no run logged lambda and R")
    panels = list(dict.fromkeys(zip(dynamics["setting"], dynamics["objective"], strict=True)))
    settings = list(dict.fromkeys(dynamics["setting"]))
    objectives = list(dict.fromkeys(dynamics["objective"]))
    has_null = "R_null" in dynamics.columns and dynamics["R_null"].notna().any()
    gap = "male−female" if sensitive.is_gender else sensitive.name  # the caption says how it is taken
    r_label = f"R_t: largest {gap} loss gap\n(median over the epoch's batches)"
    ncols = min(len(panels), max_columns)
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(4.4 * ncols + 0.8, 5.6 * nrows)
    axes = fig.subplots(2 * nrows, ncols, squeeze=False, sharex="col")
    style = {
        obj: (_LINESTYLES[i % len(_LINESTYLES)], MARKERS[i % len(MARKERS)])
        for i, obj in enumerate(objectives)
    }
    for i, (setting, obj) in enumerate(panels):
        top, bottom = axes[2 * (i // ncols)][i % ncols], axes[2 * (i // ncols) + 1][i % ncols]
        sub = dynamics[(dynamics["setting"] == setting) & (dynamics["objective"] == obj)]
        linestyle, marker = style[obj]
        first = True
        for _, run in sub.groupby("run_id", sort=False):  # one line per run (a rerun is another line)
            run = run.sort_values("epoch")
            for ax, column in ((top, "R"), (bottom, "lambda")):
                ax.plot(
                    run["epoch"],
                    run[column],
                    linestyle=linestyle,
                    marker=marker,
                    markersize=4,
                    color="black",
                    linewidth=1.2,
                    alpha=0.85,
                    label=str(obj) if first and column == "R" else None,
                )
            if has_null and run["R_null"].notna().any():
                top.plot(
                    run["epoch"],
                    run["R_null"],
                    linestyle="--",
                    color="0.55",
                    linewidth=1.0,
                    label="R_null (values shuffled within domain)" if first else None,
                )
            first = False
        title = f"{obj}" + (f" · {setting}" if len(settings) > 1 else "")
        top.set_title(title, fontsize=9)
        top.set_ylabel(r_label)
        bottom.set_ylabel("λ_t (median over the epoch)")
        bottom.set_xlabel("epoch")
        for ax in (top, bottom):
            ax.grid(True, color="0.85", linewidth=0.6)
        top.legend(fontsize=7, frameon=False)
    for i in range(len(panels), nrows * ncols):
        axes[2 * (i // ncols)][i % ncols].set_visible(False)
        axes[2 * (i // ncols) + 1][i % ncols].set_visible(False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95 if synthetic else 1.0))
    _decorate(fig, synthetic=synthetic, source=source)
    return fig
