"""CO-VADA (Tsai, Lin, Chou, Lee 2025, "CO-VADA: A Confidence-Oriented Voice Augmentation Debiasing
Approach for Fair Speech Emotion Recognition"): voice-convert the samples a bias-capturing classifier finds
easiest, keep their labels, and retrain on the union. Needs no demographic labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fairser.augment.covada import (
    FEMALE_TO_MALE,
    MALE_TO_FEMALE,
    VoiceShift,
    convert_voices,
    select_bias_guiding,
)
from fairser.grouping import GENDER_VALUES
from fairser.objectives._common import check_choice, check_range
from fairser.objectives.base import GroupBatch, ObjectiveOutput, register
from fairser.objectives.stages import GeneralizedCrossEntropy, RunData, StagedObjective

__all__ = ["CoVADA"]


@register
class CoVADA(StagedObjective):
    """CO-VADA: confidence-oriented voice augmentation (Tsai, Lin, Chou & Lee 2025).

    :meth:`augment` (run by the benchmark runner before training):

    1. A bias-capturing classifier (an untrained copy of the run's model) is trained with generalized
       cross-entropy (``q``) for ``bias_epochs`` epochs only (early stopped; the last epoch is kept), so it
       picks up the easiest, often spurious, cues.
    2. Bias-guiding samples: of the training samples it classifies correctly, the ``top_k`` fraction of the
       training set with the lowest GCE loss (:func:`~fairser.augment.covada.select_bias_guiding`).
    3. Their audio is voice-converted with Praat's "Change gender"
       (:func:`~fairser.augment.covada.convert_voices`) towards the other gender: median F0 210 Hz and
       formants x1.15 for a low voice, 110 Hz and x0.87 for a high one. ``direction="f0"`` (default) decides
       by the utterance's own median F0 (below ``f0_threshold`` = low), so no demographic label is used;
       ``direction="gender"`` uses the speaker's gender label instead. The WAVs go to ``audio_dir``
       (default: ``voice_conversion/`` beside the feature cache) and their features are extracted through
       the same encoder and feature cache as the corpus.
    4. The converted samples join the training set with the source's emotion label, domain and transcript.
       Their sensitive value for grouping (``converted_gender``): ``"unknown"`` (default **(our choice)**: a
       converted voice belongs to no real speaker group, and CO-VADA uses no demographics, so group terms and
       the stratified sampler only see real speakers), ``"source"`` (the source speaker's) or ``"target"``
       (the gender the voice was moved towards; needs ``male`` and ``female`` among the sensitive values).

    The main stage is ERM on the union: the loss is ``mean_i l_i``.

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    n_values : int
        Must be 2: the method converts voices towards the other gender, so the run's sensitive attribute must
        be gender (any other number of values is refused with a ValueError).
    q : float
        GCE exponent of the bias-capturing classifier.
    bias_epochs : int
        Its training epochs.
    top_k : float
        Fraction of the training set selected for conversion (0 < top_k <= 1).
    direction : {"f0", "gender"}
        How the conversion direction is chosen.
    f0_threshold : float
        Hz, for ``direction="f0"``.
    converted_gender : {"unknown", "source", "target"}
        Sensitive value of the converted samples.
    audio_dir : str, optional
        Folder of the converted WAVs.
    """

    name = "covada"

    def __init__(
        self,
        *,
        n_domains: int,
        n_classes: int,
        n_values: int = 2,
        q: float = 0.7,
        bias_epochs: int = 3,
        top_k: float = 0.2,
        direction: str = "f0",
        f0_threshold: float = 165.0,
        converted_gender: str = "unknown",
        audio_dir: str | None = None,
        to_female: dict[str, float] | None = None,
        to_male: dict[str, float] | None = None,
    ) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        if self.n_values != len(GENDER_VALUES):
            raise ValueError(
                f"{self.name}: CO-VADA converts voices towards the other gender, so it applies to the sensitive "
                f"attribute gender with its two values {GENDER_VALUES}; this run's attribute has "
                f"n_values={self.n_values}"
            )
        self.q = check_range(self.name, "q", q, low=0.0, high=1.0, low_open=True)
        self.bias_epochs = int(check_range(self.name, "bias_epochs", bias_epochs, low=1))
        self.top_k = check_range(self.name, "top_k", top_k, low=0.0, high=1.0, low_open=True)
        self.direction = check_choice(self.name, "direction", direction, ("f0", "gender"))
        self.f0_threshold = check_range(self.name, "f0_threshold", f0_threshold, low=0.0, low_open=True)
        self.converted_gender = check_choice(
            self.name, "converted_gender", converted_gender, ("unknown", "source", "target")
        )
        self.audio_dir = None if audio_dir is None else Path(audio_dir)
        self.to_female = VoiceShift(**to_female) if to_female else MALE_TO_FEMALE
        self.to_male = VoiceShift(**to_male) if to_male else FEMALE_TO_MALE
        self._info: dict[str, Any] = {}
        #: The last :meth:`augment`'s selection: training ``rows`` converted (in the order of the added rows),
        #: the bias model's per-row ``gce`` and ``correct``, each added row's ``direction`` and ``paths``.
        self.selection: dict[str, Any] = {}

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        loss = batch.losses.mean()
        return ObjectiveOutput(loss=loss, logs={"erm": float(loss.detach())})

    def summary(self) -> dict[str, Any]:
        return dict(self._info)

    def augment(self, *, data: RunData) -> Any:
        from fairser.features import FeatureCache

        train, meta = data.train, data.train_meta
        y = np.asarray(train.y)
        if tuple(data.sensitive_values) != GENDER_VALUES:  # voice conversion moves a voice across gender
            raise ValueError(
                f"{self.name} converts voices towards the other gender, so it needs the sensitive attribute "
                f"gender with the values {list(GENDER_VALUES)}; this run's values are "
                f"{list(data.sensitive_values)} (set `sensitive: [gender]`, or choose another method)"
            )
        # 1. bias-capturing classifier: GCE, early stopped
        bias = data.trainer.fit(
            model=data.trainer.new_model(),
            objective=GeneralizedCrossEntropy(n_domains=self.n_domains, n_classes=self.n_classes, q=self.q),
            train=train,
            valid=data.views["valid"][0],
            epochs=self.bias_epochs,
            keep="last",
        )
        proba = data.trainer.predict_proba(bias.model, train)
        p_y = proba[np.arange(len(y)), np.clip(y, 0, None)]
        gce = (1.0 - np.power(np.clip(p_y, 1e-12, 1.0), self.q)) / self.q
        correct = (proba.argmax(1) == y) & (y >= 0)
        # 2. bias-guiding samples
        chosen = select_bias_guiding(gce_losses=gce, correct=correct, top_k=self.top_k)
        # 3. voice conversion, one file per distinct source (a joint model holds each utterance twice)
        manifest_rows = meta["row"].to_numpy()[chosen]
        unique_rows, first = np.unique(manifest_rows, return_index=True)
        sources = [data.audio_paths[r] for r in unique_rows]
        out_dir = self.audio_dir or Path(data.cache_dir).parent / "voice_conversion"
        converted = convert_voices(
            sources,
            out_dir=out_dir,
            direction=self.direction,
            genders=list(meta["gender"].to_numpy()[chosen][first]),
            f0_threshold=self.f0_threshold,
            to_female=self.to_female,
            to_male=self.to_male,
            cache=FeatureCache(data.cache_dir),
            progress=data.progress,
        )
        ok_src = np.array([p is not None for p in converted.paths], dtype=bool)
        feats = np.zeros((len(sources), train.audio.shape[1]), dtype=np.float32)
        if ok_src.any():
            f, ok = data.featurize([p for p in converted.paths if p is not None], rows=unique_rows[ok_src])
            feats[ok_src] = f
            ok_src[np.flatnonzero(ok_src)[~ok]] = False
        # 4. new training rows: the converted audio with the source rows' labels, domains and transcripts
        pos = {r: i for i, r in enumerate(unique_rows)}
        src_idx = np.array([pos[r] for r in manifest_rows], dtype=np.int64)
        keep = ok_src[src_idx]
        new = train.subset(chosen[keep])
        new.audio = feats[src_idx[keep]]
        if self.converted_gender == "unknown":
            new.sensitive = np.full(len(new), -1, dtype=np.int64)
        elif self.converted_gender == "target":
            moved_up = np.array([converted.direction[i] == "up" for i in src_idx[keep]], dtype=bool)
            code = {v: i for i, v in enumerate(data.sensitive_values)}
            new.sensitive = np.where(moved_up, code["female"], code["male"])
        up = np.array([d == "up" for d in converted.direction])
        kept = chosen[keep]
        self.selection = {
            "rows": kept,
            "correct": correct,
            "gce": gce,
            "direction": [converted.direction[i] for i in src_idx[keep]],
            "paths": [converted.paths[i] for i in src_idx[keep]],
        }
        self._info = {
            "covada_selected": int(chosen.size),
            "covada_converted_files": int(ok_src.sum()),
            "covada_added_rows": int(keep.sum()),
            "covada_to_female_frac": float(up[ok_src].mean()) if ok_src.any() else float("nan"),
            "covada_bias_train_acc": float(correct[y >= 0].mean()) if (y >= 0).any() else float("nan"),
            "covada_skipped": len(converted.reasons),
            "covada_audio_dir": str(out_dir),
        }
        return train.concat(new)
