"""Reports people read: one self-contained HTML file, PNG figures and a Markdown table (``fairser report``).

Start with :func:`build_report` on a benchmark output folder or an audit folder. The figures are usable on
their own (e.g. :func:`plot_tradeoff` for a method comparison from ``results.jsonl`` rows via
:func:`tradeoff_points`).
"""

from fairser.report.build import Report, build_report, headline_table
from fairser.report.data import (
    ReportData,
    load_audit_folder,
    load_benchmark_folder,
    load_report_data,
    weight_dynamics,
)
from fairser.report.figures import (
    MARKERS,
    figure_png,
    gap_cells,
    plot_gap_heatmap,
    plot_per_class_gaps,
    plot_tradeoff,
    plot_weight_dynamics,
    tradeoff_points,
)
from fairser.report.html import ReportFigure, markdown_table_to_html, render_html
from fairser.report.markdown import frame_to_markdown, render_markdown

__all__ = [
    "MARKERS",
    "Report",
    "ReportData",
    "ReportFigure",
    "build_report",
    "figure_png",
    "frame_to_markdown",
    "gap_cells",
    "headline_table",
    "load_audit_folder",
    "load_benchmark_folder",
    "load_report_data",
    "markdown_table_to_html",
    "plot_gap_heatmap",
    "plot_per_class_gaps",
    "plot_tradeoff",
    "plot_weight_dynamics",
    "render_html",
    "render_markdown",
    "weight_dynamics",
    "tradeoff_points",
]
