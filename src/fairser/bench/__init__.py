"""The benchmark grid runner, its results store and the paper-style table.

The runner (and with it torch) is imported on first use, so reading results stays fast.
"""

from fairser.bench.results import ResultsStore
from fairser.bench.table import paper_table, render_table

__all__ = ["ResultsStore", "paper_table", "render_table", "run_benchmark"]


def __getattr__(name: str):
    if name == "run_benchmark":
        from fairser.bench.runner import run_benchmark

        return run_benchmark
    raise AttributeError(f"module 'fairser.bench' has no attribute {name!r}")
