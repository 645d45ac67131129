"""Content-addressed feature cache.

An entry is addressed by *what* was encoded and *how*: the sha256 of the file's bytes (or of the text's
UTF-8) and the encoder's fingerprint. Renaming or moving a file still hits the cache; changing its content
or any encoder setting misses it. Layout under ``root``::

    <fingerprint>/encoder.json             the encoder's config, for humans
    <fingerprint>/<hh>/<content_sha256>.npy one float32 vector per entry, sharded by the hash's first byte
    file_hashes.sqlite                     memo (path, size, mtime, ctime, inode) -> content sha256

Each entry is written to a temporary file in its final folder and moved into place with ``os.replace``
(atomic on POSIX), so an interrupted run leaves either a complete entry or none; unreadable entries (e.g.
after a power cut) are treated as missing and rewritten.

The memo spares re-hashing unchanged files on every run. It trusts a file's stat only when its mtime and
ctime are older than ``hash_memo_min_age_s``: timestamps have coarse granularity, so a file rewritten
twice within one tick could keep them unchanged (git's "racily clean" problem); such young files are
simply re-hashed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FeatureCache", "sha256_file", "sha256_text"]

_HASH_DB = "file_hashes.sqlite"
_HEX64 = re.compile(r"[0-9a-f]{64}")  # a lowercase sha256 hex digest


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_text(text: str) -> str:
    """sha256 (hex) of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_hex(value: str, what: str) -> str:
    if not isinstance(value, str) or _HEX64.fullmatch(value) is None:
        raise ValueError(f"{what} must be a 64-character lowercase sha256 hex digest, got {value!r}")
    return value


class FeatureCache:
    """Feature vectors on disk, keyed by content hash x encoder fingerprint.

    Parameters
    ----------
    root : path
        Cache folder (created on demand). Safe to share between runs and processes.
    hash_memo_min_age_s : float
        Files modified more recently than this are re-hashed on every run instead of memoised.

    Attributes
    ----------
    n_files_hashed : int
        Files whose bytes this object actually hashed (memo misses), for diagnostics.
    nonfinite : list of Path
        Entries :meth:`get` found holding NaN or infinite values (treated as misses, so they are recomputed
        and replaced); callers report how many.
    """

    def __init__(self, root: str | os.PathLike, *, hash_memo_min_age_s: float = 2.0) -> None:
        self.root = Path(root)
        self.hash_memo_min_age_s = float(hash_memo_min_age_s)
        self.n_files_hashed = 0
        self.nonfinite: list[Path] = []

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"

    # -- entries ---------------------------------------------------------------------------------------
    def entry_path(self, *, fingerprint: str, content_hash: str) -> Path:
        """Where the entry for this content and encoder lives (whether or not it exists)."""
        _check_hex(fingerprint, "fingerprint")
        _check_hex(content_hash, "content_hash")
        return self.root / fingerprint / content_hash[:2] / f"{content_hash}.npy"

    def contains(self, *, fingerprint: str, content_hash: str) -> bool:
        """Whether an entry file exists (without reading it)."""
        return self.entry_path(fingerprint=fingerprint, content_hash=content_hash).is_file()

    def get(
        self, *, fingerprint: str, content_hash: str, dim: int | None = None, allow_nan: bool = False
    ) -> np.ndarray | None:
        """The stored vector, or ``None`` when missing, unreadable, not of length ``dim`` or not finite.

        A non-finite entry (NaN/inf, e.g. written by an older version or damaged) is never reused: it is a
        miss, recorded in :attr:`nonfinite`, and the next :meth:`put` replaces it. ``allow_nan``: for records
        whose NaN means "not measured" (a degradation's measures), not for features.
        """
        path = self.entry_path(fingerprint=fingerprint, content_hash=content_hash)
        try:
            value = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            return None  # a damaged entry is a miss; the next put() replaces it
        if value.ndim != 1 or (dim is not None and value.shape[0] != dim):
            return None
        if not (allow_nan or np.isfinite(value).all()):
            self.nonfinite.append(path)
            return None
        return value

    def put(self, value: np.ndarray, *, fingerprint: str, content_hash: str) -> Path:
        """Store a 1-D vector atomically (temp file + ``os.replace``); returns the entry path."""
        value = np.asarray(value, dtype=np.float32)
        if value.ndim != 1:
            raise ValueError(f"cache entries are 1-D vectors, got shape {value.shape}")
        path = self.entry_path(fingerprint=fingerprint, content_hash=content_hash)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{content_hash[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, value, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def record_encoder(self, *, fingerprint: str, config: Mapping[str, Any]) -> None:
        """Write ``<fingerprint>/encoder.json`` (once) so a human can tell what a folder holds."""
        path = self.root / _check_hex(fingerprint, "fingerprint") / "encoder.json"
        if path.is_file():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".encoder.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(dict(config), f, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)

    # -- content hashes --------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.root / _HASH_DB, timeout=60)
        con.execute(
            "CREATE TABLE IF NOT EXISTS file_hash (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
            "ctime_ns INTEGER, ino INTEGER, dev INTEGER, sha256 TEXT)"
        )
        return con

    def file_hashes(self, paths: Sequence[str | os.PathLike]) -> list[str | OSError]:
        """sha256 of each file's bytes, memoised on (path, size, mtime, ctime, inode, device).

        Returns one item per path: the hex digest, or the ``OSError`` met while reading that file.
        """
        results: list[str | OSError] = []
        fresh: list[tuple] = []
        now_ns = time.time_ns()
        min_age_ns = int(self.hash_memo_min_age_s * 1e9)
        with contextlib.closing(self._connect()) as con:
            for p in paths:
                key = os.path.abspath(p)
                try:
                    st = os.stat(key)
                    sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
                    row = con.execute(
                        "SELECT size, mtime_ns, ctime_ns, ino, dev, sha256 FROM file_hash WHERE path = ?",
                        (key,),
                    ).fetchone()
                    if row is not None and tuple(row[:5]) == sig:
                        results.append(row[5])
                        continue
                    digest = sha256_file(key)
                    self.n_files_hashed += 1
                except OSError as exc:
                    results.append(exc)
                    continue
                results.append(digest)
                if now_ns - max(st.st_mtime_ns, st.st_ctime_ns) >= min_age_ns:
                    fresh.append((key, *sig, digest))
            if fresh:
                with con:
                    con.executemany("INSERT OR REPLACE INTO file_hash VALUES (?, ?, ?, ?, ?, ?, ?)", fresh)
        return results

    def file_hash(self, path: str | os.PathLike) -> str:
        """sha256 of one file's bytes (memoised); raises ``OSError`` if it cannot be read."""
        (result,) = self.file_hashes([path])
        if isinstance(result, OSError):
            raise result
        return result
