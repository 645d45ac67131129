"""The finished runs of a benchmark output folder, as every table of it reads them (``fairser table``, the
report): headline rows of one config only, with what was left out said.

Rows of two configs in one folder (e.g. a re-run with other epochs into the same ``output_dir``) would be
averaged as if they were seeds of one cell; :func:`one_config` refuses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairser.errors import UserError
from fairser.results.labels import sensitive_labels
from fairser.results.pooled import headline_rows
from fairser.results.store import ResultsStore

__all__ = ["FolderRows", "finished_rows", "one_config"]


@dataclass
class FolderRows:
    """Finished headline rows of a folder, and what was not used."""

    rows: list[dict[str, Any]]
    #: ``(run_id, error)`` of every failed run without a finished row.
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: Lines of ``results.jsonl`` that could not be read (``(line, reason)``).
    unreadable: list[tuple[int, str]] = field(default_factory=list)

    def warnings(self) -> list[str]:
        out = [f"run {run_id} failed: {error}" for run_id, error in self.failed]
        out += [f"results.jsonl:{n}: {reason}" for n, reason in self.unreadable]
        return out


def one_config(rows: Sequence[dict[str, Any]], *, source: str = "the results") -> None:
    """Refuse rows of more than one config: different ``config_id`` (the hash of the settings every run of a
    config shares), or two finished runs of the same cell (setting, objective, seed, fold) with different run
    ids (rows written before ``config_id`` existed). Raises :class:`~fairser.errors.UserError`."""
    ids: dict[str, str] = {}
    for r in rows:
        if r.get("config_id"):
            ids.setdefault(str(r["config_id"]), str(r["run_id"]))
    if len(ids) > 1:
        shown = "; ".join(f"config {c} (e.g. run {run})" for c, run in ids.items())
        raise UserError(
            f"results of {len(ids)} different configs cannot share one table: {shown}",
            where=source,
            fix="give each config its own output_dir (or delete the other config's rows and runs/ folders)",
        )
    cells: dict[tuple, str] = {}
    for r in rows:
        key = (r.get("setting"), r.get("objective_label"), r.get("seed"), r.get("fold"))
        other = cells.setdefault(key, str(r["run_id"]))
        if other != str(r["run_id"]):
            raise UserError(
                f"two finished runs of one cell (setting {key[0]}, objective {key[1]}, seed {key[2]}) with "
                f"different run ids, {other} and {r['run_id']}: rows of two configs (or of an older version) "
                "would be averaged as seeds",
                where=source,
                fix="give each config its own output_dir (or delete the stale rows and their runs/ folders)",
            )


def finished_rows(folder: str | Path) -> FolderRows:
    """The finished headline rows of a benchmark folder's ``results.jsonl`` (one config: :func:`one_config`),
    with the failed runs and unreadable lines the tables must mention. :class:`UserError` when there is no
    ``results.jsonl`` or no finished run."""
    path = Path(folder) / "results.jsonl"
    if not path.is_file():
        raise UserError(
            "no results.jsonl here (not a benchmark output folder?)",
            where=str(folder),
            fix="give the output_dir of a `fairser benchmark` run",
        )
    store = ResultsStore(path)
    all_rows = store.rows()
    rows = [r for r in headline_rows(all_rows) if r.get("status") == "ok"]
    if not rows:
        raise UserError(
            "no finished runs", where=str(path), fix="run `fairser benchmark` with this output_dir first"
        )
    sensitive_labels(rows)  # rows of different sensitive attributes: the more specific message first
    one_config(rows, source=str(path))
    done = {r["run_id"] for r in all_rows if r.get("status") == "ok"}
    failed = {
        str(r["run_id"]): str(r.get("error", "?"))
        for r in all_rows
        if r.get("status") != "ok" and r["run_id"] not in done
    }
    return FolderRows(rows=rows, failed=list(failed.items()), unreadable=list(store.skipped))
