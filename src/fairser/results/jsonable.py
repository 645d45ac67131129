"""The one conversion of results (rows, summaries, settings) into plain JSON values."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars turned into Python numbers, NaN / ±inf / ``pd.NA`` / ``pd.NaT`` into
    ``None`` (JSON has no NaN; a row's ``reason`` fields say why a value is missing), dict keys into ``str``
    and tuples into lists, recursively. Anything else is returned as it is."""
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
