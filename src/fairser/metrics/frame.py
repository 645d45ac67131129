"""The one result type of an evaluation: :class:`MetricFrame` (METHODS.md §2).

The vocabulary is fairlearn's ``MetricFrame`` (``overall``, ``by_group``, ``difference``, ``group_min``,
``group_max``) for multiclass labels, any sensitive attribute (any number of values, or an intersection),
per domain, and with what fairlearn lacks: bootstrap CIs, permutation p-values and a reason for every
number that cannot be computed. It is not fairlearn's class. :func:`fairser.metrics.evaluate_predictions`
returns one; :func:`fairser.audit.audit_predictions` returns one per (run, attribute).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fairser.jsonable import jsonable
from fairser.metrics.classification import METRICS
from fairser.metrics.fairness import FAIRNESS_GAPS

__all__ = ["GAP_METRICS", "TABLES", "MetricFrame"]

#: Every quantity with a gap (``MetricFrame.gaps``, ``MetricFrame.summary``): the gap of each metric in
#: :data:`~fairser.metrics.classification.METRICS`, then the parity gaps of
#: :data:`~fairser.metrics.fairness.FAIRNESS_GAPS`.
GAP_METRICS: tuple[str, ...] = (*METRICS, *FAIRNESS_GAPS)

#: The tidy tables of a :class:`MetricFrame` (``MetricFrame.table(name)``), one CSV each in an audit folder.
TABLES: tuple[str, ...] = ("overall", "by_domain", "by_group", "gaps", "per_class", "summary", "confusion")


@dataclass
class MetricFrame:
    """Metrics, gaps and parity of one predictions table for one sensitive attribute, per domain and value.

    The values of the attribute are ``settings["groups"]`` (in fairser's fixed order; a row whose value is
    unknown counts in ``overall`` and ``by_domain`` only). A **gap** is ``max - min`` over the values; the
    **signed gap** ``M(other) - M(reference)`` exists only with exactly two values (``settings["reference"]``
    is the first: ``male`` for gender, so ``signed_gap = M(female) - M(male)``).

    Wide views (fairlearn's names): :attr:`overall`, :attr:`by_domain`, :attr:`by_group`,
    :meth:`difference`, :meth:`signed_difference`, :meth:`group_min`, :meth:`group_max`; their uncertainty:
    :attr:`overall_ci`, :attr:`by_group_ci`, :meth:`difference_ci`, :meth:`p_values`. Tidy tables:
    :meth:`table` (any of :data:`TABLES`), and the shortcuts :attr:`gaps`, :attr:`per_class`,
    :attr:`summary`. :meth:`undefined` lists every ``NaN`` with its reason.

    Attributes
    ----------
    tables : dict of DataFrame
        The tidy tables, by name (:data:`TABLES`):

        * ``overall``: ``metric, value, ci_low, ci_high, n, n_speakers, reason`` over all rows;
        * ``by_domain``: the same per domain (all values and unknown together);
        * ``by_group``: ``<domain cols>, <attribute>, metric, value, ci_low, ci_high, n, n_speakers, reason``
          per (domain, value);
        * ``gaps``: ``<domain cols>, metric, gap, signed_gap, ci_low, ci_high, signed_ci_low,
          signed_ci_high, p_value, reason``, ``metric`` over :data:`GAP_METRICS`;
        * ``per_class``: ``<domain cols>, class``, per value ``n_<v>``, ``tpr_<v>``, ``fpr_<v>``, ``sp_<v>``,
          and ``tpr_gap``, ``fpr_gap``, ``sp_gap``, ``eodds_gap`` (max - min over values) with
          ``_ci_low`` / ``_ci_high``, and ``reason``;
        * ``summary``: per metric ``mean_gap`` (mean over domains) and ``worst_gap`` (max over domains)
          with CIs and p-values, ``worst_domain``, ``n_domains``, ``n_domains_total``, ``reason``;
        * ``confusion``: ``<domain cols>, <attribute>, true, pred, count`` of every (domain, value) stratum.
    notes : list of str
        What was done that a reader must know.
    settings : dict
        The arguments used (``labels``, ``sensitive`` (the attribute's name), ``sensitive_columns``,
        ``groups``, ``reference``, ``domain_cols``, ``n_boot``, ...) and ``resample_used``.
    run : dict
        Keys of the run this frame describes (``objective``, ``seed``, ...); empty when evaluated alone.
    """

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [name for name in TABLES if name not in self.tables]
        if missing:
            raise ValueError(f"MetricFrame lacks table(s) {missing}")

    # ------------------------------------------------------------------------------------------ settings
    @property
    def attribute(self) -> str:
        """The sensitive attribute's name (its column, or ``gender × age_band`` for an intersection)."""
        return str(self.settings["sensitive"])

    @property
    def domain_cols(self) -> list[str]:
        return list(self.settings["domain_cols"])

    @property
    def labels(self) -> list[str]:
        return list(self.settings["labels"])

    @property
    def groups(self) -> list[str]:
        """The attribute's values, in order."""
        return list(self.settings["groups"])

    @property
    def reference(self) -> str | None:
        """Reference value of the signed gap (``M(other) - M(reference)``); ``None`` unless two values."""
        return self.settings.get("reference")

    # ------------------------------------------------------------------------------------------ tidy
    def table(self, name: str) -> pd.DataFrame:
        """The tidy table ``name`` (one of :data:`TABLES`)."""
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; available: {list(TABLES)}")
        return self.tables[name]

    @property
    def gaps(self) -> pd.DataFrame:
        """Tidy gaps per domain and metric (see :attr:`tables`)."""
        return self.tables["gaps"]

    @property
    def per_class(self) -> pd.DataFrame:
        """Per domain and class: per-value TPR / FPR / selection rate and their gaps with CIs."""
        return self.tables["per_class"]

    @property
    def summary(self) -> pd.DataFrame:
        """Per metric: mean gap over domains and worst-domain gap, with CIs and p-values."""
        return self.tables["summary"]

    # ------------------------------------------------------------------------------------------ wide
    def _overall(self, column: str) -> pd.Series:
        return self.tables["overall"].set_index("metric")[column].rename(column)

    @property
    def overall(self) -> pd.Series:
        """Every metric over all rows."""
        return self._overall("value")

    @property
    def overall_ci(self) -> tuple[pd.Series, pd.Series]:
        """(lower, upper) bootstrap percentile CI of :attr:`overall`."""
        return self._overall("ci_low"), self._overall("ci_high")

    @property
    def by_domain(self) -> pd.DataFrame:
        """Metric values per domain (all values together): rows domains, columns metrics."""
        frame = self.tables["by_domain"]
        if not self.domain_cols:
            return frame.set_index("metric")[["value"]].T.reset_index(drop=True).rename_axis(columns=None)
        wide = frame.set_index([*self.domain_cols, "metric"])["value"].unstack("metric")
        return wide.reindex(columns=list(METRICS)).rename_axis(columns=None)

    def _by_group(self, column: str) -> pd.DataFrame:
        keys = [*self.domain_cols, self.attribute]
        wide = self.tables["by_group"].set_index([*keys, "metric"])[column].unstack("metric")
        return wide.reindex(columns=list(METRICS)).rename_axis(columns=None)

    @property
    def by_group(self) -> pd.DataFrame:
        """Metric values per (domain, value): rows ``(*domain_cols, attribute)``, columns metrics."""
        return self._by_group("value")

    @property
    def by_group_ci(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(lower, upper) bootstrap CI of :attr:`by_group`."""
        return self._by_group("ci_low"), self._by_group("ci_high")

    def _gaps(self, column: str, metric: str | None) -> pd.DataFrame:
        gaps = self.tables["gaps"]
        if metric is not None:
            if metric not in set(gaps["metric"]):
                raise KeyError(f"unknown metric {metric!r}; available: {list(GAP_METRICS)}")
            gaps = gaps[gaps["metric"] == metric]
        if not self.domain_cols:
            return gaps.set_index("metric")[[column]].T.reset_index(drop=True).rename_axis(columns=None)
        wide = gaps.set_index([*self.domain_cols, "metric"])[column].unstack("metric")
        order = [m for m in GAP_METRICS if m in wide.columns]
        return wide[order].rename_axis(columns=None)

    def difference(self, *, metric: str | None = None) -> pd.DataFrame:
        """Gap ``max - min`` over the values per domain (rows) and metric (columns), parity gaps (ΔSP, ΔEO,
        equalized odds) included."""
        return self._gaps("gap", metric)

    def signed_difference(self, *, metric: str | None = None) -> pd.DataFrame:
        """Signed gap ``M(other) - M(reference)`` (``female - male`` for gender); ``NaN`` unless exactly two
        values, and for the parity gaps."""
        return self._gaps("signed_gap", metric)

    def difference_ci(self, *, metric: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(lower, upper) bootstrap CI of :meth:`difference`."""
        return self._gaps("ci_low", metric), self._gaps("ci_high", metric)

    def p_values(self, *, metric: str | None = None) -> pd.DataFrame:
        """Permutation-test p-value of each gap (H0: values exchangeable between speakers)."""
        return self._gaps("p_value", metric)

    def _group_agg(self, how: str, metric: str | None) -> pd.DataFrame:
        frame = self.tables["by_group"]
        if metric is not None:
            frame = frame[frame["metric"] == metric]
        keys = [*self.domain_cols, "metric"]
        agg = frame.groupby(keys, sort=False)["value"].agg(how).reset_index()
        if not self.domain_cols:
            return agg.set_index("metric")[["value"]].T.rename_axis(columns=None)
        return agg.pivot_table(
            index=self.domain_cols, columns="metric", values="value", dropna=False, sort=False
        )

    def group_min(self, *, metric: str | None = None) -> pd.DataFrame:
        """Worst value's metric per domain and metric."""
        return self._group_agg("min", metric)

    def group_max(self, *, metric: str | None = None) -> pd.DataFrame:
        """Best value's metric per domain and metric."""
        return self._group_agg("max", metric)

    def confusion(self, *, domain: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
        """Confusion matrix (rows = true, columns = predicted) per value, in one domain (default: all
        domains summed)."""
        frame = self.tables["confusion"]
        if domain is not None:
            for col, value in zip(self.domain_cols, domain, strict=True):
                frame = frame[frame[col].astype(str) == str(value)]
        out = {}
        for group, sub in frame.groupby(self.attribute, sort=False):
            cm = sub.pivot_table(index="true", columns="pred", values="count", aggfunc="sum")
            out[str(group)] = cm.reindex(index=self.labels, columns=self.labels).fillna(0.0)
        return out

    # ------------------------------------------------------------------------------------------ undefined
    def undefined(self) -> pd.DataFrame:
        """Every number that is ``NaN`` although it was asked for, with its reason.

        Columns ``table, domain, group, metric, undefined, reason`` (``undefined`` names the NaN fields).
        CIs are only listed when ``n_boot > 0`` and p-values when ``n_perm > 0``; signed gaps are left out
        (they do not exist with more than two values nor for the parity gaps).
        """
        boot, perm = self.settings.get("n_boot", 0) > 0, self.settings.get("n_perm", 0) > 0
        rows: list[dict[str, Any]] = []

        def scan(table: str, frame: pd.DataFrame, fields: list[str], metric_col: str | None, group: bool):
            for rec in frame.to_dict(orient="records"):
                nan = [f for f in fields if f in rec and _isnan(rec[f])]
                if not nan:
                    continue
                key = tuple(rec[c] for c in self.domain_cols)
                rows.append(
                    {
                        "table": table,
                        "domain": " / ".join(map(str, key)) if key else "all",
                        "group": rec.get(self.attribute, "") if group else "",
                        "metric": rec.get(metric_col, "") if metric_col else "",
                        "undefined": ", ".join(nan),
                        "reason": rec.get("reason") or "(no reason given)",
                    }
                )

        ci = ["ci_low", "ci_high"] if boot else []
        scan("by_domain", self.tables["by_domain"], ["value", *ci], "metric", False)
        scan("by_group", self.tables["by_group"], ["value", *ci], "metric", True)
        scan("gaps", self.gaps, ["gap", *ci, *(["p_value"] if perm else [])], "metric", False)
        per_class = self.per_class.rename(columns={"class": "_class"})
        fields = [
            f"{k}_gap{s}"
            for k in ("tpr", "fpr", "sp")
            for s in ("", *(("_ci_low", "_ci_high") if boot else ()))
        ]
        scan("per_class", per_class, fields, "_class", False)
        out = pd.DataFrame(rows, columns=["table", "domain", "group", "metric", "undefined", "reason"])
        for rec in self.summary.to_dict(orient="records"):
            if _isnan(rec["mean_gap"]):
                out.loc[len(out)] = [
                    "summary",
                    "all",
                    "",
                    rec["metric"],
                    "mean_gap, worst_gap",
                    rec["reason"],
                ]
        return out

    # ------------------------------------------------------------------------------------------ export
    def to_frame(self) -> pd.DataFrame:
        """One long table of every scalar result, with a ``scope`` column: ``overall``, ``domain``,
        ``group``, ``gap``, ``summary_mean``, ``summary_worst`` (for a CSV or a report)."""
        parts = [
            self.tables["overall"].assign(scope="overall"),
            self.tables["by_domain"].assign(scope="domain"),
            self.tables["by_group"].assign(scope="group"),
            self.gaps.rename(columns={"gap": "value"}).assign(scope="gap"),
        ]
        for kind in ("mean", "worst"):
            cols = {f"{kind}_gap": "value", f"{kind}_gap_ci_low": "ci_low", f"{kind}_gap_ci_high": "ci_high"}
            cols[f"{kind}_gap_p_value"] = "p_value"
            part = self.summary.rename(columns=cols)[["metric", *cols.values(), "reason"]]
            parts.append(part.assign(scope=f"summary_{kind}"))
        out = pd.concat(parts, ignore_index=True)
        front = ["scope", *self.domain_cols, self.attribute, "metric", "value", "ci_low", "ci_high"]
        front = [c for c in front if c in out.columns]
        return out[front + [c for c in out.columns if c not in front]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: every tidy table as a list of records (``NaN`` -> ``None``), notes, settings, run."""
        out: dict[str, Any] = {
            name: [jsonable(r) for r in self.tables[name].astype(object).to_dict(orient="records")]
            for name in TABLES
        }
        out["notes"] = list(self.notes)
        out["settings"] = jsonable(self.settings)
        out["run"] = jsonable(self.run)
        return out


def _isnan(x: Any) -> bool:
    try:
        return x is None or x is pd.NA or (isinstance(x, float | np.floating) and math.isnan(x))
    except TypeError:
        return False
