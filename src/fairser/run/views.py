"""The views of one run: each split's metadata rows, with domain ids and sensitive-value ids, as a dataset.

One builder for both backends (:func:`split_views`); a backend turns each split's rows into its dataset
(cached features: :class:`fairser.train.ArrayDataset`; raw audio: :class:`fairser.scale.data.AudioDataset`).

Domains are (language, modality) in the order ``[(lang, mod) for lang in languages for mod in modalities]``,
i.e. id ``language_index * n_modalities + modality_index``; one setting has one modality, the joint setting
(``joint_modalities``) both, and every utterance then appears once per modality (the audio-only copy without
its transcript). The sensitive attribute's value ids come from one :class:`~fairser.grouping.Grouper` built
from the whole manifest, so every split numbers them alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fairser.config import BenchmarkConfig
from fairser.grouping import Grouper

__all__ = ["SPLITS", "run_grouper", "setting_modalities", "split_views"]

#: The splits a run reads (``adapt`` only where the corpus has one: cross-corpus target speakers).
SPLITS = ("train", "valid", "test", "adapt")


def setting_modalities(setting: str, config: BenchmarkConfig) -> list[str]:
    """The modalities one run covers: both in the joint setting, else the setting itself."""
    return list(config.modalities) if setting == "joint" else [setting]


def run_grouper(manifest: pd.DataFrame, *, setting: str, config: BenchmarkConfig) -> Grouper:
    """The run's grouper: domains language x modality (in config order), values of ``config.sensitive``."""
    modalities = setting_modalities(setting, config)
    return Grouper.from_data(
        manifest,
        domain_cols=("language", "modality"),
        domains=[(lang, mod) for lang in config.languages for mod in modalities],
        sensitive=config.sensitive,
    )


def split_views(
    manifest: pd.DataFrame,
    *,
    setting: str,
    config: BenchmarkConfig,
    grouper: Grouper,
    labels: tuple[str, ...],
    make: Callable[..., Any],
) -> dict[str, tuple[Any, pd.DataFrame]]:
    """``split -> (dataset, meta)`` for train, valid, test (and adapt where present) of one setting.

    ``meta`` holds the split's manifest rows (once per modality of the setting) with columns ``modality``
    and ``row`` (the manifest row, indexing ``PreparedData.audio`` / ``paths``). ``make(meta, y=, domain=,
    sensitive=, n_values=)`` builds the backend's dataset from them.
    """
    label_index = {lab: i for i, lab in enumerate(labels)}
    modalities = setting_modalities(setting, config)
    views: dict[str, tuple[Any, pd.DataFrame]] = {}
    for name in SPLITS:
        rows = np.flatnonzero((manifest["split"] == name).to_numpy())
        if name == "adapt" and len(rows) == 0:
            continue
        metas = []
        for modality in modalities:
            meta = manifest.iloc[rows].copy()
            meta["modality"] = modality
            meta["row"] = rows
            metas.append(meta)
        meta = pd.concat(metas, ignore_index=True)
        y = meta["emotion"].map(label_index)
        if y.isna().any():
            bad = sorted(set(meta["emotion"]) - set(labels))
            raise ValueError(f"labels {bad} are not in the configured label set {list(labels)}")
        dataset = make(
            meta,
            y=y.to_numpy(dtype=np.int64),
            domain=grouper.domain_ids(meta),
            sensitive=grouper.value_ids(meta),
            n_values=grouper.n_values,
        )
        views[name] = (dataset, meta)
    if len(views["train"][0]) == 0:
        raise ValueError("the corpus has no training rows (split == 'train')")
    return views
