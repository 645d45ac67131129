"""The run pipeline: from a config to results rows, for cached-feature heads and raw-audio backbones alike.

* :mod:`fairser.run.prepare`: corpus, cached features, normalisation, IDI's inferred genders (once per
  benchmark): :func:`prepare_data` -> :class:`PreparedData`;
* :mod:`fairser.run.plan`: the grid, :func:`plan_runs` -> :class:`RunSpec` with run ids;
* :mod:`fairser.run.views`: one views builder (domain ids and sensitive-value ids from a
  :class:`~fairser.grouping.Grouper`);
* :mod:`fairser.run.backends` / :mod:`fairser.run.backbone`: the two backends and their trainers;
* :mod:`fairser.run.execute`: :func:`execute_run`, one grid cell to one results row.

The grid runner (process pool, results store, tables) is :func:`fairser.bench.run_benchmark`.
"""

from fairser.run.execute import execute_run, fit_staged
from fairser.run.plan import RunSpec, check_objectives, plan_runs
from fairser.run.prepare import PreparedData, prepare_data

__all__ = [
    "PreparedData",
    "RunSpec",
    "check_objectives",
    "execute_run",
    "fit_staged",
    "plan_runs",
    "prepare_data",
]
