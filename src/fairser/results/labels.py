"""How the tables, figures and report name a run's sensitive attribute and its gap.

A results row of an attribute other than gender carries ``row["sensitive"] = {"columns": [...], "values":
[...]}``; a row without it is gender (``male``, ``female``), worded exactly as before the attribute became
configurable. The gap is max − min of the metric over the attribute's values (``|M(a) − M(b)|`` with two).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fairser.errors import UserError
from fairser.grouping import GENDER_VALUES, INTERSECTION_SEP

__all__ = ["GENDER", "SensitiveLabels", "sensitive_labels"]


@dataclass(frozen=True)
class SensitiveLabels:
    """Display texts of one sensitive attribute (see :func:`sensitive_labels`)."""

    #: the attribute's column(s): ``("gender",)``, ``("gender", "age_band")`` for an intersection
    columns: tuple[str, ...]
    #: its values, in the order of the run's grouper (the first is the signed gap's reference)
    values: tuple[str, ...]

    @property
    def name(self) -> str:
        """The attribute's name: ``gender``, ``age_band``, ``gender × age_band``."""
        return INTERSECTION_SEP.join(self.columns)

    @property
    def is_gender(self) -> bool:
        return self.columns == ("gender",) and self.values == GENDER_VALUES

    @property
    def gap(self) -> str:
        """The gap's name: ``gender gap``, ``age_band gap``."""
        return f"{self.name} gap"

    @property
    def gap_title(self) -> str:
        """The gap's name at the start of a sentence or title: ``Gender gap``; a column name is kept as it is
        (``age_band gap``)."""
        return "Gender gap" if self.columns == ("gender",) else self.gap

    @property
    def spread(self) -> str:
        """How the gap is taken, short (axis labels): ``|male − female|``, ``max − min``."""
        if len(self.values) == 2:
            return f"|{self.values[0]} − {self.values[1]}|"
        return "max − min"

    def formula(self, metric: str = "W-F1") -> str:
        """How the gap is taken, in full: ``|W-F1(male) − W-F1(female)|``, or for more values
        ``max − min of W-F1 over its 3 values: 18-34, 35-59, 60+``."""
        if len(self.values) == 2:
            return f"|{metric}({self.values[0]}) − {metric}({self.values[1]})|"
        return f"max − min of {metric} over its {len(self.values)} values: {', '.join(self.values)}"

    def signed(self, metric: str = "W-F1") -> str | None:
        """The signed gap and its reference (the first value), with exactly two values, else ``None``:
        ``signed gap = W-F1(female) − W-F1(male) (reference: male)``."""
        if len(self.values) != 2:
            return None
        a, b = self.values
        return f"signed gap = {metric}({b}) − {metric}({a}) (reference: {a})"

    @property
    def description(self) -> str:
        """The gap with its formula: ``gender gap |W-F1(male) − W-F1(female)|``, ``age_band gap (max − min
        of W-F1 over its 3 values: 18-34, 35-59, 60+)``."""
        if len(self.values) == 2:
            return f"{self.gap} {self.formula()}"
        return f"{self.gap} ({self.formula()})"


#: the default attribute (rows without ``"sensitive"``)
GENDER = SensitiveLabels(columns=("gender",), values=GENDER_VALUES)


def sensitive_labels(rows: Iterable[dict[str, Any]]) -> SensitiveLabels:
    """The sensitive attribute of a set of results rows (:data:`GENDER` when they carry none, or no rows).

    Raises ``ValueError`` when the rows belong to different attributes (or the same columns with other
    values): their gaps are not comparable, so no table or figure may put them side by side.
    """
    found: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    for r in rows:
        s = r.get("sensitive")
        key = (
            (("gender",), GENDER_VALUES)
            if s is None
            else (tuple(str(c) for c in s["columns"]), tuple(str(v) for v in s["values"]))
        )
        found.setdefault(key, str(r.get("run_id", "?")))
    if len(found) > 1:
        described = "; ".join(
            f"{INTERSECTION_SEP.join(cols)} with values {list(values)} (e.g. run {run})"
            for (cols, values), run in found.items()
        )
        raise UserError(
            f"results rows of different sensitive attributes cannot be compared in one table or figure: "
            f"{described}",
            fix="report each attribute's runs separately (one output folder per config)",
        )
    if not found:
        return GENDER
    (cols, values), _ = next(iter(found.items()))
    return SensitiveLabels(columns=cols, values=values)
