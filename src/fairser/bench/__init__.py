"""The benchmark grid runner (imported on first use, so reading results stays fast).

The results store and the tables live in :mod:`fairser.results`.
"""

__all__ = ["run_benchmark"]


def __getattr__(name: str):
    if name == "run_benchmark":
        from fairser.bench.runner import run_benchmark

        return run_benchmark
    raise AttributeError(f"module 'fairser.bench' has no attribute {name!r}")
