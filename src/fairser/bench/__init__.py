"""The benchmark grid runner, its results store and the paper-style table.

The runner (and with it torch) is imported on first use, so reading results stays fast.
"""

from fairser.bench.results import ResultsStore
from fairser.bench.table import paper_table, render_table

__all__ = [
    "ResultsStore",
    "execute_run",
    "paper_table",
    "plan_runs",
    "prepare_data",
    "render_table",
    "run_benchmark",
]

_LAZY = ("execute_run", "plan_runs", "prepare_data", "run_benchmark")


def __getattr__(name: str):
    if name in _LAZY:
        from fairser.bench import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'fairser.bench' has no attribute {name!r}")
