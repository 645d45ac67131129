"""Corpus loaders, label harmonisation and import_corpus (issue 3).

Real corpora come from ``../shared/data`` (skipped with a reason where missing); MELD-ST (gated), CREMA-D and
the bad-input cases are built as small folders in tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fairser.data.corpora import CORPORA, ImportResult, import_corpus, load_emodb, load_meld, load_meld_st
from fairser.data.corpora.crema_d import SENTENCES
from fairser.data.corpora.emodb import TEXTS
from fairser.data.corpora.meld import fix_text, main_cast_gender, read_meld_csv
from fairser.data.label_maps import CORPUS_LABELS, LABEL_MAPS, TARGETS, get_label_map
from fairser.data.labels import CORE4, MELD_EMOTIONS
from fairser.data.manifest import MANIFEST_COLUMNS, ManifestError, validate_manifest
from fairser.data.splits import assert_speaker_independent

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"real corpus folder {folder} is missing (../shared/data beside the checkout)")
    return folder


def write_wav(path: Path, *, seconds: float = 0.05, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, subtype="PCM_16")


# --------------------------------------------------------------------------------------------- label maps
@pytest.mark.parametrize("corpus", sorted(LABEL_MAPS))
@pytest.mark.parametrize("target", ["meld7", "core4"])
def test_declared_maps_cover_the_corpus_labels_and_land_in_the_target(corpus, target):
    mapping = get_label_map(corpus, target=target)
    assert set(mapping) == set(CORPUS_LABELS[corpus])
    assert {v for v in mapping.values() if v is not None} <= set(TARGETS[target])


def test_maps_drop_rather_than_guess():
    assert LABEL_MAPS["emodb"]["meld7"]["boredom"] is None
    assert LABEL_MAPS["ravdess"]["meld7"]["calm"] is None
    assert LABEL_MAPS["ravdess"]["meld7"]["happy"] == "joy"
    assert LABEL_MAPS["ravdess"]["core4"]["happy"] == "happiness"
    assert LABEL_MAPS["emodb"]["meld7"]["happiness"] == "joy"
    assert LABEL_MAPS["meld"]["core4"]["joy"] == "happiness"
    assert LABEL_MAPS["meld"]["core4"]["surprise"] is None


# --------------------------------------------------------------------------------------------- EmoDB
def test_emodb_real_corpus_counts_genders_and_texts():
    folder = shared("emodb")
    res = load_emodb(folder)
    df = res.manifest
    assert len(df) == 535
    assert res.dropped == {}
    validate_manifest(df, check_files=True)
    assert df.groupby("gender")["speaker"].nunique().to_dict() == {"female": 5, "male": 5}
    disgust = df[df["emotion"] == "disgust"]["gender"].value_counts().to_dict()
    assert disgust == {"female": 35, "male": 11}
    assert set(df["transcript"]) == set(TEXTS.values())
    assert set(df["language"]) == {"de"}
    # cross-check with the shared folder's own manifest
    ref = pd.read_csv(folder / "manifest.csv", dtype=str)
    ref["stem"] = ref["path"].map(lambda p: Path(p).stem)
    mine = df.assign(stem=df["audio_path"].map(lambda p: Path(p).stem))
    merged = mine.merge(ref, on="stem", suffixes=("", "_ref"))
    assert len(merged) == 535
    assert (merged["emotion"] == merged["emotion_ref"]).all()
    assert (merged["gender"] == merged["gender_ref"]).all()
    assert (merged["transcript"] == merged["text"]).all()


def test_emodb_import_core4_drops_and_speaker_split():
    res = import_corpus("emodb", shared("emodb"), target="core4", seed=3, allow_drop=True)
    assert res.dropped == {
        "label 'boredom' has no core4 counterpart": 81,
        "label 'fear' has no core4 counterpart": 69,
        "label 'disgust' has no core4 counterpart": 46,
    }
    df = res.manifest
    assert set(df["emotion"]) == set(CORE4)
    assert len(df) == 535 - 81 - 69 - 46
    assert_speaker_independent(df)
    per_split = df.groupby(["split", "gender"])["speaker"].nunique().unstack()
    assert per_split.loc["train"].tolist() == [3, 3]
    assert per_split.loc["valid"].tolist() == [1, 1]
    assert per_split.loc["test"].tolist() == [1, 1]
    text = res.summary_text()
    assert "boredom" in text and "dropped: 196" in text


def test_emodb_bad_file_names_error_or_counted(tmp_path):
    write_wav(tmp_path / "wav" / "03a01Fa.wav")
    write_wav(tmp_path / "wav" / "03a01Xa.wav")  # X is no EmoDB emotion letter
    write_wav(tmp_path / "wav" / "99a01Wa.wav")  # no such speaker
    write_wav(tmp_path / "wav" / "notes.wav")
    with pytest.raises(ManifestError, match=r"03a01Xa\.wav: unknown emotion code"):
        load_emodb(tmp_path)
    res = load_emodb(tmp_path, strict=False)
    assert len(res.manifest) == 1
    assert res.dropped == {
        "unknown emotion code in file name": 1,
        "unknown speaker code in file name": 1,
        "file name does not follow the EmoDB convention": 1,
    }
    assert res.dropped_rows["source"].str.endswith("03a01Xa.wav").any()


def test_emodb_gender_table_may_not_contradict_the_corpus(tmp_path):
    write_wav(tmp_path / "03a01Fa.wav")
    with pytest.raises(ManifestError, match="contradicts.*emodb_03"):
        import_corpus("emodb", tmp_path, gender_table={"emodb_03": "female"}, target="original")


# --------------------------------------------------------------------------------------------- RAVDESS
def test_ravdess_real_corpus_is_balanced():
    folder = shared("ravdess")
    res = import_corpus("ravdess", folder, target="original")
    df = res.manifest
    assert len(df) == 1440
    counts = df.groupby(["gender", "emotion"]).size()
    assert (counts.drop("neutral", level="emotion") == 96).all()
    assert (counts.xs("neutral", level="emotion") == 48).all()
    assert df.groupby("gender")["speaker"].nunique().to_dict() == {"female": 12, "male": 12}
    assert set(df["transcript"]) == {"Kids are talking by the door", "Dogs are sitting by the door"}
    assert_speaker_independent(df)
    assert df.groupby("split")["gender"].nunique().eq(2).all()
    ref = pd.read_csv(folder / "manifest.csv", dtype=str)
    ref["stem"] = ref["path"].map(lambda p: Path(p).stem)
    merged = df.assign(stem=df["audio_path"].map(lambda p: Path(p).stem)).merge(
        ref, on="stem", suffixes=("", "_r")
    )
    assert len(merged) == 1440
    assert (merged["emotion"] == merged["emotion_r"]).all() and (merged["gender"] == merged["gender_r"]).all()


def test_ravdess_meld7_drops_only_calm():
    res = import_corpus("ravdess", shared("ravdess"), target="meld7")
    assert res.dropped == {"label 'calm' has no meld7 counterpart": 192}
    assert set(res.manifest["emotion"]) == set(MELD_EMOTIONS)
    assert (res.manifest.loc[res.manifest["emotion_original"] == "happy", "emotion"] == "joy").all()


def test_ravdess_bad_codes_and_song_files(tmp_path):
    write_wav(tmp_path / "Actor_01" / "03-01-05-01-01-01-01.wav")
    write_wav(tmp_path / "Actor_02" / "03-02-05-01-01-01-02.wav")  # song
    write_wav(tmp_path / "Actor_02" / "03-01-09-01-01-01-02.wav")  # emotion 09 does not exist
    with pytest.raises(ManifestError, match=r"03-01-09-01-01-01-02\.wav: unknown emotion code"):
        import_corpus("ravdess", tmp_path)
    res = import_corpus(
        "ravdess", tmp_path, strict=False, target="original", split="speaker", allow_drop=True
    )
    assert res.manifest["id"].tolist() == ["ravdess_03-01-05-01-01-01-01"]
    assert res.manifest["gender"].tolist() == ["male"]
    assert res.dropped["unknown emotion code in file name"] == 1
    assert sum(v for k, v in res.dropped.items() if "song" in k) == 1


# --------------------------------------------------------------------------------------------- MELD
def test_meld_real_csvs_counts_and_unknown_gender():
    res = import_corpus("meld", shared("meld"))
    df = res.manifest
    assert df["split"].value_counts().to_dict() == {"train": 9989, "test": 2610, "valid": 1109}
    assert (df["audio_path"] == "").all() and (df["modality"] == "text").all()
    validate_manifest(df, check_files=False, labels=MELD_EMOTIONS)
    main = {
        "Rachel": "female",
        "Monica": "female",
        "Phoebe": "female",
        "Ross": "male",
        "Chandler": "male",
        "Joey": "male",
    }
    for name, gender in main.items():
        assert (df.loc[df["character"] == name, "gender"] == gender).all()
    others = df[~df["character"].isin(main)]
    assert len(others) > 0 and (others["gender"] == "unknown").all()
    assert df["id"].is_unique
    assert "’" in " ".join(df["transcript"].head(50))
    # the shipped table agrees with the shared folder's table
    ref = pd.read_csv(SHARED / "meld" / "main_cast_gender.csv", dtype=str)
    assert main_cast_gender() == dict(zip(ref["speaker"], ref["gender"], strict=True))


def test_meld_user_gender_table_extends_the_main_cast(tmp_path):
    table = tmp_path / "genders.csv"
    table.write_text("speaker,gender\nJanice,F\nthe interviewer,male\n")
    df = load_meld(shared("meld"), gender_table=table).manifest
    assert (df.loc[df["character"] == "Janice", "gender"] == "female").all()
    assert (df.loc[df["character"] == "The Interviewer", "gender"] == "male").all()
    assert (df.loc[df["character"] == "Ross", "gender"] == "male").all()


def test_meld_core4_counts_dropped_labels():
    res = import_corpus("meld", shared("meld"), target="core4", allow_drop=True)
    assert set(res.dropped) == {
        f"label {e!r} has no core4 counterpart" for e in ("surprise", "fear", "disgust")
    }
    assert res.dropped["label 'surprise' has no core4 counterpart"] == 1205 + 150 + 281
    assert set(res.manifest["emotion"]) == set(CORE4)


def test_fix_text_repairs_mojibake():
    assert fix_text("You must\x92ve had") == "You must’ve had"
    assert fix_text("You mustâ€™ve had") == "You must’ve had"
    assert fix_text("Wait\x85 what\xa0now") == "Wait… what now"
    clean = "Déjà vu — it’s fine…"
    assert fix_text(clean) == clean


def test_meld_reads_windows_1252_csv_and_names_missing_columns(tmp_path):
    header = ",".join(
        [
            "Sr No.",
            "Utterance",
            "Speaker",
            "Emotion",
            "Sentiment",
            "Dialogue_ID",
            "Utterance_ID",
            "Season",
            "Episode",
            "StartTime",
            "EndTime",
        ]
    )
    row = '1,You must’ve had it,Ross,Joy,positive,0,0,1,1,"00:00:01,000","00:00:02,000"'
    for name in ("train", "dev", "test"):
        (tmp_path / f"{name}_sent_emo.csv").write_bytes(f"{header}\n{row}\n".encode("cp1252"))
    df = load_meld(tmp_path).manifest
    assert df["transcript"].tolist() == ["You must’ve had it"] * 3
    assert df["emotion"].tolist() == ["joy"] * 3 and df["gender"].tolist() == ["male"] * 3
    (tmp_path / "dev_sent_emo.csv").write_text("Sr No.,Utterance,Speaker\n1,hi,Ross\n")
    with pytest.raises(ManifestError, match=r"dev_sent_emo\.csv: missing column\(s\) \['Emotion'"):
        read_meld_csv(tmp_path / "dev_sent_emo.csv")
    with pytest.raises(ManifestError, match=r"dev_sent_emo\.csv: missing column"):
        load_meld(tmp_path)


# --------------------------------------------------------------------------------------------- MELD-ST
MELD_ST_ROWS = {
    "train": [(0, 0, 0, "joy", "Rachel"), (1, 0, 1, "anger", "Ross"), (2, 1, 0, "neutral", "Janice")],
    "valid": [(0, 5, 0, "sadness", "Monica"), (1, 5, 1, "surprise", "Chandler")],
    "test": [(0, 9, 0, "fear", "Joey"), (7, 9, 1, "disgust", "Phoebe")],
}


def build_meld_st(root: Path, *, pairs=("ENG_DEU", "ENG_JPN"), audio_beside_pair: bool = False) -> Path:
    """A MELD-ST-shaped folder: pair CSVs and <LANG>/<train|dev|test>/<split>_<id>.wav (16 kHz mono)."""
    info = {"ENG_DEU": ("deu", "DEU", "German"), "ENG_JPN": ("jpn", "JPN", "Japanese")}
    for pair in pairs:
        prefix, folder, col = info[pair]
        pair_dir = root / pair
        pair_dir.mkdir(parents=True, exist_ok=True)
        audio_root = root if audio_beside_pair else pair_dir
        for split, rows in MELD_ST_ROWS.items():
            audio_split = "dev" if split == "valid" else split
            records = []
            for rid, dia, utt, emo, spk in rows:
                records.append(
                    {
                        "id": rid,
                        "dia_id": dia,
                        "utt_id": utt,
                        "emotion": emo,
                        "sentiment": "neutral",
                        "English": f"english {split} {rid}",
                        col: f"{col.lower()} {split} {rid}",
                        "season": 1,
                        "episode": 2,
                        "speaker": spk,
                        "English_begin_time": "00:00:01,000",
                        "English_end_time": "00:00:02,000",
                        f"{col}_begin_time": "00:00:01,100",
                        f"{col}_end_time": "00:00:02,100",
                    }
                )
                for lang in ("ENG", folder):
                    write_wav(audio_root / lang / audio_split / f"{audio_split}_{rid}.wav")
            pd.DataFrame(records).to_csv(pair_dir / f"{prefix}_{split}.csv", index=False)
    return root


def test_meld_st_two_utterances_per_row_official_splits(tmp_path):
    root = build_meld_st(tmp_path / "MELD-ST")
    res = import_corpus("meld_st", root)
    df = res.manifest
    n_rows = sum(len(r) for r in MELD_ST_ROWS.values())
    assert len(df) == 2 * 2 * n_rows
    assert res.dropped == {}
    assert df.groupby("pair")["language"].apply(lambda s: sorted(set(s))).to_dict() == {
        "ENG_DEU": ["de", "en"],
        "ENG_JPN": ["en", "ja"],
    }
    assert df["split"].value_counts().to_dict() == {"train": 12, "valid": 8, "test": 8}
    valid = df[df["split"] == "valid"]
    assert valid["audio_path"].map(lambda p: Path(p).parent.name).eq("dev").all()
    assert valid["audio_path"].map(lambda p: Path(p).name.startswith("dev_")).all()
    de = df[(df["pair"] == "ENG_DEU") & (df["language"] == "de") & (df["split"] == "test")].set_index(
        "pair_row_id"
    )
    assert de.loc["7", "transcript"] == "german test 7"
    assert de.loc["7", "text_en"] == "english test 7"
    en = df.set_index("id").loc[de.loc["7", "counterpart_id"]]
    assert en["language"] == "en" and en["transcript"] == "english test 7" and en["emotion"] == "disgust"
    assert Path(en["audio_path"]).parts[-4:] == ("ENG_DEU", "ENG", "test", "test_7.wav")
    assert de.loc["7", "speaker"] == "meld_st_de_Phoebe" and en["speaker"] == "meld_st_en_Phoebe"
    assert de.loc["7", "gender"] == "female"
    assert (df.loc[df["character"] == "Janice", "gender"] == "unknown").all()
    assert (df.loc[df["character"] == "Ross", "gender"] == "male").all()
    text = res.summary_text()
    assert "unknown gender: 4 utterances" in text


def test_meld_st_gender_table_layout_variants_and_core4(tmp_path):
    root = build_meld_st(tmp_path / "MELD-ST", pairs=("ENG_JPN",), audio_beside_pair=True)
    res = import_corpus("meld_st", root, gender_table={"Janice": "female"}, target="core4", allow_drop=True)
    df = res.manifest
    assert set(df["language"]) == {"en", "ja"}
    assert (df["gender"] != "unknown").all()
    assert set(df["emotion"]) <= set(CORE4)
    assert res.dropped["label 'surprise' has no core4 counterpart"] == 2
    # a single pair folder works as the path too
    res_pair = load_meld_st(root / "ENG_JPN")
    assert len(res_pair.manifest) == 2 * sum(len(r) for r in MELD_ST_ROWS.values())


def test_meld_st_missing_audio_and_missing_column(tmp_path):
    root = build_meld_st(tmp_path / "MELD-ST", pairs=("ENG_DEU",))
    missing = root / "ENG_DEU" / "DEU" / "dev" / "dev_1.wav"
    missing.unlink()
    with pytest.raises(ManifestError, match=r"dev_1\.wav: audio file missing"):
        load_meld_st(root)
    res = import_corpus("meld_st", root, strict=False)
    assert res.dropped == {"audio file missing": 1}
    assert len(res.manifest) == 2 * 7 - 1
    assert "meld_st_eng_deu_en_valid_1" in set(res.manifest["id"])  # the English side is kept
    csv = root / "ENG_DEU" / "deu_test.csv"
    pd.read_csv(csv).drop(columns=["German"]).to_csv(csv, index=False)
    with pytest.raises(ManifestError, match=r"deu_test\.csv: missing column\(s\) \['German'\]"):
        load_meld_st(root, strict=False)
    with pytest.raises(ValueError, match="unknown MELD-ST pair"):
        load_meld_st(root, pairs=["ENG_FRA"])


# --------------------------------------------------------------------------------------------- CREMA-D
def build_crema_d(root: Path, *, actors=("1001", "1002", "1003", "1004", "1005", "1006")) -> Path:
    demo = pd.DataFrame(
        {
            "ActorID": list(actors),
            "Age": ["51", "21", "21", "42", "29", "58"][: len(actors)],
            "Sex": ["Male", "Female", "Female", "Female", "Male", "Male"][: len(actors)],
            "Race": ["Caucasian"] * len(actors),
            "Ethnicity": ["Not Hispanic"] * len(actors),
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    demo.to_csv(root / "VideoDemographics.csv", index=False)
    for actor in actors:
        for sent, emo, level in (
            ("DFA", "ANG", "XX"),
            ("IEO", "HAP", "HI"),
            ("TSI", "NEU", "XX"),
            ("WSI", "FEA", "LO"),
        ):
            write_wav(root / "AudioWAV" / f"{actor}_{sent}_{emo}_{level}.wav")
    return root


def test_crema_d_folder_genders_texts_and_split(tmp_path):
    root = build_crema_d(tmp_path / "CREMA-D")
    res = import_corpus("crema_d", root, target="meld7")
    df = res.manifest
    assert len(df) == 24
    assert df.groupby("gender")["speaker"].nunique().to_dict() == {"female": 3, "male": 3}
    assert df.set_index("id").loc[
        "crema_d_1002_IEO_HAP_HI", ["emotion", "gender", "transcript", "age"]
    ].tolist() == [
        "joy",
        "female",
        SENTENCES["IEO"],
        "21",
    ]
    assert_speaker_independent(df)
    assert df.groupby("split")["gender"].nunique().eq(2).all()
    assert res.dropped == {}


def test_crema_d_missing_demographics_row_and_bad_code(tmp_path):
    root = build_crema_d(tmp_path / "CREMA-D")
    write_wav(root / "AudioWAV" / "1077_DFA_ANG_XX.wav")
    write_wav(root / "AudioWAV" / "1001_DFA_XYZ_XX.wav")
    with pytest.raises(
        ManifestError, match=r"1077_DFA_ANG_XX\.wav: actor missing from VideoDemographics\.csv"
    ):
        import_corpus("crema_d", root / "AudioWAV")  # demographics found in the parent folder
    res = import_corpus("crema_d", root, strict=False, target="original")
    assert res.dropped == {
        "actor missing from VideoDemographics.csv": 1,
        "unknown emotion code in file name": 1,
    }
    assert len(res.manifest) == 24
    pd.read_csv(root / "VideoDemographics.csv").drop(columns=["Sex"]).to_csv(root / "demo2.csv", index=False)
    with pytest.raises(ManifestError, match=r"demo2\.csv: missing column\(s\) \['Sex'\]"):
        import_corpus("crema_d", root, demographics=root / "demo2.csv", strict=False)


# --------------------------------------------------------------------------------------------- generic
def test_generic_csv_with_mapping_constants_and_label_map(tmp_path):
    for i in range(8):
        write_wav(tmp_path / "clips" / f"u{i}.wav")
    rows = pd.DataFrame(
        {
            "file": [f"clips/u{i}.wav" for i in range(8)],
            "label": ["colère", "joie", "neutre", "tristesse", "mépris", "joie", "colère", "neutre"],
            "who": ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"],
            "sex": ["m", "m", "f", "f", "m", "m", "f", "f"],
            "set": ["train", "train", "dev", "dev", "test", "test", "train", "train"],
            "snr": [str(x) for x in range(8)],
        }
    )
    rows.to_csv(tmp_path / "corpus.csv", index=False)
    cols = {
        "audio_path": "file",
        "emotion": "label",
        "speaker": "who",
        "gender": "sex",
        "split": "set",
        "language": "fr",
        "corpus": "=mycorpus",
    }
    fr_map = {"colère": "anger", "joie": "happiness", "neutre": "neutral", "tristesse": "sadness"}
    res = import_corpus("generic", tmp_path / "corpus.csv", columns=cols, target="core4", label_map=fr_map)
    df = res.manifest
    assert len(df) == 7
    assert res.dropped == {"label 'mépris' is not a known emotion name": 1}
    assert set(df["language"]) == {"fr"} and set(df["corpus"]) == {"mycorpus"}
    assert set(df["split"]) == {"train", "valid", "test"}  # the file's split, dev -> valid
    assert df["snr"].tolist()[:2] == ["0", "1"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["audio_path"])
    assert (df.loc[df["emotion_original"] == "joie", "emotion"] == "happiness").all()


def test_generic_jsonl_without_split_gets_speaker_split(tmp_path):
    records = []
    for spk, gender in [
        ("a", "female"),
        ("b", "female"),
        ("c", "female"),
        ("d", "male"),
        ("e", "male"),
        ("f", "male"),
    ]:
        for j in range(2):
            write_wav(tmp_path / f"{spk}{j}.wav")
            records.append(
                {"path": f"{spk}{j}.wav", "emotion": "anger", "spk": spk, "gender": gender, "text": "hi"}
            )
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    res = import_corpus(
        "generic",
        tmp_path / "m.jsonl",
        columns={"audio_path": "path", "speaker": "spk", "language": "de", "transcript": "text"},
        seed=1,
    )
    df = res.manifest
    assert len(df) == 12 and set(df["transcript"]) == {"hi"}
    assert_speaker_independent(df)
    assert df.groupby("split")["gender"].nunique().to_dict() == {"test": 2, "train": 2, "valid": 2}
    with pytest.raises(ValueError, match="no split column"):
        import_corpus(
            "generic",
            tmp_path / "m.jsonl",
            split="official",
            columns={"audio_path": "path", "speaker": "spk", "language": "de"},
        )


def test_generic_bad_mappings_name_the_problem(tmp_path):
    write_wav(tmp_path / "a.wav")
    pd.DataFrame({"file": ["a.wav", "b.wav"], "lbl": ["anger", "anger"], "who": ["s", "s"]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    base = {"audio_path": "file", "speaker": "who", "language": "en"}
    with pytest.raises(ManifestError, match=r"column 'lable' \(mapped to 'emotion'\) not found"):
        import_corpus("generic", tmp_path / "c.csv", columns={**base, "emotion": "lable"})
    with pytest.raises(ManifestError, match=r"no column for \['emotion'\]"):
        import_corpus("generic", tmp_path / "c.csv", columns=base)
    with pytest.raises(ManifestError, match=r"b\.wav: audio file missing"):
        import_corpus("generic", tmp_path / "c.csv", columns={**base, "emotion": "lbl"}, split="speaker")
    res = import_corpus(
        "generic",
        tmp_path / "c.csv",
        columns={**base, "emotion": "lbl"},
        strict=False,
        split="speaker",
        fractions=(1, 0, 0),
        allow_drop=True,
    )
    assert len(res.manifest) == 1 and res.dropped == {"audio file missing": 1}


# --------------------------------------------------------------------------------------------- registry
def test_registry_and_argument_errors(tmp_path):
    assert {"meld_st", "meld", "emodb", "ravdess", "crema_d", "generic"} <= set(CORPORA)
    with pytest.raises(ValueError, match="unknown corpus 'iemocap'"):
        import_corpus("iemocap", tmp_path)
    with pytest.raises(ValueError, match="emodb has no official split"):
        import_corpus("emodb", tmp_path, split="official")
    with pytest.raises(ValueError, match="unknown label target"):
        import_corpus("emodb", tmp_path, target="meld6")
    with pytest.raises(ManifestError, match="no usable audio files"):
        import_corpus("emodb", tmp_path)


def test_import_result_summary_table(tmp_path):
    root = build_crema_d(tmp_path / "c")
    res = import_corpus("crema_d", root, target="core4", allow_drop=True)
    assert isinstance(res, ImportResult)
    table = res.summary()
    assert table.loc[("en", "female"), "happiness"] == 3
    assert table.loc[("en", "male"), "total"] == 9
    assert res.dropped == {"label 'fear' has no core4 counterpart": 6}
    assert list(res.manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert str(res) == res.summary_text()


def test_speaker_split_of_a_corpus_with_an_official_split_keeps_it_aside():
    res = import_corpus("meld", shared("meld"), split="speaker", seed=0)
    df = res.manifest
    assert_speaker_independent(df)
    assert df["official_split"].value_counts().to_dict() == {"train": 9989, "test": 2610, "valid": 1109}
    known = df[df["gender"] != "unknown"]
    assert known.groupby("split")["gender"].nunique().to_dict() == {"test": 2, "train": 2, "valid": 2}
    assert any("speaker-independent" in n for n in res.notes)


def test_manifest_reads_non_binary_gender_and_still_refuses_typos():
    """A third gender value reaches the benchmark (issue 11); a misspelt one is still caught."""
    from fairser.data.manifest import ManifestError, validate_manifest

    base = {
        "audio_path": "a.wav", "transcript": "", "emotion": "neutral", "language": "en", "corpus": "c", "split": "train",
    }  # fmt: skip
    rows = [
        {**base, "id": f"u{i}", "speaker": f"s{i}", "gender": g}
        for i, g in enumerate(["M", "nonbinary", "NB", ""])
    ]
    out = validate_manifest(pd.DataFrame(rows), check_files=False)
    assert list(out["gender"]) == ["male", "non-binary", "non-binary", "unknown"]
    with pytest.raises(ManifestError, match=r"unknown gender value\(s\) \['femal'\]"):
        validate_manifest(pd.DataFrame([{**rows[0], "gender": "femal"}]), check_files=False)
