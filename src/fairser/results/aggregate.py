"""The one seed aggregation: mean, standard deviation and number of seeds of a long frame, per group.

Every table and figure that reports "mean ± std over seeds" (the paper table, the comparison table, the
report's headline table, gap heatmap and trade-off plot) computes it here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["seed_stats"]


def seed_stats(
    long: pd.DataFrame, *, by: Sequence[str], values: Sequence[str], seed: str = "seed"
) -> pd.DataFrame:
    """Per group of ``by`` (in order of first appearance): each ``values`` column's mean over the group's
    rows (one per seed), its standard deviation (``<value>_std``, ddof=1: NaN for one seed) and the number
    of distinct seeds (``n_seeds``). NaN values are left out of the mean and std (a cell undefined in some
    seeds is the mean over the others).

    Columns: ``*by``, ``*values``, ``<value>_std`` for each value, ``n_seeds``.
    """
    cols = list(values)
    g = long.groupby(list(by), sort=False)
    out = g[cols].mean().join(g[cols].std().add_suffix("_std")).join(g[seed].nunique().rename("n_seeds"))
    return out.reset_index()
