"""The result of an audit: one :class:`~fairser.metrics.MetricFrame` per (run, attribute), written to and
read back from an audit folder (``audit.json`` and one CSV per tidy table)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fairser.audit.runs import run_label
from fairser.jsonable import jsonable
from fairser.metrics import TABLES, MetricFrame

__all__ = ["AUDIT_TABLES", "Audit"]

#: Tidy tables written by :meth:`Audit.write` (one CSV each): those of :class:`~fairser.metrics.MetricFrame`.
AUDIT_TABLES: tuple[str, ...] = TABLES

_FORMAT = "fairser-audit/1"
_PER_GROUP = ("n", "tpr", "fpr", "sp")


@dataclass
class Audit:
    """All runs × sensitive attributes of one audit, with the input warnings and where the data came from.

    Iterate over it for the :class:`~fairser.metrics.MetricFrame` of each (run, attribute) (its ``run``
    holds the run's keys); :meth:`frame` picks one; :meth:`table` concatenates one tidy table over all
    frames (run columns and ``attribute`` first, the value column renamed ``group``); :meth:`write` saves
    the CSVs and ``audit.json``, :meth:`load` reads them back (:func:`fairser.audit.print_audit` prints it).
    """

    frames: list[MetricFrame]
    run_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    synthetic: bool = False

    def __iter__(self) -> Iterator[MetricFrame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def attributes(self) -> list[str]:
        return list(dict.fromkeys(f.attribute for f in self.frames))

    def frame(self, *, attribute: str | None = None, **run: Any) -> MetricFrame:
        """The frame of one run (keys as in :attr:`run_columns`) and attribute (default: the first)."""
        attribute = attribute or self.attributes[0]
        hits = [
            f
            for f in self.frames
            if f.attribute == attribute and all(str(f.run.get(k)) == str(v) for k, v in run.items())
        ]
        if len(hits) != 1:
            runs = sorted({run_label(f.run) for f in self.frames})
            raise KeyError(
                f"{len(hits)} frames match attribute={attribute!r} {run}; runs: {runs}; "
                f"attributes: {self.attributes}"
            )
        return hits[0]

    def table(self, name: str) -> pd.DataFrame:
        """Tidy table ``name`` (one of :data:`AUDIT_TABLES`, or ``undefined``) over every frame."""
        if name not in (*AUDIT_TABLES, "undefined"):
            raise KeyError(f"unknown table {name!r}; available: {[*AUDIT_TABLES, 'undefined']}")
        parts = []
        for f in self.frames:
            part = f.undefined() if name == "undefined" else f.table(name).copy()
            if f.attribute in part.columns:
                part = part.rename(columns={f.attribute: "group"})
            for col in reversed([*self.run_columns, "attribute"]):
                value = f.attribute if col == "attribute" else f.run.get(col)
                part.insert(0, col, value)
            parts.append(part)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def undefined(self) -> pd.DataFrame:
        """Every undefined number of every frame, with its reason (see :meth:`MetricFrame.undefined`)."""
        return self.table("undefined")

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``<table>.csv`` for every tidy table, ``undefined.csv`` and ``audit.json``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name in (*AUDIT_TABLES, "undefined"):
            paths[name] = out / f"{name}.csv"
            self.table(name).to_csv(paths[name], index=False)
        paths["audit"] = out / "audit.json"
        meta = {
            "format": _FORMAT,
            "source": self.source,
            "synthetic": self.synthetic,
            "settings": self.settings,
            "run_columns": self.run_columns,
            "attributes": self.attributes,
            "notes": self.notes,
            "warnings": self.warnings,
            "frames": [
                {"run": f.run, "attribute": f.attribute, "notes": f.notes, "settings": f.settings}
                for f in self.frames
            ],
            "files": {k: p.name for k, p in paths.items()},
        }
        paths["audit"].write_text(json.dumps(jsonable(meta), indent=2))
        return paths

    @classmethod
    def load(cls, path: str | Path) -> Audit:
        """Read an audit folder written by :meth:`write` back into an :class:`Audit`."""
        path = Path(path)
        meta_path = path / "audit.json" if path.is_dir() else path
        if not meta_path.is_file():
            raise FileNotFoundError(f"no audit.json in {path} (write one with `fairser audit ... --out DIR`)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{meta_path} is not a fairser audit (format {meta.get('format')!r})")
        folder = meta_path.parent
        tables = {
            name: pd.read_csv(folder / f"{name}.csv", keep_default_na=False, na_values=[""])
            for name in AUDIT_TABLES
        }
        run_cols = list(meta["run_columns"])
        frames = []
        for fm in meta["frames"]:
            settings = fm["settings"]
            attribute = fm["attribute"]
            parts = {}
            for name, table in tables.items():
                mask = table["attribute"].astype(str) == attribute if "attribute" in table else True
                for col in run_cols:
                    mask &= table[col].astype(str) == str(fm["run"].get(col))
                part = table[mask].drop(columns=[*run_cols, "attribute"]).rename(columns={"group": attribute})
                for col in settings["domain_cols"]:
                    if col in part.columns:
                        part[col] = part[col].astype(str)
                if attribute in part.columns:
                    part[attribute] = part[attribute].astype(str)
                if name == "per_class":  # per-value columns of other attributes' values are all empty here
                    ours = {f"{k}_{g}" for g in settings["groups"] for k in _PER_GROUP}
                    part = part.drop(columns=[c for c in part.columns if _value_column(c) and c not in ours])
                for col in ("reason", "mdg_reason"):  # text columns: empty, never NaN
                    if col in part.columns:
                        part[col] = part[col].astype(object).where(part[col].notna(), "").astype(str)
                parts[name] = part.reset_index(drop=True)
            frames.append(
                MetricFrame(tables=parts, notes=list(fm["notes"]), settings=settings, run=dict(fm["run"]))
            )
        return cls(
            frames=frames,
            run_columns=run_cols,
            notes=list(meta.get("notes", [])),
            warnings=list(meta["warnings"]),
            settings=meta["settings"],
            source=meta["source"],
            synthetic=bool(meta["synthetic"]),
        )


def _value_column(name: str) -> bool:
    """A per-value column of ``per_class`` (``tpr_female``), not a gap column (``tpr_gap_ci_low``)."""
    head, _, rest = name.partition("_")
    return head in _PER_GROUP and bool(rest) and not rest.startswith("gap")
