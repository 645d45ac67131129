"""Calibrate the built-in synthetic corpus's voices and prosody once, from first principles (docs/synthetic.md).

Run from the repository root (features are cached in --work):

    .venv/bin/python scripts/calibrate_synth.py --work /tmp/fairser_calib            # every phase
    .venv/bin/python scripts/calibrate_synth.py --work /tmp/fairser_calib --phase voices
    .venv/bin/python scripts/calibrate_synth.py --work /tmp/fairser_calib_q --quick  # small corpora, ~3 min

The full run synthesises and extracts the default corpus without biases (~7,400 utterances, ~5 min of
eGeMAPS on 2 idle cores) and a voice-screening corpus; ``--quick`` uses 16 speakers per gender and language
(7/3/6), one utterance per emotion and fewer screening speakers, to check that the script works.

What it measures is the generator's *voice and prosody* calibration ("Voice and prosody calibration", measured
once with generator version 1): emotion recognisability and the built-in voice gap, on the corpus **without**
the injected biases (a) skew, (b) under-representation and (c) weak cues. The bias calibration of generator
versions 3-4 ("Power and bias") is ERM through the real pipeline, not this script:
``fairser benchmark --config configs/default.yaml`` with the ERM objective only (its gaps table gives each
language's gap with CI, p-value and minimum detectable gap).

Protocol (METHODS.md §5; SYNTHETIC.md): eGeMAPSv02 functionals (openSMILE, 88 dims), a StandardScaler fitted
on the training speakers only (per-speaker normalisation with test statistics leaks the emotion) and a
multinomial logistic regression; every evaluation is speaker-disjoint.

* ``voices``: a screening corpus in which every candidate eSpeak NG variant speaks as 2-3 speakers per
  language; each variant is held out in turn (leave-one-variant-out) and its accuracy and mean F0 reported.
* ``male-offset``: the gender gap without biases when male voices get no base-pitch offset (female audio is
  byte-identical, so only the male half is re-extracted).
* ``main``: the default corpus without biases. 7-class accuracy / UAR per language (per-language models and
  one shared multilingual model), per-voice test accuracy, a text-only baseline, a gender probe, and the W-F1
  of each gender per language with and without the default *training-data* biases (b) and (a), applied to
  the same utterances with :func:`fairser.data.synth.apply_under_representation` then
  :func:`fairser.data.synth.apply_skew` (the corpus with them is exactly this one minus the dropped rows;
  (c) changes the audio and is not part of this paired comparison), on the official split and over random
  speaker re-splits of the same sizes.

The generator is not tuned to make any training objective win: only emotion recognisability (accuracy well
below 100 %) and the existence of the injected shortcut are checked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from fairser.data.labels import MELD_EMOTIONS
from fairser.data.manifest import resolve_audio_paths
from fairser.data.synth import SynthConfig, apply_skew, apply_under_representation, generate_corpus

FEMALE_CANDIDATES = ["f1", "f2", "f3", "f4", "f5", "Andrea", "anika", "belinda", "linda", "steph"]
MALE_CANDIDATES = [
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "Denis",
    "Diogo",
    "antonio",
    "michel",
    "sandro",
    "travis",
    "victor",
]
F0_COLUMN = "F0semitoneFrom27.5Hz_sma3nz_amean"
# the corpus without the injected biases (a) skew, (b) under-representation, (c) weak cues
UNBIASED = {"skew": {}, "under_representation": {}, "weak_cues": {}}
# --quick: version-2-sized corpora (16 speakers per gender and language), one utterance per emotion
QUICK = {
    "speakers_per_gender": 16,
    "split_speakers": {"train": 7, "valid": 3, "test": 6},
    "extra_test_speakers": {},
    "utterances_per_emotion": 1,
}


def training_biases(manifest: pd.DataFrame, config: SynthConfig) -> pd.DataFrame:
    """The rows kept under ``config``'s training-data biases: (b) under-representation, then (a) skew, as the
    generator applies them."""
    kept, _ = apply_under_representation(
        manifest, under_representation=config.under_representation, seed=config.seed
    )
    kept, _ = apply_skew(kept, skew=config.skew, seed=config.seed)
    return kept


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def extract_egemaps(
    manifest: pd.DataFrame,
    *,
    cache: Path,
    n_jobs: int,
    reuse: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """eGeMAPSv02 functionals per utterance id, cached as CSV (one cache per corpus).

    ``reuse = (other_manifest, other_features)`` takes the features of files that are byte-identical in
    another corpus (e.g. the female half when only the male pitch offset changed).
    """
    if cache.is_file():
        feats = pd.read_csv(cache, index_col="id")
        if set(manifest["id"]) <= set(feats.index):
            return feats.loc[manifest["id"]]
    import opensmile

    paths = resolve_audio_paths(manifest, root=manifest.attrs["root"])
    known = pd.DataFrame()
    todo = np.ones(len(manifest), dtype=bool)
    if reuse is not None:
        other_manifest, other_feats = reuse
        other_paths = dict(
            zip(
                other_manifest["id"],
                resolve_audio_paths(other_manifest, root=other_manifest.attrs["root"]),
                strict=True,
            )
        )
        same = [
            rid in other_paths and rid in other_feats.index and _md5(p) == _md5(other_paths[rid])
            for rid, p in zip(manifest["id"], paths, strict=True)
        ]
        todo = ~np.array(same)
        known = other_feats.loc[manifest["id"][~todo]]
        print(f"  eGeMAPS: reusing {len(known)} byte-identical files")

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
        num_workers=n_jobs,
        multiprocessing=n_jobs > 1,
    )
    files = [str(p) for p, t in zip(paths, todo, strict=True) if t]
    start = time.time()
    feats = smile.process_files(files)
    print(f"  eGeMAPS: {len(files)} files in {time.time() - start:.0f} s ({n_jobs} workers)")
    feats.index = manifest["id"].to_numpy()[todo]
    feats = pd.concat([known, feats]).loc[manifest["id"]]
    feats.index.name = "id"
    feats.to_csv(cache)
    return feats


def _model(kind: str = "lr"):
    if kind == "mlp":  # the project's CPU backbone: a small MLP head on eGeMAPS
        return make_pipeline(
            StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), alpha=1.0, max_iter=300, random_state=0)
        )
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))


def _fit_predict(
    x: pd.DataFrame, y: pd.Series, train: pd.Series, test: pd.Series, *, kind: str = "lr"
) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = _model(kind).fit(x[train.to_numpy()], y[train])
    return model.predict(x[test.to_numpy()])


def _scores(y_true, y_pred) -> dict:
    return {
        "acc": accuracy_score(y_true, y_pred),
        "uar": balanced_accuracy_score(y_true, y_pred),
        "wf1": f1_score(y_true, y_pred, average="weighted", zero_division=0),
    }


def _gender_table(df: pd.DataFrame, pred: np.ndarray) -> dict:
    """W-F1 per gender, the signed gap (female - male) and anger/joy recall per gender."""
    out = {}
    for g in ("female", "male"):
        m = (df["gender"] == g).to_numpy()
        out[f"wf1_{g}"] = f1_score(df["emotion"][m], pred[m], average="weighted", zero_division=0)
        rec = recall_score(
            df["emotion"][m], pred[m], labels=list(MELD_EMOTIONS), average=None, zero_division=0
        )
        for e in ("anger", "joy"):
            out[f"recall_{e}_{g}"] = rec[MELD_EMOTIONS.index(e)]
    out["gap_f_minus_m"] = out["wf1_female"] - out["wf1_male"]
    return out


def resplit(manifest: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Random speaker-disjoint split with the same number of speakers per (language, gender) in each split."""
    rng = np.random.default_rng(seed)
    out = manifest.copy()
    for _, group in manifest.groupby(["language", "gender"]):
        speakers = rng.permutation(sorted(group["speaker"].unique()))
        sizes = group.groupby("speaker")["split"].first().value_counts()
        names = ["train"] * sizes.get("train", 0) + ["valid"] * sizes.get("valid", 0)
        names += ["test"] * (len(speakers) - len(names))
        mapping = dict(zip(speakers, names, strict=True))
        out.loc[group.index, "split"] = group["speaker"].map(mapping)
    return out


def _md(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join([df.index.name or ""] + cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for idx, row in df.iterrows():
        cells = [floatfmt.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(idx)] + cells) + " |")
    return "\n".join(lines)


def phase_voices(work: Path, n_jobs: int, quick: bool) -> dict:
    print("## Voice screening (leave-one-variant-out, per language)")
    n = 15 if quick else 30
    config = SynthConfig(
        **UNBIASED,
        speakers_per_gender=n,
        split_speakers={"train": n - 2, "valid": 1, "test": 1},
        extra_test_speakers={},
        utterances_per_emotion=1 if quick else 3,
        voice_variants={"female": FEMALE_CANDIDATES, "male": MALE_CANDIDATES},
    )
    start = time.time()
    manifest = generate_corpus(config=config, out_dir=work / "voices_corpus", n_jobs=n_jobs, progress=False)
    print(f"  corpus: {len(manifest)} utterances in {time.time() - start:.0f} s")
    feats = extract_egemaps(manifest, cache=work / "voices_egemaps.csv", n_jobs=n_jobs)
    x = feats.reset_index(drop=True)
    manifest = manifest.reset_index(drop=True)
    manifest["variant"] = manifest["voice"].str.split("+").str[1]
    rows = []
    for lang, lang_df in manifest.groupby("language"):
        for variant, vdf in lang_df.groupby("variant"):
            train = (manifest["language"] == lang) & (manifest["variant"] != variant)
            test = manifest.index.isin(vdf.index)
            pred = _fit_predict(x, manifest["emotion"], train, pd.Series(test))
            f0 = 27.5 * 2 ** (x.loc[test, F0_COLUMN].mean() / 12)
            rows.append(
                {
                    "language": lang,
                    "variant": variant,
                    "gender": vdf["gender"].iloc[0],
                    "acc": accuracy_score(vdf["emotion"], pred),
                    "f0_hz": f0,
                }
            )
    table = pd.DataFrame(rows)
    acc = table.pivot(index="variant", columns="language", values="acc")
    f0 = table.pivot(index="variant", columns="language", values="f0_hz").add_suffix("_f0")
    gender = table.groupby("variant")["gender"].first()
    out = pd.concat([gender, acc, f0], axis=1).sort_values(["gender", "variant"])
    out["mean_acc"] = acc.mean(axis=1)
    out.index.name = "variant"
    print(_md(out))
    return {"table": out.reset_index().to_dict(orient="records")}


def phase_main(work: Path, n_jobs: int, resplits: int, quick: bool) -> dict:
    print("## Default corpus without biases, speaker-disjoint")
    size = QUICK if quick else {}
    default = SynthConfig(**size)
    config = SynthConfig(**UNBIASED, **size)
    start = time.time()
    manifest = generate_corpus(config=config, out_dir=work / "main_corpus", n_jobs=n_jobs, progress=False)
    synth_s = time.time() - start
    print(f"  corpus: {len(manifest)} utterances in {synth_s:.0f} s")
    feats = extract_egemaps(manifest, cache=work / "main_egemaps.csv", n_jobs=n_jobs)
    x = feats.reset_index(drop=True)
    df = manifest.reset_index(drop=True)
    results: dict = {"synthesis_seconds": synth_s, "utterances": len(df)}

    # 1. accuracy per language: per-language models and one shared model, official split
    rows = {}
    shared_pred = pd.Series(
        _fit_predict(x, df["emotion"], df["split"] == "train", df["split"] == "test"),
        index=df.index[df["split"] == "test"],
    )
    for lang in config.languages:
        test = (df["split"] == "test") & (df["language"] == lang)
        own = _fit_predict(x, df["emotion"], (df["split"] == "train") & (df["language"] == lang), test)
        text = make_pipeline(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3)), LogisticRegression(max_iter=3000)
        )
        text.fit(
            df.loc[(df["split"] == "train") & (df["language"] == lang), "transcript"],
            df.loc[(df["split"] == "train") & (df["language"] == lang), "emotion"],
        )
        text_pred = text.predict(df.loc[test, "transcript"])
        rows[lang] = {
            **{f"{k}_per_lang": v for k, v in _scores(df.loc[test, "emotion"], own).items()},
            **{
                f"{k}_shared": v
                for k, v in _scores(df.loc[test, "emotion"], shared_pred[test[test].index]).items()
            },
            "acc_text_only": accuracy_score(df.loc[test, "emotion"], text_pred),
        }
    acc = pd.DataFrame(rows).T
    acc.index.name = "language"
    sizes = config.split_speakers
    print(
        f"\n### 7-class emotion, eGeMAPS + LR (official split: {sizes.train} train / {sizes.test} test speakers "
        "per gender, plus the extra test speakers)"
    )
    print(_md(acc))
    results["accuracy"] = acc.reset_index().to_dict(orient="records")

    # 2. gender probe
    gpred = _fit_predict(x, df["gender"], df["split"] == "train", df["split"] == "test")
    results["gender_probe_acc"] = accuracy_score(df.loc[df["split"] == "test", "gender"], gpred)
    print(f"\ngender probe (eGeMAPS + LR, speaker-disjoint): {results['gender_probe_acc']:.3f}")

    # 3. per-voice test accuracy (shared model)
    test_df = df[df["split"] == "test"].assign(pred=shared_pred)
    test_df["variant"] = test_df["voice"].str.split("+").str[1]
    per_voice = test_df.assign(ok=test_df["pred"] == test_df["emotion"]).pivot_table(
        index="variant", columns="language", values="ok", aggfunc="mean"
    )
    per_voice.index.name = "variant"
    print("\n### Test accuracy per voice variant (shared model, official split)")
    print(_md(per_voice))
    results["per_voice_test_acc"] = per_voice.reset_index().to_dict(orient="records")

    # 4. training-data biases (b) + (a): W-F1 per gender, with and without, official split + re-splits
    kept = training_biases(df, default)
    train = kept[kept["split"] == "train"]
    share = train.assign(aj=train["emotion"].isin(["anger", "joy"])).pivot_table(
        index="language", columns="gender", values="aj", aggfunc="mean"
    )
    share.index.name = "language"
    print("\n### Share of anger+joy among TRAIN utterances under the default biases (2/7 = 0.286 without)")
    print(_md(share))
    results["train_anger_joy_share"] = share.reset_index().to_dict(orient="records")
    gaps = gender_gaps(
        df,
        x,
        languages=config.languages,
        skews={"none": SynthConfig(**UNBIASED), "default": default},
        seed=default.seed,
        resplits=resplits,
        mlp=True,
    )
    gaps.to_csv(work / "skew_gaps.csv", index=False)
    official = gaps[gaps["split"] == "official"].set_index(["model", "language", "skew"])[
        [
            "wf1_female",
            "wf1_male",
            "gap_f_minus_m",
            "recall_anger_female",
            "recall_anger_male",
            "recall_joy_female",
            "recall_joy_male",
        ]
    ]
    print("\n### W-F1 per gender (official split), without and with the default training-data biases")
    print(_md(official.reset_index().set_index("model")))
    summary = paired_summary(gaps, base="none", treated="default")
    print(
        f"\n### Paired effect of the default training-data biases (female - male W-F1 gap), official + {resplits} re-splits: mean and SD"
    )
    print(_md(summary))
    results["skew_official"] = official.reset_index().to_dict(orient="records")
    results["skew_summary"] = summary.reset_index().to_dict(orient="records")
    return results


def gender_gaps(
    df: pd.DataFrame,
    x: pd.DataFrame,
    *,
    languages,
    skews: dict,
    seed: int,
    resplits: int,
    variants: dict | None = None,
    mlp: bool = False,
) -> pd.DataFrame:
    """Per-gender W-F1 and anger/joy recall per language for each training condition, official split + re-splits.

    ``skews`` maps a condition name to a config whose training-data biases (:func:`training_biases`) are applied
    to the training split; ``variants`` optionally maps
    a condition name to another feature matrix (same rows) used for that condition.
    """
    rows = []
    splits = [("official", df)] + [(f"resplit{k}", resplit(df, seed=100 + k)) for k in range(resplits)]
    for tag, frame in splits:
        for name, skew in skews.items():
            feats = (variants or {}).get(name, x)
            kept = training_biases(frame, skew)
            train = pd.Series(frame.index.isin(kept.index[kept["split"] == "train"]), index=frame.index)
            test = frame["split"] == "test"
            shared = pd.Series(_fit_predict(feats, frame["emotion"], train, test), index=frame.index[test])
            if mlp:
                shared_mlp = pd.Series(
                    _fit_predict(feats, frame["emotion"], train, test, kind="mlp"), index=frame.index[test]
                )
            for lang in languages:
                lt = test & (frame["language"] == lang)
                per_lang = _fit_predict(feats, frame["emotion"], train & (frame["language"] == lang), lt)
                preds = [("shared", shared[lt[lt].index].to_numpy()), ("per_lang", per_lang)]
                if mlp:
                    preds.append(("shared_mlp", shared_mlp[lt[lt].index].to_numpy()))
                for model, pred in preds:
                    rows.append(
                        {
                            "split": tag,
                            "skew": name,
                            "model": model,
                            "language": lang,
                            **_gender_table(frame[lt], pred),
                        }
                    )
    return pd.DataFrame(rows)


def paired_summary(gaps: pd.DataFrame, *, base: str, treated: str) -> pd.DataFrame:
    """Mean and SD over splits of the gap under each condition and of the paired change."""
    wide = gaps.pivot_table(
        index=["split", "model", "language"],
        columns="skew",
        values=["gap_f_minus_m", "recall_anger_female", "recall_joy_female"],
    )
    delta = pd.DataFrame(
        {
            f"gap_{base}": wide[("gap_f_minus_m", base)],
            f"gap_{treated}": wide[("gap_f_minus_m", treated)],
            "d_gap": wide[("gap_f_minus_m", treated)] - wide[("gap_f_minus_m", base)],
            "d_recall_anger_f": wide[("recall_anger_female", treated)] - wide[("recall_anger_female", base)],
            "d_recall_joy_f": wide[("recall_joy_female", treated)] - wide[("recall_joy_female", base)],
        }
    ).reset_index()
    summary = delta.groupby(["model", "language"])[list(delta.columns[3:])].agg(["mean", "std"])
    summary.columns = [f"{a}_{b}" for a, b in summary.columns]
    return summary.reset_index().set_index("model")


def phase_male_offset(work: Path, n_jobs: int, resplits: int, quick: bool) -> dict:
    """Built-in voice gap (no biases) with the default male pitch offset and with none."""
    print("## Male base-pitch offset: gender gap without any bias")
    size = QUICK if quick else {}
    main_cfg = SynthConfig(**UNBIASED, **size)
    alt_cfg = SynthConfig(**UNBIASED, **size, male_pitch_offset=0.0)
    main = generate_corpus(config=main_cfg, out_dir=work / "main_corpus", n_jobs=n_jobs, progress=False)
    alt = generate_corpus(config=alt_cfg, out_dir=work / "male0_corpus", n_jobs=n_jobs, progress=False)
    x_main = extract_egemaps(main, cache=work / "main_egemaps.csv", n_jobs=n_jobs)
    x_alt = extract_egemaps(alt, cache=work / "male0_egemaps.csv", n_jobs=n_jobs, reuse=(main, x_main))
    df = main.reset_index(drop=True)
    gaps = gender_gaps(
        df,
        x_main.reset_index(drop=True),
        languages=main_cfg.languages,
        skews={f"offset{main_cfg.male_pitch_offset:g}": main_cfg, "offset0": main_cfg},
        seed=main_cfg.seed,
        resplits=resplits,
        variants={"offset0": x_alt.reset_index(drop=True)},
    )
    gaps.to_csv(work / "male_offset_gaps.csv", index=False)
    summary = paired_summary(gaps, base="offset0", treated=f"offset{main_cfg.male_pitch_offset:g}")
    print(
        f"\n### female - male W-F1 gap without biases: male offset 0 vs {main_cfg.male_pitch_offset:g} (official + {resplits} re-splits)"
    )
    print(_md(summary.iloc[:, :6]))
    return {"summary": summary.reset_index().to_dict(orient="records")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", type=Path, required=True, help="folder for the corpora, feature caches and results"
    )
    parser.add_argument("--phase", choices=["voices", "main", "male-offset", "all"], default="all")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small corpora: checks that the script works")
    parser.add_argument(
        "--resplits", type=int, default=5, help="random speaker re-splits for the skew effect"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    # one BLAS thread: the cores are shared, and threaded BLAS spins under contention (x40 slower here)
    with threadpool_limits(limits=1):
        if args.phase in ("voices", "all"):
            results["voices"] = phase_voices(args.work, args.n_jobs, args.quick)
        if args.phase in ("main", "all"):
            results["main"] = phase_main(args.work, args.n_jobs, args.resplits, args.quick)
        if args.phase in ("male-offset", "all"):
            results["male_offset"] = phase_male_offset(args.work, args.n_jobs, args.resplits, args.quick)
    out = args.work / f"calibration_{args.phase}.json"
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
