"""The one JSON conversion: NumPy scalars to Python, NaN / inf / NA to ``None``, dict keys to text."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with every dict, list and tuple converted recursively, ready for :func:`json.dumps`
    with ``allow_nan=False``: dict keys as ``str``, NumPy scalars as Python numbers, ``None`` for
    ``NaN``, ``inf``, ``pd.NA`` and ``pd.NaT``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item") and callable(value.item):  # NumPy scalars (and 0-d arrays, 1-element tensors)
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
