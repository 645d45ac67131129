"""Speaker-independent EmoDB baseline with eGeMAPS + SVM, to compare with the published figures.

Run:  .venv/bin/python scripts/emodb_svm_baseline.py [--emodb ../shared/data/emodb]

Protocol as in the eGeMAPS paper (Eyben et al. 2016, IEEE TAC 7(2), "The Geneva Minimalistic Acoustic
Parameter Set (GeMAPS) for Voice Research and Affective Computing"): all 7 EmoDB classes (incl. boredom),
eGeMAPSv02 functionals, leave-one-speaker-out, a linear SVM. The complexity C is chosen per fold on the
training speakers only (inner leave-one-speaker-out grid search), never on the test speaker. Two feature
normalisations are compared:

- ``global``: z-scores fitted on the training speakers only (what `fairser benchmark` does);
- ``speaker``: each speaker z-scored with its own statistics (incl. the unlabelled test speaker), the
  speaker-level standardisation used for the published eGeMAPS figures. It is transductive: it uses the
  test speaker's features (not labels), and it profits from every EmoDB speaker covering all emotions.

Prints UAR and W-F1 pooled over the folds, per gender, and the published range (~75-80% UAR for eGeMAPS
with an SVM, speaker-independent).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from fairser.data.corpora import import_corpus
from fairser.data.manifest import resolve_audio_paths
from fairser.features import FeatureCache, build_audio_encoder, extract_audio_features


def main() -> None:
    warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--emodb", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb"
    )
    ap.add_argument("--cache", type=Path, default=Path("cache/features"))
    args = ap.parse_args()

    m = import_corpus("emodb", args.emodb, target="original", split="speaker").manifest
    feats = extract_audio_features(
        paths=resolve_audio_paths(m, root=None),
        encoder=build_audio_encoder("egemaps"),
        cache=FeatureCache(args.cache),
        n_jobs=2,
        progress=True,
    )
    x, y, spk = feats.features[feats.ok], m["emotion"].to_numpy()[feats.ok], m["speaker"].to_numpy()[feats.ok]
    gender = m["gender"].to_numpy()[feats.ok]
    print(f"EmoDB, 7 classes, {len(y)} utterances, {len(set(spk))} speakers, eGeMAPSv02 + linear SVM, LOSO")
    for norm in ("global", "speaker"):
        xn = x.copy()
        if norm == "speaker":
            for s in np.unique(spk):
                i = spk == s
                xn[i] = (x[i] - x[i].mean(0)) / (x[i].std(0) + 1e-8)
        pred = np.empty_like(y)
        for train, test in LeaveOneGroupOut().split(xn, y, spk):
            model = GridSearchCV(
                make_pipeline(StandardScaler(), LinearSVC(dual="auto", max_iter=20000)),
                {"linearsvc__C": [1e-3, 1e-2, 1e-1, 1.0]},
                cv=LeaveOneGroupOut(),
                scoring="balanced_accuracy",
                n_jobs=2,
            )
            model.fit(xn[train], y[train], groups=spk[train])
            pred[test] = model.predict(xn[test])
        uar = balanced_accuracy_score(y, pred)
        wf1 = f1_score(y, pred, average="weighted")
        print(f"normalisation {norm:7s}: UAR {100 * uar:.1f}%   W-F1 {100 * wf1:.1f}%")
        for g in ("male", "female"):
            s = gender == g
            print(
                f"  {g:6s} UAR {100 * balanced_accuracy_score(y[s], pred[s]):.1f}%  "
                f"W-F1 {100 * f1_score(y[s], pred[s], average='weighted'):.1f}%  ({s.sum()} utterances)"
            )
    print("published (Eyben et al. 2016, eGeMAPS, SVM, LOSO, speaker standardisation): roughly 75-80% UAR")


if __name__ == "__main__":
    main()
