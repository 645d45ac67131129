"""Results store: one JSON line per finished run, appended as soon as the run finishes.

An interrupted grid loses nothing already finished: on restart, finished run ids are skipped. A run whose
row is deleted from the file is simply run again.

A crash or a full disk can leave a torn last line (a row cut mid-write, without its newline). Before each
append the store checks that the file ends with a newline; if not, the fragment after the last newline is
moved to ``<name>.torn`` beside the file (one JSON record per fragment: offset, bytes, time), the file is cut
back to its last complete row and the repair is said on stderr and counted (:attr:`ResultsStore.repaired`).
So a fragment never swallows the next row. Each row is then written with one ``os.write`` of the whole line
to a file opened with ``O_APPEND``, and ``fsync``-ed. Reading, a line that is not valid JSON is counted
(:attr:`ResultsStore.skipped`); a row glued onto a fragment by an older version (``{"run_id": ...{"run_id":
...}``) is recovered.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from fairser.jsonable import jsonable

__all__ = ["ResultsStore"]


class ResultsStore:
    """Append-only JSONL file of run rows keyed by ``run_id``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        #: Torn fragments moved out of the file by this store (:meth:`repair`).
        self.repaired = 0
        #: ``(line number, reason)`` of every line the last :meth:`rows` could not read.
        self.skipped: list[tuple[int, str]] = []

    @property
    def quarantine(self) -> Path:
        """Where torn fragments go: ``results.jsonl.torn`` beside ``results.jsonl``."""
        return self.path.with_name(self.path.name + ".torn")

    def rows(self) -> list[dict[str, Any]]:
        """Every readable row, in file order; unreadable lines are counted in :attr:`skipped` and warned about."""
        self.skipped = []
        if not self.path.is_file():
            return []
        rows = []
        for n, line in enumerate(self.path.read_bytes().decode("utf-8", "replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
                continue
            except json.JSONDecodeError:
                pass
            row = _recover(line)
            if row is not None:  # a row appended onto a torn fragment (older versions): the row survives
                rows.append(row)
                reason = "a torn fragment before a complete row (the row is kept, the fragment ignored)"
            else:
                reason = "not valid JSON (a row cut by a crash?); ignored, its run will be redone"
            self.skipped.append((n, reason))
            print(f"warning: {self.path}:{n}: {reason}", file=sys.stderr)
        return rows

    def finished(self) -> set[str]:
        return {r["run_id"] for r in self.rows() if r.get("status") == "ok"}

    def repair(self) -> int:
        """Cut a torn last line (no trailing newline) off the file into :attr:`quarantine`; returns the number
        of fragments moved (0 or 1). A last line that is a complete row only lacking its newline is kept."""
        if not self.path.is_file():
            return 0
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return 0
            # the start of the last line: scan back in blocks for the previous newline
            end, start = size, 0
            while end > 0:
                begin = max(0, end - 65536)
                f.seek(begin)
                block = f.read(end - begin)
                i = block.rfind(b"\n")
                if i >= 0:
                    start = begin + i + 1
                    break
                end = begin
            f.seek(start)
            fragment = f.read(size - start)
            try:
                json.loads(fragment)
                complete = True
            except (json.JSONDecodeError, UnicodeDecodeError):
                complete = False
            if complete:  # a whole row without its newline: finish the line
                f.seek(size)
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
                return 0
            record = {
                "file": str(self.path),
                "offset": start,
                "bytes": len(fragment),
                "fragment": fragment.decode("utf-8", "replace"),
                "moved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            _append_line(self.quarantine, json.dumps(record, sort_keys=True) + "\n")
            f.truncate(start)
            f.flush()
            os.fsync(f.fileno())
        self.repaired += 1
        print(
            f"warning: {self.path} ended in a torn line ({len(fragment)} bytes at offset {start}, a crash or a "
            f"full disk mid-write); moved it to {self.quarantine}. Its run, if any, will be redone.",
            file=sys.stderr,
        )
        return 1

    def append(self, row: dict[str, Any]) -> None:
        """Append one row as one line (after :meth:`repair`), with one ``os.write`` and an ``fsync``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repair()
        _append_line(self.path, json.dumps(jsonable(row), sort_keys=True) + "\n")

    def remove(self, run_id: str) -> int:
        """Delete a run's rows (so it is re-run); returns how many rows were removed."""
        self.repair()
        rows = self.rows()
        keep = [r for r in rows if r["run_id"] != run_id]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
        os.replace(tmp, self.path)
        return len(rows) - len(keep)


def _append_line(path: Path, line: str) -> None:
    """Append ``line`` with one ``os.write`` (looping only if the kernel wrote part of it) and ``fsync``."""
    data = line.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _recover(line: str) -> dict[str, Any] | None:
    """The complete row at the end of a line that starts with a torn fragment, if there is one."""
    start = line.find("{", 1)
    while start > 0:
        try:
            row = json.loads(line[start:])
        except json.JSONDecodeError:
            start = line.find("{", start + 1)
            continue
        return row if isinstance(row, dict) and "run_id" in row else None
    return None
