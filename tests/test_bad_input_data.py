"""Bad input on the data side (issue 14): every case gives one clear message (what, where, fix) and exit code 2,
or a counted skip; never a traceback, never silent loss. Tiny files are built in tmp_path; the two user
scenarios (a plain ``path,speaker,gender,language,emotion,text`` manifest with the corpus's own label names,
and a corpus with a single-speaker language) run through the CLI alone, on real EmoDB/RAVDESS audio from
``../shared/data`` when present, else on tiny synthetic WAVs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fairser.cli import app
from fairser.data.corpora import import_corpus
from fairser.data.labels import LABEL_SYNONYMS, synonym_map
from fairser.data.manifest import ManifestError, check_transcripts, read_manifest
from fairser.data.splits import language_split_notes
from fairser.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SR = 16000
HEADER = "path,speaker,gender,language,emotion,text"


def tone(seconds: float = 0.3, f0: float = 220.0, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def write_corpus(root: Path, rows: list[tuple], *, name: str = "manifest.csv", header: str = HEADER) -> Path:
    """``rows`` of (path, speaker, gender, language, emotion, text); a WAV is written for every missing path."""
    root.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        wav = root / row[0]
        if not wav.exists():
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, tone(f0=150 + 7 * i), SR)
    with (root / name).open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return root / name


def plain_rows(labels=("angry", "happy", "sad", "fearful", "surprised"), speakers=6, per=1, lang="en"):
    """Speakers s0..s{n-1}, alternately male/female, each saying every label ``per`` times."""
    rows = []
    for s in range(speakers):
        gender = ("male", "female")[s % 2]
        for label in labels:
            for u in range(per):
                rows.append((f"wav/s{s}_{label}_{u}.wav", f"s{s}", gender, lang, label, "some words"))
    return rows


def cli(*args: str):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    return res


def refused(res, *fragments: str) -> None:
    """Exit code 2 and one message holding every fragment and a fix."""
    assert res.exit_code == 2, res.output
    assert "fix:" in res.output, res.output
    for fragment in fragments:
        assert fragment in res.output, (fragment, res.output)


# ------------------------------------------------------------------------------------------ refused, with a fix
def _no_table(tmp):
    (tmp / "c").mkdir()
    return ["data", "import", "generic", tmp / "c"], ["no manifest.csv", str(tmp / "c")]


def _two_tables(tmp):
    write_corpus(tmp / "c", plain_rows(), name="a.csv")
    write_corpus(tmp / "c", plain_rows(), name="b.csv")
    return ["data", "import", "generic", tmp / "c"], ["2 table files", "'a.csv'", "'b.csv'"]


def _no_emotion_column(tmp):
    write_corpus(tmp / "c", plain_rows(), header="path,speaker,gender,language,feeling,text")
    return ["data", "import", "generic", tmp / "c"], [
        "no column for ['emotion']",
        "--columns",
        "manifest.csv",
    ]


def _column_typo(tmp):
    write_corpus(tmp / "c", plain_rows())
    return (
        ["data", "import", "generic", tmp / "c", "--columns", "lable=emotion"],
        ["column 'lable' (mapped to 'emotion') not found"],
    )


def _columns_not_pairs(tmp):
    write_corpus(tmp / "c", plain_rows())
    return ["data", "import", "generic", tmp / "c", "--columns", "path"], [
        "--columns",
        "'path' is not a NAME=VALUE",
    ]


def _unknown_labels_over_max_drop(tmp):
    rows = plain_rows(labels=("angry", "grumpy", "meh", "sad"))
    write_corpus(tmp / "c", rows)
    return (
        ["data", "import", "generic", tmp / "c", "-o", tmp / "m.csv"],
        ["12 of 24 utterances (50%) would be dropped", "grumpy", "not a known emotion name", "--allow-drop"],
    )


def _label_map_outside_target(tmp):
    write_corpus(tmp / "c", plain_rows())
    return (
        ["data", "import", "generic", tmp / "c", "--label-map", "angry=furious"],
        ["sends 'angry' to 'furious'", "label_map"],
    )


def _speaker_with_two_genders(tmp):
    rows = plain_rows()
    rows[0] = (rows[0][0], rows[0][1], "female", *rows[0][3:])  # s0 is male in the other rows
    write_corpus(tmp / "c", rows)
    return ["data", "import", "generic", tmp / "c"], [
        "c/s0: female 1 rows, male 4 rows",
        "one gender per speaker",
    ]


def _missing_audio(tmp):
    write_corpus(tmp / "c", plain_rows())
    (tmp / "c" / "wav" / "s1_sad_0.wav").unlink()
    return ["data", "import", "generic", tmp / "c"], ["s1_sad_0.wav: audio file missing", "--no-strict"]


def _missing_corpus_path(tmp):
    return ["data", "import", "generic", tmp / "nowhere"], ["corpus path not found", "nowhere"]


def _emodb_official_split(tmp):
    (tmp / "e").mkdir()
    return ["data", "import", "emodb", tmp / "e", "--split", "official"], ["emodb has no official split"]


def _option_of_another_loader(tmp):
    (tmp / "e").mkdir()
    return ["data", "import", "emodb", tmp / "e", "--columns", "a=audio_path"], ["takes no option 'columns'"]


def _empty_csv(tmp):
    (tmp / "c").mkdir()
    (tmp / "c" / "manifest.csv").write_bytes(b"")
    return ["data", "import", "generic", tmp / "c"], ["the file is empty (0 bytes)", "manifest.csv"]


def _latin1_csv(tmp):
    write_corpus(tmp / "c", plain_rows())
    path = tmp / "c" / "manifest.csv"
    path.write_bytes(path.read_bytes().replace(b"some words", "caf\u00e9".encode("latin-1")))
    return ["data", "import", "generic", tmp / "c"], ["not UTF-8 text", "save the file as UTF-8"]


def _ragged_csv(tmp):
    write_corpus(tmp / "c", plain_rows())
    with (tmp / "c" / "manifest.csv").open("a") as f:
        f.write("wav/x.wav,s9,male,en,angry,too,many,fields\n")
    return ["data", "import", "generic", tmp / "c"], ["not a valid comma-separated table", "manifest.csv"]


def _bad_jsonl(tmp):
    (tmp / "c").mkdir()
    (tmp / "c" / "m.jsonl").write_text('{"path": "a.wav"\n')
    return ["data", "import", "generic", tmp / "c" / "m.jsonl"], ["not valid JSON lines"]


def _not_a_language_tag(tmp):
    write_corpus(tmp / "c", plain_rows(lang="English!"))
    return ["data", "import", "generic", tmp / "c"], ["are not language tags", "english!", "BCP-47"]


def _validate_bad_gender_names_line(tmp):
    m = tmp / "m.csv"
    m.write_text(
        "id,audio_path,transcript,emotion,gender,language,speaker,corpus,split\n"
        "u1,a.wav,,anger,male,en,s1,c,train\nu2,b.wav,,anger,robot,en,s2,c,test\n"
    )
    return ["data", "validate", m, "--no-check-files"], [
        "unknown gender value(s) ['robot'] in line 3",
        "m.csv",
    ]


def _validate_missing_columns(tmp):
    m = tmp / "m.csv"
    m.write_text(f"{HEADER}\na.wav,s1,male,en,anger,hi\n")
    return ["data", "validate", m, "--no-check-files"], ["missing column(s)", "fairser data import generic"]


def _validate_utf16_is_read_then_fails_on_files(tmp):
    m = tmp / "m.csv"
    text = "id,audio_path,transcript,emotion,gender,language,speaker,corpus,split\nu1,a.wav,,anger,M,UR,s1,c,train\n"
    m.write_bytes(text.encode("utf-16"))  # what spreadsheet programs write as "Unicode text"
    return ["data", "validate", m], ["1 audio file(s) not found", "a.wav"]


REFUSED = [
    _no_table,
    _two_tables,
    _no_emotion_column,
    _column_typo,
    _columns_not_pairs,
    _unknown_labels_over_max_drop,
    _label_map_outside_target,
    _speaker_with_two_genders,
    _missing_audio,
    _missing_corpus_path,
    _emodb_official_split,
    _option_of_another_loader,
    _empty_csv,
    _latin1_csv,
    _ragged_csv,
    _bad_jsonl,
    _not_a_language_tag,
    _validate_bad_gender_names_line,
    _validate_missing_columns,
    _validate_utf16_is_read_then_fails_on_files,
]


@pytest.mark.parametrize("case", REFUSED, ids=[c.__name__.strip("_") for c in REFUSED])
def test_bad_input_is_one_message_with_a_fix_and_exit_2(tmp_path, case):
    args, fragments = case(tmp_path)
    refused(cli(*args), *fragments)


# ------------------------------------------------------------------------------------- accepted, and said
def test_drops_under_allow_drop_are_a_table_of_label_count_why(tmp_path):
    write_corpus(tmp_path / "c", plain_rows(labels=("angry", "grumpy", "meh", "sad")))
    res = cli("data", "import", "generic", tmp_path / "c", "-o", tmp_path / "m.csv", "--allow-drop")
    assert res.exit_code == 0, res.output
    assert "dropped: 12 utterances:" in res.output
    table = [line.split() for line in res.output.splitlines() if "is not a known emotion name" in line]
    assert sorted(t[:2] for t in table) == [["grumpy", "6"], ["meh", "6"]]
    assert len(pd.read_csv(tmp_path / "m.csv")) == 12


def test_partial_label_map_extends_the_synonyms(tmp_path):
    write_corpus(tmp_path / "c", plain_rows(labels=("angry", "colère", "calm", "happy")))
    out = tmp_path / "m.csv"
    res = cli(
        "data",
        "import",
        "generic",
        tmp_path / "c",
        "-o",
        out,
        "--label-map",
        "colère=anger,calm=neutral,wut=anger",
    )
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    got = df.groupby("emotion_original")["emotion"].first().to_dict()
    assert got == {"angry": "anger", "colère": "anger", "calm": "neutral", "happy": "joy"}
    assert "dropped: 0" in res.output
    assert "label map entries ['wut'] match no label of the corpus" in res.output  # a typo is said


def test_gender_and_language_spellings_are_normalised_and_others_counted(tmp_path):
    rows = plain_rows(labels=("angry", "sad"), speakers=4)
    spellings = {"s0": "M", "s1": "Female", "s2": "w", "s3": "robot"}
    rows = [(p, s, spellings[s], "UR", e, t) for p, s, _, _, e, t in rows]
    write_corpus(tmp_path / "c", rows)
    out = tmp_path / "m.csv"
    res = cli("data", "import", "generic", tmp_path / "c", "-o", out)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert df.groupby("speaker")["gender"].first().to_dict() == {
        "s0": "male",
        "s1": "female",
        "s2": "female",
        "s3": "unknown",
    }
    assert set(df["language"]) == {"ur"}
    assert "2 utterance(s) with gender values read as unknown: 'robot' 2" in res.output


def test_missing_audio_with_no_strict_is_a_counted_skip(tmp_path):
    write_corpus(tmp_path / "c", plain_rows())
    (tmp_path / "c" / "wav" / "s1_sad_0.wav").unlink()
    res = cli("data", "import", "generic", tmp_path / "c", "-o", tmp_path / "m.csv", "--no-strict")
    assert res.exit_code == 0, res.output
    assert "dropped: 1 utterances:" in res.output and "audio file missing" in res.output
    assert len(pd.read_csv(tmp_path / "m.csv")) == 29


def test_corpus_name_and_ids_come_from_the_folder(tmp_path):
    write_corpus(tmp_path / "mycorpus", plain_rows())
    res = import_corpus("generic", tmp_path / "mycorpus" / "manifest.csv")
    df = res.manifest
    assert set(df["corpus"]) == {"mycorpus"} and res.corpus == "mycorpus"
    assert "mycorpus/wav/s0_angry_0" in set(df["id"])
    assert "read as 'audio_path'" in " ".join(res.notes)


def test_yaml_option_typo_names_the_option(tmp_path):
    write_corpus(tmp_path / "c", plain_rows())
    with pytest.raises(UserError, match="takes no option 'colums'") as err:
        import_corpus("generic", tmp_path / "c", colums={"audio_path": "path"})
    assert err.value.fix and "columns" in err.value.fix


def test_synonym_table_covers_the_common_spellings():
    for spelling, meld in [
        ("Angry", "anger"),
        ("anger", "anger"),
        ("happy", "joy"),
        ("happiness", "joy"),
        ("joy", "joy"),
        ("sad", "sadness"),
        ("fearful", "fear"),
        ("surprised", "surprise"),
        ("disgusted", "disgust"),
        ("calm", None),
    ]:
        assert synonym_map([spelling], target="meld7") == {spelling: meld}
    assert synonym_map(["happy", "fearful"], target="core4") == {"happy": "happiness", "fearful": None}
    assert synonym_map(["grumpy"], target="meld7") == {}
    assert LABEL_SYNONYMS["calm"] == "calm"


def test_audio_text_without_transcripts_is_refused_before_any_feature(tmp_path):
    rows = [(p, s, g, lang, e, "") for p, s, g, lang, e, _ in plain_rows()]
    write_corpus(tmp_path / "c", rows)
    out = tmp_path / "m.csv"
    assert cli("data", "import", "generic", tmp_path / "c", "-o", out).exit_code == 0
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"corpus: {{kind: manifest, path: {out}, labels: [anger, joy, sadness, fear, surprise]}}\n"
        f"languages: [en]\nmodalities: [audio, audio+text]\nfeatures: {{cache_dir: {tmp_path / 'cache'}}}\n"
        f"output_dir: {tmp_path / 'out'}\n"
    )
    res = cli("features", "-c", cfg)
    refused(res, "audio+text needs a transcript for every utterance", "30 have none (c: 30 of 30)")
    assert not (tmp_path / "cache").exists()  # refused before any feature was extracted
    with pytest.raises(ManifestError, match="audio\\+text"):
        check_transcripts(read_manifest(out), source=str(out))


def test_nan_and_silent_audio_and_nan_cache_entries_are_skipped_and_counted(tmp_path):
    from fairser.features import FeatureCache, build_audio_encoder, extract_audio_features

    good, nan, silent = tmp_path / "good.wav", tmp_path / "nan.wav", tmp_path / "silent.wav"
    sf.write(good, tone(), SR, subtype="FLOAT")
    bad = tone()
    bad[100] = np.nan
    sf.write(nan, bad, SR, subtype="FLOAT")
    sf.write(silent, np.zeros(SR // 2, dtype=np.float32), SR, subtype="PCM_16")
    cache = FeatureCache(tmp_path / "cache")
    encoder = build_audio_encoder("egemaps")
    feats = extract_audio_features(
        paths=[good, nan, silent], encoder=encoder, cache=cache, n_jobs=1, progress=False
    )
    assert feats.ok.tolist() == [True, False, False]
    reasons = dict((p.name, r) for p, r in feats.failures)
    assert "NaN" in reasons["nan.wav"] and "digital silence" in reasons["silent.wav"]
    # a cache entry full of NaN is never reused: counted, re-extracted and replaced
    entry = cache.entry_path(fingerprint=encoder.fingerprint(), content_hash=cache.file_hash(good))
    np.save(entry, np.full(encoder.dim, np.nan, dtype=np.float32))
    again = extract_audio_features(
        paths=[good], encoder=encoder, cache=FeatureCache(tmp_path / "cache"), n_jobs=1, progress=False
    )
    assert again.n_cache_nonfinite == 1 and again.n_extracted == 1 and np.isfinite(again.features).all()
    assert np.isfinite(np.load(entry)).all()


# ------------------------------------------------------------------------------------------------ scenarios
def _real_audio(corpus: str) -> pd.DataFrame:
    """The shared corpus's manifest (absolute ``path``, speaker, gender, emotion, text), empty when missing."""
    folder = SHARED / corpus
    if not (folder / "manifest.csv").is_file():
        return pd.DataFrame(columns=["path", "speaker", "gender", "emotion", "text"])
    m = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    m["path"] = [str(folder / p) for p in m["path"]]
    return m[["path", "speaker", "gender", "emotion", "text"]]


def test_scenario_plain_manifest_with_the_corpus_own_labels(tmp_path):
    """A plain path,speaker,gender,language,emotion,text manifest with angry/happy/sad/fearful/surprised."""
    root = tmp_path / "natural"
    rows = plain_rows(speakers=10, per=2)
    real = _real_audio("ravdess")
    if not real.empty:  # real RAVDESS speech with its own label names (10 speakers, 2 files per label)
        real = real[real["emotion"].isin(("angry", "happy", "sad", "fearful", "surprised"))]
        real = (
            real[real["speaker"].isin(sorted(set(real["speaker"]))[:10])]
            .groupby(["speaker", "emotion"])
            .head(2)
        )
        (root / "wav").mkdir(parents=True)
        rows = []
        for path, spk, gender, label, text in real.itertuples(index=False):
            rel = f"wav/{Path(path).name}"
            (root / rel).write_bytes(Path(path).read_bytes())
            rows.append((rel, spk, gender, "en", label, text))
    write_corpus(root, rows)
    out = tmp_path / "manifest.csv"
    res = cli("data", "import", "generic", root, "-o", out)
    assert res.exit_code == 0, res.output
    assert "read " in res.output and "the folder's manifest.csv" in res.output
    assert "dropped: 0" in res.output
    df = pd.read_csv(out)
    assert set(df["emotion"]) == {"anger", "joy", "sadness", "fear", "surprise"}
    assert set(df["split"]) == {"train", "valid", "test"} and set(df["corpus"]) == {"natural"}
    assert cli("data", "validate", out).exit_code == 0


@pytest.mark.slow
def test_scenario_single_speaker_language_is_split_by_utterance_and_said(tmp_path):
    """Six speakers of one language and one speaker of another: imported, then a tiny benchmark through the
    CLI. The single-speaker language is tested, and the console and benchmark.json say it is split by
    utterance (speaker-dependent). Real audio: 6 RAVDESS speakers (en, one file per label) and one EmoDB
    speaker (de, three per label), with their own labels; else tiny synthetic WAVs (en + a one-speaker 'ja')."""
    root = tmp_path / "twolang"
    emotions = ("angry", "happy", "sad", "neutral")
    ravdess, emodb = _real_audio("ravdess"), _real_audio("emodb")
    if not ravdess.empty and not emodb.empty:
        en = ravdess[ravdess["emotion"].isin(emotions)]
        en = en[en["speaker"].isin(sorted(set(en["speaker"]))[:6])].groupby(["speaker", "emotion"]).head(1)
        one = emodb[
            (emodb["speaker"] == "emodb_03")
            & emodb["emotion"].isin(("anger", "happiness", "sadness", "neutral"))
        ]
        (root / "wav").mkdir(parents=True)
        rows = []
        one = one.groupby("emotion").head(3)
        for part, lang in ((en, "en"), (one, "de")):
            for path, spk, gender, label, text in part.itertuples(index=False):
                rel = f"wav/{Path(path).name}"
                (root / rel).write_bytes(Path(path).read_bytes())
                rows.append((rel, spk, gender, lang, label, text))
        single = "de"
    else:
        rows = plain_rows(labels=emotions, speakers=6, per=2)
        rows += [
            (f"wav/ja_{e}_{u}.wav", "ja1", "female", "ja", e, "onaji") for e in emotions for u in range(5)
        ]
        single = "ja"
    write_corpus(root, rows)
    out = tmp_path / "manifest.csv"
    res = cli("data", "import", "generic", root, "-o", out)
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output
    assert f"language '{single}': its 1 speaker(s) cannot fill train and test" in res.output
    df = pd.read_csv(out)
    one = df[df["language"] == single]
    assert (one["split_unit"] == "utterance").all()
    assert (df.loc[df["language"] != single, "split_unit"] == "speaker").all()
    assert set(one["split"]) == {"train", "valid", "test"}
    assert set(one.loc[one["split"] == "train", "emotion"]) == set(one["emotion"])  # stratified by emotion
    assert any("split by utterance" in n for n in language_split_notes(df))

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"corpus: {{kind: manifest, path: {out}, labels: [anger, joy, sadness, neutral]}}\n"
        f"languages: [EN, {single.upper()}]\nmodalities: [audio]\nobjectives: [{{name: erm}}]\nseeds: [0]\n"
        f"features: {{cache_dir: {tmp_path / 'cache'}, n_jobs: 1}}\ntrain: {{epochs: 2, batch_size: 16}}\n"
        f"evaluation: {{n_boot: 10, n_perm: 10, min_samples: 2}}\nn_jobs: 1\noutput_dir: {tmp_path / 'out'}\n"
    )
    res = cli("benchmark", "-c", cfg, "-q")
    assert res.exit_code == 0, res.output
    assert (
        f"language '{single}': its 1 speaker(s) cannot fill train and test speaker-independently"
        in res.output
    )
    notes = json.loads((tmp_path / "out" / "benchmark.json").read_text())["notes"]
    assert any(
        f"language '{single}'" in n and "split by utterance" in n and "speaker-dependent" in n for n in notes
    )
    assert any(f"language '{single}' has only ['" in n for n in notes)
    assert f"| {single} | audio |" in (tmp_path / "out" / "table.md").read_text()


def test_default_emodb_import_works(tmp_path):
    if not (SHARED / "emodb").is_dir():
        pytest.skip(f"real corpus folder {SHARED / 'emodb'} is missing (../shared/data beside the checkout)")
    res = cli("data", "import", "emodb", SHARED / "emodb", "-o", tmp_path / "m.csv")
    assert res.exit_code == 0, res.output
    assert "boredom" in res.output and "81" in res.output
    assert len(pd.read_csv(tmp_path / "m.csv")) == 535 - 81


# --------------------------------------------------------------------------------------- other formats
def test_audformat_database_is_read_through_the_same_path(tmp_path):
    audformat = pytest.importorskip("audformat", reason="the audformat extra is not installed")
    root = tmp_path / "adb"
    files = [f"wav/{i}.wav" for i in range(8)]
    for i, f in enumerate(files):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / f, tone(f0=150 + 10 * i), SR)
    db = audformat.Database("adb", languages=["ja"])
    db.schemes["emotion"] = audformat.Scheme(labels=["angry", "happy", "sad", "neutral"])
    db.schemes["gender"] = audformat.Scheme(labels=["female", "male"])
    db.misc_tables["speaker"] = audformat.MiscTable(pd.Index(["s1", "s2"], name="speaker"))
    db.misc_tables["speaker"]["gender"] = audformat.Column(scheme_id="gender")
    db.misc_tables["speaker"]["gender"].set(["female", "male"])
    db.schemes["speaker"] = audformat.Scheme("str", labels="speaker")
    db["files"] = audformat.Table(audformat.filewise_index(files))
    db["files"]["speaker"] = audformat.Column(scheme_id="speaker")
    db["files"]["speaker"].set(["s1"] * 4 + ["s2"] * 4)
    db["files"]["emotion"] = audformat.Column(scheme_id="emotion")
    db["files"]["emotion"].set(["angry", "happy", "sad", "neutral"] * 2)
    db.save(str(root))
    res = import_corpus("generic", root)
    df = res.manifest
    assert len(df) == 8 and set(df["language"]) == {"ja"} and set(df["corpus"]) == {"adb"}
    assert df.groupby("speaker")["gender"].first().to_dict() == {"s1": "female", "s2": "male"}
    assert set(df["emotion"]) == {"anger", "joy", "sadness", "neutral"}
    assert "read the audformat database" in " ".join(res.notes)


def test_hugging_face_dataset_saved_to_disk_and_parquet(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="the hf extra (datasets) is not installed")
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for i in range(8):
        paths.append(str(src / f"{i}.wav"))
        sf.write(paths[-1], tone(f0=150 + 10 * i), SR)
    data = {
        "audio": paths,
        "label": ["angry", "happy", "sad", "neutral"] * 2,
        "speaker_id": ["a"] * 4 + ["b"] * 4,
        "gender": ["F"] * 4 + ["M"] * 4,
        "locale": ["JA"] * 8,
        "sentence": ["onaji"] * 8,
    }
    ds = datasets.Dataset.from_dict(data).cast_column("audio", datasets.Audio())
    ds.save_to_disk(str(tmp_path / "saved"))
    for folder in (tmp_path / "saved",):
        res = import_corpus("generic", folder)
        df = res.manifest
        assert len(df) == 8 and set(df["language"]) == {"ja"} and set(df["transcript"]) == {"onaji"}
        assert df.groupby("speaker")["gender"].first().to_dict() == {"a": "female", "b": "male"}
        assert all(Path(p).is_file() for p in df["audio_path"])
        assert set(df["emotion"]) == {"anger", "joy", "sadness", "neutral"}
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    res = import_corpus("generic", tmp_path / "pq")
    assert len(res.manifest) == 8 and all(Path(p).is_file() for p in res.manifest["audio_path"])
