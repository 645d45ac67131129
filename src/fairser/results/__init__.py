"""Benchmark results, read from below by the run pipeline (``fairser.bench``) and the report.

* :mod:`~fairser.results.store` — :class:`ResultsStore`, one JSON line per finished run;
* :mod:`~fairser.results.rows` — a run's predictions table, its evaluation and its identity fields;
* :mod:`~fairser.results.pooled` — cross-validated cells: out-of-fold predictions pooled into one row;
* :mod:`~fairser.results.aggregate` — :func:`seed_stats`, the one mean ± std over seeds;
* :mod:`~fairser.results.labels` — :func:`sensitive_labels`, how texts name the rows' sensitive attribute;
* :mod:`~fairser.results.tables` — the paper-style table and the method-zoo comparison (frames, Markdown);
* :mod:`fairser.jsonable` — :func:`jsonable`, the one conversion into JSON values.
"""

from fairser.jsonable import jsonable
from fairser.results.aggregate import seed_stats
from fairser.results.folder import FolderRows, finished_rows, one_config
from fairser.results.labels import GENDER, SensitiveLabels, sensitive_labels
from fairser.results.pooled import headline_rows, pool_predictions, pooled_row, read_fold_predictions
from fairser.results.rows import evaluate_run, predictions_table, run_fields
from fairser.results.store import ResultsStore
from fairser.results.tables import (
    comparison_table,
    fmt_delta,
    fmt_pm,
    gaps_table,
    long_results,
    paper_table,
    read_mdg,
    render_comparison,
    render_gaps,
    render_table,
)

__all__ = [
    "FolderRows",
    "GENDER",
    "ResultsStore",
    "SensitiveLabels",
    "comparison_table",
    "evaluate_run",
    "finished_rows",
    "fmt_delta",
    "fmt_pm",
    "gaps_table",
    "headline_rows",
    "jsonable",
    "long_results",
    "one_config",
    "paper_table",
    "pool_predictions",
    "pooled_row",
    "predictions_table",
    "read_fold_predictions",
    "read_mdg",
    "render_comparison",
    "render_gaps",
    "render_table",
    "run_fields",
    "seed_stats",
    "sensitive_labels",
]
