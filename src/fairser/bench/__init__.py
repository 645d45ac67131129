"""The benchmark grid runner (imported on first use, so reading results stays fast).

The results store and the tables live in :mod:`fairser.results`; one run in :mod:`fairser.run`.
"""

__all__ = ["execute_run", "plan_runs", "prepare_data", "run_benchmark"]


def __getattr__(name: str):
    if name in __all__:
        from fairser.bench import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'fairser.bench' has no attribute {name!r}")
