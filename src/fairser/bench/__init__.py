"""The benchmark grid runner, its results store and the paper-style table."""

from fairser.bench.results import ResultsStore
from fairser.bench.runner import run_benchmark
from fairser.bench.table import paper_table

__all__ = ["ResultsStore", "paper_table", "run_benchmark"]
