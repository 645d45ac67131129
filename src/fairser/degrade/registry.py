"""Degradation conditions by name, a compact text form for the command line, and named presets.

``build_condition("mp3", bitrate_kbps=16)``; ``parse_condition("noise:kind=babble,snr_db=5")``;
``PRESETS["legacy_low"]`` lists the legacy codecs at low bitrate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from fairser.degrade.base import Condition
from fairser.errors import UserError

__all__ = [
    "CONDITIONS",
    "PRESETS",
    "build_condition",
    "build_conditions",
    "condition_label",
    "parse_condition",
]


def _ffmpeg(codec: str) -> Callable[..., Condition]:
    def build(**params: Any) -> Condition:
        from fairser.degrade.codecs import FfmpegCodec

        return FfmpegCodec(codec=codec, **params)

    return build


def _lazy(module: str, cls: str) -> Callable[..., Condition]:
    def build(**params: Any) -> Condition:
        import importlib

        return getattr(importlib.import_module(f"fairser.degrade.{module}"), cls)(**params)

    return build


#: Condition builders by family name (one module per family; imports deferred so listing names is cheap).
CONDITIONS: dict[str, Callable[..., Condition]] = {
    "mp3": _ffmpeg("mp3"),
    "opus": _ffmpeg("opus"),
    "aac": _ffmpeg("aac"),
    "amr_nb": _ffmpeg("amr_nb"),
    "vorbis": _lazy("codecs", "Vorbis"),
    "gsm": _lazy("codecs", "Gsm"),
    "telephone": _lazy("telephone", "Telephone"),
    "bandlimit": _lazy("channel", "BandLimit"),
    "resample": _lazy("channel", "Resample"),
    "noise": _lazy("noise", "Noise"),
    "neural_codec": _lazy("neural", "NeuralCodec"),
}

#: Named sets of conditions (``--conditions legacy_low``); each item is (name, params).
PRESETS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "smoke": [("mp3", {"bitrate_kbps": 16}), ("telephone", {}), ("noise", {"kind": "white", "snr_db": 10})],
    "legacy_low": [
        ("mp3", {"bitrate_kbps": 16}),
        ("opus", {"bitrate_kbps": 6}),
        ("aac", {"bitrate_kbps": 16}),
        ("amr_nb", {"bitrate_kbps": 4.75}),
    ],
    "legacy": [
        ("mp3", {"bitrate_kbps": 16}),
        ("mp3", {"bitrate_kbps": 32}),
        ("opus", {"bitrate_kbps": 6}),
        ("opus", {"bitrate_kbps": 12}),
        ("aac", {"bitrate_kbps": 16}),
        ("aac", {"bitrate_kbps": 32}),
        ("vorbis", {"quality": 0.0}),
        ("amr_nb", {"bitrate_kbps": 4.75}),
        ("amr_nb", {"bitrate_kbps": 12.2}),
        ("gsm", {}),
        ("telephone", {}),
    ],
    "noise": [
        ("noise", {"kind": kind, "snr_db": snr})
        for kind in ("white", "pink", "babble")
        for snr in (20, 10, 0)
    ],
}


def build_condition(name: str, /, *, where: str | None = None, **params: Any) -> Condition:
    """The condition ``name`` with ``params``; a :class:`UserError` names an unknown family or a bad value."""
    if name not in CONDITIONS:
        raise UserError(
            f"unknown degradation condition {name!r}",
            where=where,
            fix=f"use one of {', '.join(sorted(CONDITIONS))}",
        )
    try:
        return CONDITIONS[name](**params)
    except TypeError as exc:  # an unknown or missing parameter
        raise UserError(
            f"condition {name!r}: {exc}",
            where=where,
            fix="see docs/METHODS.md §6 (robustness) for its parameters",
        ) from None
    except ValueError as exc:
        raise UserError(f"condition {name!r}: {exc}", where=where, fix="change the parameter") from None


def parse_condition(text: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value,key=value"`` (values read as YAML scalars) -> (name, params)."""
    name, _, rest = text.strip().partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(
                f"cannot read condition {text!r}: {item!r} is not key=value",
                fix="write e.g. mp3:bitrate_kbps=16 or noise:kind=babble,snr_db=5",
            )
        params[key.strip()] = yaml.safe_load(value.strip())
    if not name:
        raise UserError(f"cannot read condition {text!r}: no name", fix="write e.g. mp3:bitrate_kbps=16")
    return name, params


def condition_label(condition: Condition, label: str | None = None) -> str:
    """A condition's label in tables: ``label`` if given, else its own."""
    return label or condition.label()


def build_conditions(
    specs, *, babble_pool=(), cache=None, where: str = "robustness.conditions"
) -> list[tuple[str, Condition]]:
    """``(label, condition)`` of each config :class:`~fairser.config.ConditionSpec`, babble given its pool.

    ``babble_pool``: audio files babble is mixed from (e.g. training-split utterances); ``cache``: a
    :class:`~fairser.features.FeatureCache` for their memoised content hashes. Labels must be unique.
    """
    from fairser.features.cache import FeatureCache

    out: list[tuple[str, Condition]] = []
    hashes = None
    for i, spec in enumerate(specs):
        condition = build_condition(spec.name, where=f"{where}[{i}]", **spec.params)
        if getattr(condition, "kind", None) == "babble":
            if hashes is None:
                if not babble_pool:
                    raise UserError("babble noise needs a pool of utterances", where=f"{where}[{i}]")
                found = (cache or FeatureCache(".cache")).file_hashes(list(babble_pool))
                bad = [str(p) for p, h in zip(babble_pool, found, strict=True) if isinstance(h, OSError)]
                if bad:
                    raise UserError(f"babble pool files cannot be read: {bad[:3]}", where=f"{where}[{i}]")
                hashes = found
            try:
                condition = condition.with_pool(list(babble_pool), content_hashes=hashes)
            except ValueError as exc:
                raise UserError(str(exc), where=f"{where}[{i}]", fix="lower n_talkers") from None
        out.append((condition_label(condition, spec.label), condition))
    labels = [label for label, _ in out]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        raise UserError(
            f"condition labels {dupes} are not unique", where=where, fix="set `label:` to tell them apart"
        )
    return out
