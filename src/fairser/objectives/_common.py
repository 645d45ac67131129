"""Small checks shared by the objectives of the method zoo (clear errors instead of deep torch errors)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from fairser.objectives.base import GroupBatch

__all__ = ["check_choice", "check_range", "require_field"]


def check_choice(owner: str, option: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming the option."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{owner}: {option}={value!r} is not one of {allowed}")
    return value


def check_range(
    owner: str,
    option: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``float(value)`` if it lies in the given interval, else raise a ValueError naming the option."""
    value = float(value)
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high or value != value:  # value != value catches NaN
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(
            f"{owner}: {option}={value!r} must lie in {lo}{'-inf' if low is None else low}, "
            f"{'inf' if high is None else high}{hi}"
        )
    return value


def require_field(batch: GroupBatch, field: str, owner: str) -> Tensor:
    """Return ``batch.<field>`` or raise a ValueError saying which objective needs it."""
    value = getattr(batch, field)
    if value is None:
        raise ValueError(f"objective {owner!r} needs GroupBatch.{field}, but the batch has none")
    if value.shape[0] != batch.losses.shape[0]:
        raise ValueError(
            f"objective {owner!r}: GroupBatch.{field} has {value.shape[0]} rows but losses has "
            f"{batch.losses.shape[0]}"
        )
    return value
