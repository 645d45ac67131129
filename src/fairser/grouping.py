"""One grouper: metadata rows -> domain ids, sensitive-value ids and group ids (WILDS's ``Grouper`` is the model).

Every part of fairser that needs groups asks a :class:`Grouper`: the run's datasets (views), the
objectives and samplers (through ``n_domains`` / ``n_values`` and :func:`group_index`), the metrics (which
values, in which order, and which one is the reference of a signed gap), the reports, and the IDI /
CO-VADA / CFA methods.

Definitions (docs/METHODS.md §1):

* A **domain** is one combination of the ``domain_cols`` values (by default language x modality), numbered
  in the order of :attr:`Grouper.domains`.
* The **sensitive attribute** is one manifest column (``gender`` by default; any column: ``age_band``,
  ``accent``, a non-binary gender value) or the intersection of several (``gender x age_band``), with any
  number of values. Its **values** are numbered ``0 .. n_values - 1`` in the order of :attr:`Grouper.values`;
  a missing or ``"unknown"`` value (in any part of an intersection) is ``-1`` and belongs to no group.
* A **group** is one (domain, value) cell: ``group = n_values * domain + value`` (-1 for an unknown value).
  With gender (values ``male, female``) this is the ``2 * domain + gender`` of the first release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "GENDER_VALUES",
    "INTERSECTION_SEP",
    "UNKNOWN",
    "Grouper",
    "group_index",
    "sensitive_values",
    "value_names",
]

#: Value of a row whose sensitive attribute is not known (it takes part in no group term).
UNKNOWN = "unknown"
#: Joins the parts of an intersectional value (and of the column names), e.g. ``female × 60+``.
INTERSECTION_SEP = " × "
#: Gender's fixed value order: male = 0, female = 1, so a signed gap is ``M(female) - M(male)``.
GENDER_VALUES: tuple[str, ...] = ("male", "female")

_MISSING = {"", "nan", "none", "<na>", UNKNOWN}


def group_index(domain: Any, value: Any, n_values: int) -> Any:
    """Group id ``n_values * domain + value``, and -1 where ``value < 0`` (unknown).

    Plain arithmetic, so the same call serves NumPy arrays and torch tensors (and keeps their dtype).
    """
    known = value >= 0
    return (domain * n_values + value + 1) * known - 1


def _column_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A sensitive column as strings, missing spellings mapped to :data:`UNKNOWN`."""
    if column not in frame.columns:
        raise KeyError(
            f"sensitive attribute {column!r} is not a column of the data (columns: {list(frame.columns)}); "
            "add it to the manifest or choose another `sensitive:` column"
        )
    raw = frame[column]
    text = raw.astype(str).str.strip()
    missing = raw.isna().to_numpy() | text.str.lower().isin(_MISSING).to_numpy()
    return np.where(missing, UNKNOWN, text.to_numpy(dtype=object))


def _attribute_values(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Each row's value of the (possibly intersectional) attribute; unknown if any part is unknown."""
    parts = [_column_values(frame, c) for c in columns]
    if len(parts) == 1:
        return parts[0]
    unknown = np.logical_or.reduce([p == UNKNOWN for p in parts])
    joined = parts[0].astype(object)
    for p in parts[1:]:
        joined = joined + INTERSECTION_SEP + p
    return np.where(unknown, UNKNOWN, joined)


def sensitive_values(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[str, ...]:
    """The known values of the attribute in ``frame``, in fairser's fixed order.

    Gender: ``male, female`` first (always both, so codes stay 0 and 1), then any other value sorted; any
    other column: its values sorted. An intersection orders by its first column, then its second (each in
    its own order), listing only the combinations present.
    """
    columns = list(columns)
    if not columns:
        raise ValueError("sensitive needs at least one column")

    def order(column: str, present: set[str]) -> list[str]:
        if column == "gender":
            return list(GENDER_VALUES) + sorted(present - set(GENDER_VALUES))
        return sorted(present)

    if len(columns) == 1:
        vals = set(_column_values(frame, columns[0]).tolist()) - {UNKNOWN}
        return tuple(order(columns[0], vals))
    parts = [_column_values(frame, c) for c in columns]
    known = np.logical_and.reduce([p != UNKNOWN for p in parts])
    combos = {tuple(p[i] for p in parts) for i in np.flatnonzero(known)}
    ranks = [
        {v: i for i, v in enumerate(order(c, {combo[k] for combo in combos}))} for k, c in enumerate(columns)
    ]
    ordered = sorted(combos, key=lambda combo: tuple(r[v] for r, v in zip(ranks, combo, strict=True)))
    return tuple(INTERSECTION_SEP.join(combo) for combo in ordered)


def value_names(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Each row's value of the attribute ``columns`` (one column or an intersection) as text, joined by
    :data:`INTERSECTION_SEP`; :data:`UNKNOWN` where any part is missing or unknown."""
    return _attribute_values(frame, list(columns))


@dataclass(frozen=True)
class Grouper:
    """Turns metadata rows into domain ids, sensitive-value ids and group ids (and names and counts).

    Attributes
    ----------
    domain_cols : tuple of str
        Columns whose value combinations are the domains, e.g. ``("language", "modality")``.
    domains : tuple of tuple
        The domains, in id order (one tuple of ``domain_cols`` values each).
    sensitive : tuple of str
        The sensitive attribute's column(s); two or more = their intersection.
    values : tuple of str
        The attribute's values, in id order (see :func:`sensitive_values`).
    """

    domain_cols: tuple[str, ...]
    domains: tuple[tuple[str, ...], ...]
    sensitive: tuple[str, ...] = ("gender",)
    values: tuple[str, ...] = GENDER_VALUES

    def __post_init__(self) -> None:
        if not self.sensitive:
            raise ValueError("Grouper.sensitive needs at least one column")
        if len(self.values) < 1 or len(set(self.values)) != len(self.values):
            raise ValueError(f"Grouper.values must be distinct and non-empty; got {self.values}")
        if UNKNOWN in self.values:
            raise ValueError(
                f"{UNKNOWN!r} cannot be a value of the sensitive attribute: it means 'not known'"
            )
        for d in self.domains:
            if len(d) != len(self.domain_cols):
                raise ValueError(f"domain {d} does not match the domain columns {self.domain_cols}")

    @classmethod
    def from_data(
        cls,
        frame: pd.DataFrame,
        *,
        domain_cols: Sequence[str],
        domains: Sequence[Sequence[str]] | None = None,
        sensitive: Sequence[str] = ("gender",),
    ) -> Grouper:
        """A grouper whose values are those present in ``frame`` (the whole corpus, so every split of a run
        numbers them alike) and whose domains are ``domains`` (default: the combinations in ``frame``,
        sorted)."""
        domain_cols = tuple(domain_cols)
        if domains is None:
            domains = sorted({tuple(map(str, k)) for k in frame[list(domain_cols)].itertuples(index=False)})
        return cls(
            domain_cols=domain_cols,
            domains=tuple(tuple(map(str, d)) for d in domains),
            sensitive=tuple(sensitive),
            values=sensitive_values(frame, sensitive),
        )

    # ------------------------------------------------------------------------------------------ sizes
    @property
    def n_domains(self) -> int:
        return len(self.domains)

    @property
    def n_values(self) -> int:
        return len(self.values)

    @property
    def n_groups(self) -> int:
        return self.n_domains * self.n_values

    @property
    def name(self) -> str:
        """The attribute's name, e.g. ``gender`` or ``gender × age_band``."""
        return INTERSECTION_SEP.join(self.sensitive)

    @property
    def reference(self) -> str | None:
        """The reference value of a signed gap (``M(other) - M(reference)``): the first value, and only
        when there are exactly two (with more values the gap is max - min and has no sign)."""
        return self.values[0] if self.n_values == 2 else None

    # ------------------------------------------------------------------------------------------ names
    @property
    def domain_names(self) -> list[str]:
        """``en/audio``-style names of the domains, in id order."""
        return ["/".join(d) for d in self.domains]

    @property
    def group_names(self) -> list[str]:
        """``en/audio: female``-style names of the groups, in id order."""
        return [f"{d}: {v}" for d in self.domain_names for v in self.values]

    # -------------------------------------------------------------------------------------------- ids
    def domain_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """Domain id of each row; a row outside every domain is an error naming it."""
        index = {d: i for i, d in enumerate(self.domains)}
        keys = [tuple(map(str, k)) for k in frame[list(self.domain_cols)].itertuples(index=False)]
        ids = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        if (ids < 0).any():
            row = int(np.flatnonzero(ids < 0)[0])
            raise ValueError(
                f"row {row} (id {frame['id'].iloc[row] if 'id' in frame.columns else row}) is in no domain: "
                f"{dict(zip(self.domain_cols, keys[row], strict=True))} is not one of {self.domain_names}"
            )
        return ids

    def value_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """Sensitive-value id of each row (-1 unknown, or a value this grouper does not know)."""
        index = {v: i for i, v in enumerate(self.values)}
        vals = _attribute_values(frame, self.sensitive)
        return np.fromiter((index.get(v, -1) for v in vals), dtype=np.int64, count=len(vals))

    def value_names(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's value as text (:data:`UNKNOWN` where not known)."""
        return _attribute_values(frame, self.sensitive)

    def group_ids(self, *, domain: Any, value: Any) -> Any:
        """Group id ``n_values * domain + value`` (-1 for unknown values); NumPy arrays or torch tensors."""
        return group_index(domain, value, self.n_values)

    def counts(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows per group (domain x value) of ``frame``, every group listed (0 when absent), plus the
        unknown-valued rows per domain."""
        domain = self.domain_ids(frame)
        value = self.value_ids(frame)
        n = np.bincount(self.group_ids(domain=domain, value=value)[value >= 0], minlength=self.n_groups)
        unknown = np.bincount(domain[value < 0], minlength=self.n_domains)
        recs = [
            {"domain": dname, self.name: v, "n": int(n[d * self.n_values + i])}
            for d, dname in enumerate(self.domain_names)
            for i, v in enumerate(self.values)
        ]
        recs += [
            {"domain": dname, self.name: UNKNOWN, "n": int(unknown[d])}
            for d, dname in enumerate(self.domain_names)
            if unknown[d]
        ]
        return pd.DataFrame(recs)
