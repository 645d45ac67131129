"""``fairser report``: a benchmark or audit folder -> one self-contained HTML file, PNG figures, Markdown."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fairser.report.data import ReportData, load_report_data
from fairser.report.figures import (
    figure_png,
    gap_cells,
    plot_gap_heatmap,
    plot_per_class_gaps,
    plot_tradeoff,
    plot_weight_dynamics,
    tradeoff_points,
)
from fairser.report.html import ReportFigure, render_html
from fairser.report.markdown import render_markdown
from fairser.report.risk import risk_section
from fairser.results.aggregate import seed_stats
from fairser.results.labels import SensitiveLabels, sensitive_labels
from fairser.results.tables import (
    fmt_pm,
    gaps_table,
    long_results,
    paper_table,
    read_mdg,
    render_gaps,
    render_table,
)

__all__ = ["Report", "build_report", "headline_table"]


@dataclass
class Report:
    """Where a report was written."""

    out_dir: Path
    html: Path
    markdown: Path
    table: Path | None
    undefined: Path
    figures: dict[str, Path] = field(default_factory=dict)
    data: ReportData | None = None

    def files(self) -> list[Path]:
        out = [self.html, self.markdown, *self.figures.values(), self.undefined]
        if self.table is not None:
            out.insert(2, self.table)
        return out


def headline_table(rows: list[dict]) -> pd.DataFrame:
    """Per objective and setting: overall W-F1, mean and worst-domain W-F1 gap of the rows' sensitive attribute,
    in % (mean ± std over seeds)."""
    long = long_results(rows)
    if long.empty:
        return pd.DataFrame()
    by = ["objective", "setting"]
    overall = seed_stats(long[long["language"] == "Overall"], by=by, values=["weighted_f1", "gap"])
    worst = seed_stats(long[long["language"] == "Worst domain"], by=by, values=["gap"])
    stats = overall.merge(worst[[*by, "gap", "gap_std"]], on=by, how="left", suffixes=("", "_worst"))
    return pd.DataFrame(
        [
            {
                "objective": r["objective"],
                "setting": r["setting"],
                "seeds": int(r["n_seeds"]),
                "W-F1 (%)": fmt_pm(r["weighted_f1"], r["weighted_f1_std"]),
                "mean gap (%)": fmt_pm(r["gap"], r["gap_std"]),
                "worst-domain gap (%)": fmt_pm(r["gap_worst"], r["gap_std_worst"]),
            }
            for r in stats.to_dict(orient="records")
        ]
    )


def build_report(
    source: str | Path,
    *,
    out_dir: str | Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    dpi: int = 110,
    progress: bool = False,
) -> Report:
    """Render the report of a benchmark output folder or an audit folder.

    Parameters
    ----------
    source : path
        A folder with ``results.jsonl`` (``fairser benchmark``) or ``audit.json`` (``fairser audit --out``).
    out_dir : path, optional
        Where to write; default ``<source>/report``. Writes ``report.html`` (self-contained: figures
        embedded as base64 PNG, CSS inline, no network needed), ``report.md``, ``table.md`` / ``table.csv``
        (the paper-style table, then the gaps with their uncertainty), ``gaps.csv``, ``undefined.csv`` and ``figures/gap_heatmap.png``, ``figures/tradeoff.png``,
        ``figures/per_class_tpr_gaps.png``, and the training-data bias risk section with
        ``figures/data_risk.png`` when a benchmark folder holds ``data_risk.csv``.
    n_boot : int
        Bootstrap resamples for the per-class CIs of a benchmark folder (an audit folder has its own CIs).
    seed : int
        Seed of that bootstrap.
    """
    source = Path(source)
    data = load_report_data(source, n_boot=n_boot, seed=seed, progress=progress)
    out = Path(out_dir) if out_dir is not None else (source if source.is_dir() else source.parent) / "report"
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    src_text = data.source
    row_name, col_name = data.axis_names
    sensitive = sensitive_labels(data.rows)  # refuses rows of different attributes

    figures: list[ReportFigure] = []
    cells = gap_cells(data.rows)
    fig = plot_gap_heatmap(
        cells,
        row_name=row_name or "domain",
        col_name=col_name or "",
        synthetic=data.synthetic,
        source=src_text,
        sensitive=sensitive,
    )
    figures.append(
        ReportFigure(
            "gap_heatmap",
            figure_png(fig, dpi=dpi),
            f"{sensitive.gap_title} in W-F1 per {row_name or 'domain'} × {col_name or '-'} and objective, "
            "in % (mean ± std over seeds), with the number of seeds whose permutation test gives p < 0.05. "
            "Hatched cells (n/a) are undefined; the reasons are listed below.",
            f"Heatmap of the W-F1 {sensitive.gap} per domain, one panel per objective",
        )
    )
    points = tradeoff_points(data.rows)
    fig = plot_tradeoff(points, synthetic=data.synthetic, source=src_text, sensitive=sensitive)
    errors = "; ".join(sorted(set(points["error"].dropna()))) or "none"
    figures.append(
        ReportFigure(
            "tradeoff",
            figure_png(fig, dpi=dpi),
            f"Overall W-F1 against the worst-domain W-F1 {sensitive.gap}, one point per objective (up and left "
            f"is better). Error bars: {errors}.",
            f"Scatter of overall W-F1 against worst-domain {sensitive.gap} per objective",
        )
    )
    if len(data.per_class):
        fig = plot_per_class_gaps(
            data.per_class,
            domain_cols=data.domain_cols,
            ci=data.ci,
            synthetic=data.synthetic,
            source=src_text,
            error_label=data.per_class_error,
            group_label=sensitive.spread,
        )
        figures.append(
            ReportFigure(
                "per_class_tpr_gaps",
                figure_png(fig, dpi=dpi),
                f"Which emotions drive the gap: per-class {sensitive.gap} in TPR (recall); bars: "
                f"{data.per_class_error or f'{int(round(100 * data.ci))}% speaker-level bootstrap CI'}. "
                f"{data.per_class_caption}",
                f"Per-class TPR {sensitive.name} gaps with confidence intervals, one panel per domain",
            )
        )
    if len(data.dynamics):
        fig = plot_weight_dynamics(
            data.dynamics, synthetic=data.synthetic, source=src_text, sensitive=sensitive
        )
        figures.append(
            ReportFigure(
                "weight_dynamics",
                figure_png(fig, dpi=dpi),
                f"ERM-MinMaxGAP's training dynamics: R_t (the largest {_loss_gap(sensitive)} over domains "
                "in a batch) and the weight λ_t, median over each epoch's steps (steps without a domain holding "
                f"{_two_values(sensitive)} left out), one line per run. With weight: dual, a λ_t that keeps rising means "
                "R_t stays above the gap budget; with fixed it is flat, with ratio it moves against R_t. R_t "
                "measured on batches includes sampling noise (a few samples per group), so it stays above zero "
                "even when the groups' true training losses are equal; with noise: permutation the gray dashed "
                "line is R_null, the same gap with the values shuffled within each domain (its noise level), and "
                "λ_t is updated once per epoch by the mean of R_t − R_null − budget, so it falls when the excess "
                "gap is within budget.",
                "Line plots of the penalty R_t and the weight lambda_t per epoch for each ERM-MinMaxGAP run",
            )
        )
    risk = None
    if data.kind == "benchmark":  # training-data bias risk, when the folder has data_risk.csv
        risk = risk_section(
            data.path, data.rows, baseline=data.baseline, synthetic=data.synthetic, source=src_text, dpi=dpi
        )
    sections = [] if risk is None else [risk]
    if data.kind == "benchmark":  # robustness to degradations, when the folder has robustness.csv
        from fairser.report.robustness import robustness_section

        robust = robustness_section(data.path, synthetic=data.synthetic, source=src_text, dpi=dpi)
        if robust is not None:
            sections.append(robust)
    paths: dict[str, Path] = {}
    for f in [*figures, *(s.figure for s in sections if s.figure is not None)]:
        f.filename = f"figures/{f.name}.png"
        paths[f.name] = out / f.filename
        paths[f.name].write_bytes(f.png)

    table = paper_table(data.rows, baseline=data.baseline)
    table_md = render_table(table, synthetic=data.synthetic, source=src_text, n_seeds=max(1, data.n_seeds))
    if data.kind == "audit" and data.axis_names != ("language", "modality"):
        table_md += f"\nLanguage = {row_name or 'all'}, Modality = {col_name or 'all'} (the audit's domain columns).\n"
    # the gaps with their CI, p-value and minimum detectable gap (the benchmark's mdg.csv, when there is one)
    gaps = gaps_table(
        data.rows, baseline=data.baseline, mdg=read_mdg(data.path) if data.kind == "benchmark" else None
    )
    gaps_md = render_gaps(gaps, ci=data.ci)
    (out / "table.md").write_text(table_md + "\n" + gaps_md)
    table.to_csv(out / "table.csv", index=False)
    gaps.to_csv(out / "gaps.csv", index=False)
    undefined_path = out / "undefined.csv"
    data.undefined.to_csv(undefined_path, index=False)

    headline = headline_table(data.rows)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kind = "benchmark output folder" if data.kind == "benchmark" else "audit folder"
    meta_lines = [
        f"**Data source:** {src_text}" + (" — **SYNTHETIC**" if data.synthetic else ""),
        f"**Input:** {kind} `{data.path}`; {len(data.rows)} run(s), {data.n_seeds} seed(s), baseline {data.baseline}.",
        f"**Generated:** {when} by fairser report.",
        f"Gap = {sensitive.formula() if sensitive.is_gender else sensitive.description} within a domain "
        "(METHODS.md §2); mean gap = mean over domains; "
        "worst-domain gap = max over domains.",
    ]
    files = [
        str(p)
        for p in (
            out / "report.html",
            out / "report.md",
            out / "table.md",
            out / "table.csv",
            out / "gaps.csv",
            undefined_path,
            *paths.values(),
        )
    ]
    title = f"fairser report: {sensitive.name} gaps in speech emotion recognition"
    page = render_html(
        title=title,
        synthetic=data.synthetic,
        meta_lines=meta_lines,
        headline=headline,
        headline_markdown=gaps_md,
        figures=figures,
        table_markdown=table_md,
        undefined=data.undefined,
        notes=data.notes,
        warnings=data.warnings,
        files=files,
        sections=sections,
    )
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    md = render_markdown(
        title=title,
        synthetic=data.synthetic,
        meta_lines=meta_lines,
        headline=headline,
        headline_markdown=gaps_md,
        figures=[(f.filename, f.caption) for f in figures],
        table_markdown=table_md,
        undefined=data.undefined,
        notes=data.notes,
        warnings=data.warnings,
        sections=sections,
    )
    md_path = out / "report.md"
    md_path.write_text(md, encoding="utf-8")
    return Report(
        out_dir=out,
        html=html_path,
        markdown=md_path,
        table=out / "table.md",
        undefined=undefined_path,
        figures=paths,
        data=data,
    )


def _loss_gap(sensitive: SensitiveLabels) -> str:
    """MinMaxGAP's R_t, in words: the male–female training-loss gap, or max − min over the values."""
    if sensitive.is_gender:
        return "male–female training-loss gap"
    if len(sensitive.values) == 2:
        return f"{sensitive.name} training-loss gap {sensitive.spread}"
    return f"{sensitive.name} training-loss gap, max − min over its {len(sensitive.values)} values,"


def _two_values(sensitive: SensitiveLabels) -> str:
    """Which steps MinMaxGAP leaves out: those without a domain holding these."""
    if sensitive.is_gender:
        return "both genders"
    return f"both {sensitive.name} values" if len(sensitive.values) == 2 else f"two {sensitive.name} values"
