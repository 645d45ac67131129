"""Results store: one JSON line per finished run, appended as soon as the run finishes.

An interrupted grid loses nothing already finished: on restart, finished run ids are skipped. A run whose
row is deleted from the file is simply run again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fairser.jsonable import jsonable

__all__ = ["ResultsStore"]


class ResultsStore:
    """Append-only JSONL file of run rows keyed by ``run_id``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        rows = []
        for n, line in enumerate(self.path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut by a crash mid-write: ignore it (that run is simply re-run).
                print(f"warning: {self.path}:{n} is not valid JSON and is ignored (its run will be redone)")
        return rows

    def finished(self) -> set[str]:
        return {r["run_id"] for r in self.rows() if r.get("status") == "ok"}

    def append(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(jsonable(row), sort_keys=True) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def remove(self, run_id: str) -> int:
        """Delete a run's rows (so it is re-run); returns how many rows were removed."""
        rows = self.rows()
        keep = [r for r in rows if r["run_id"] != run_id]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
        os.replace(tmp, self.path)
        return len(rows) - len(keep)
