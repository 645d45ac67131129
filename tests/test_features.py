"""Encoders, the content-addressed cache and cached extraction (audio and text)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import opensmile
import pandas as pd
import pytest
import soundfile as sf

from fairser.features import (
    AudioError,
    AudioFeatures,
    FeatureCache,
    build_audio_encoder,
    build_text_encoder,
    extract_audio_features,
    extract_text_features,
    load_audio,
    sha256_file,
)
from fairser.features.egemaps import EgemapsEncoder
from fairser.features.text import E5TextEncoder, TfidfTextEncoder

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SR = 16000


def real_files(n: int) -> list[Path]:
    """The first ``n`` shared EmoDB (else RAVDESS) FLACs listed in the corpus manifest, or skip."""
    for corpus in ("emodb", "ravdess"):
        manifest = SHARED_DATA / corpus / "manifest.csv"
        if manifest.is_file():
            rel = pd.read_csv(manifest, usecols=["path"])["path"].head(n)
            return [SHARED_DATA / corpus / p for p in rel]
    pytest.skip(f"shared corpora not found under {SHARED_DATA} (EmoDB/RAVDESS manifest.csv missing)")


def voiced(seed: int, *, seconds: float = 0.8) -> np.ndarray:
    """A vowel-like harmonic signal with vibrato and noise; eGeMAPS finds pitch and formant-like energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = rng.uniform(100, 250) * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * 0.2
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write(path: Path, x: np.ndarray) -> Path:
    sf.write(path, x, SR, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def egemaps() -> EgemapsEncoder:
    return build_audio_encoder("egemaps")


@pytest.fixture
def wavs(tmp_path) -> list[Path]:
    return [write(tmp_path / f"utt{i}.wav", voiced(i)) for i in range(3)]


# -- encoders ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_egemaps_on_real_file_matches_opensmile(egemaps):
    path = real_files(1)[0]
    signal = load_audio(path)
    ours = egemaps.encode_signal(signal, sample_rate=SR)
    assert ours.shape == (88,) and egemaps.dim == 88 and ours.dtype == np.float32
    assert np.isfinite(ours).all()
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )
    np.testing.assert_array_equal(ours, smile.process_signal(signal, SR).to_numpy()[0])
    # The shared audio is 16 kHz mono, so opensmile reading the file itself agrees too.
    np.testing.assert_array_equal(ours, smile.process_file(str(path)).to_numpy()[0])
    assert egemaps.encode_file(path).tolist() == ours.tolist()


def test_egemaps_rejects_wrong_rate_and_bad_options(egemaps):
    with pytest.raises(ValueError, match="16000 Hz"):
        egemaps.encode_signal(voiced(0), sample_rate=8000)
    with pytest.raises(ValueError, match="eGeMAPSv02"):
        EgemapsEncoder(feature_set="eGeMAPS_v99")
    with pytest.raises(ValueError, match="Functionals"):
        EgemapsEncoder(feature_level="LowLevelDescriptors")


def test_fingerprints_are_stable_and_track_options(egemaps):
    assert egemaps.fingerprint() == EgemapsEncoder().fingerprint()
    others = {
        EgemapsEncoder(sample_rate=8000).fingerprint(),
        EgemapsEncoder(feature_set="GeMAPSv01b").fingerprint(),
    }
    assert egemaps.fingerprint() not in others and len(others) == 2
    assert E5TextEncoder().fingerprint() != E5TextEncoder(prefix="query").fingerprint()
    config = egemaps.config()
    assert config["opensmile_version"] == opensmile.__version__ and config["sample_rate"] == SR


def test_unknown_encoder_names_list_known_ones():
    with pytest.raises(ValueError, match="known: egemaps"):
        build_audio_encoder("wav2vec9")
    with pytest.raises(ValueError, match="known: e5, tfidf"):
        build_text_encoder("bert")
    assert isinstance(build_text_encoder("tfidf", max_features=10), TfidfTextEncoder)


def test_e5_parallel_sentences_are_closer_than_unrelated():
    enc = build_text_encoder("e5")
    parallel = [
        "I am so happy to see you again.",
        "Ich freue mich so, dich wiederzusehen.",
        "また会えてとても嬉しいです。",
    ]
    unrelated = [
        "The train to the airport leaves at seven.",
        "Der Kühlschrank muss repariert werden.",
        "株価は昨日大きく下がった。",
    ]
    emb = enc.encode(parallel + unrelated)
    assert emb.shape == (6, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    sim = emb @ emb.T
    for i in range(3):
        for j in range(3):
            if i != j:  # a sentence and its translation beat it and an unrelated sentence
                assert sim[i, j] > sim[i, 3 + j] + 0.05, (i, j, sim[i, j], sim[i, 3 + j])


def test_tfidf_must_be_fit_and_fingerprint_tracks_training_texts():
    enc = TfidfTextEncoder(max_features=200)
    with pytest.raises(RuntimeError, match="fit"):
        enc.encode(["hello"])
    with pytest.raises(RuntimeError, match="fit"):
        enc.fingerprint()
    train = ["I am angry", "so happy today", "neutral words here", "sad and tired"]
    enc.fit(train)
    X = enc.encode(["happy today", "", "zzzz"])
    assert X.shape == (3, enc.dim) and enc.dim <= 200 and X.dtype == np.float32
    assert np.linalg.norm(X[0]) == pytest.approx(1.0, abs=1e-5)
    assert not X[1].any() and not X[2].any()  # no known n-gram: zero row, the caller masks it
    other = TfidfTextEncoder(max_features=200).fit(train + ["completely different training text"])
    assert other.fingerprint() != enc.fingerprint()
    assert TfidfTextEncoder(max_features=200).fit(train).fingerprint() == enc.fingerprint()
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        enc.encode(["ok", None])


# -- cache ------------------------------------------------------------------------------------------------
def test_cache_put_get_is_atomic_and_tolerates_damage(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "c")
    fp, h = "a" * 64, "b" * 64
    assert cache.get(fingerprint=fp, content_hash=h) is None
    path = cache.put(np.arange(4, dtype=np.float32), fingerprint=fp, content_hash=h)
    np.testing.assert_array_equal(cache.get(fingerprint=fp, content_hash=h), np.arange(4))
    assert cache.get(fingerprint=fp, content_hash=h, dim=5) is None  # wrong length is a miss
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind

    # An interrupted write leaves neither a partial entry nor a temp file.
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    h2 = "c" * 64
    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.put(np.ones(4), fingerprint=fp, content_hash=h2)
    monkeypatch.undo()
    assert cache.get(fingerprint=fp, content_hash=h2) is None
    assert not any(p.name.endswith(".tmp") for p in cache.root.rglob("*"))

    path.write_bytes(b"not an npy file")  # damaged entry: a miss, never garbage
    assert cache.get(fingerprint=fp, content_hash=h) is None
    with pytest.raises(ValueError, match="sha256"):
        cache.get(fingerprint="../../etc", content_hash=h)


def test_file_hash_memo_detects_changed_content(tmp_path):
    cache = FeatureCache(tmp_path / "c", hash_memo_min_age_s=0.0)
    f = tmp_path / "a.bin"
    f.write_bytes(b"first")
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    assert cache.file_hash(f) == sha256_file(f)
    assert cache.file_hash(f) == sha256_file(f) and cache.n_files_hashed == 1  # memo hit
    f.write_bytes(b"other")  # same size, new content
    os.utime(f, ns=(2_000_000_000, 2_000_000_000))
    assert cache.file_hash(f) == sha256_file(f) and cache.n_files_hashed == 2
    with pytest.raises(FileNotFoundError):
        cache.file_hash(tmp_path / "missing.bin")


# -- audio extraction -------------------------------------------------------------------------------------
def test_second_run_extracts_nothing(tmp_path, wavs, egemaps):
    cache = FeatureCache(tmp_path / "cache")
    first = extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=2, progress=False)
    assert isinstance(first, AudioFeatures)
    assert (first.n_extracted, first.n_cached, first.failures) == (3, 0, [])
    assert first.features.shape == (3, 88) and first.ok.all() and np.isfinite(first.features).all()
    for path, row in zip(wavs, first.features, strict=True):  # row-aligned with paths
        np.testing.assert_array_equal(row, egemaps.encode_file(path))
    second = extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=2, progress=False)
    assert (second.n_extracted, second.n_cached) == (0, 3)
    np.testing.assert_array_equal(second.features, first.features)
    assert (cache.root / egemaps.fingerprint() / "encoder.json").is_file()


def test_changed_file_content_is_reextracted(tmp_path, wavs, egemaps):
    cache = FeatureCache(tmp_path / "cache")
    first = extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=1, progress=False)
    write(wavs[1], voiced(99))  # same length, different content, rewritten at once
    second = extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=1, progress=False)
    assert (second.n_extracted, second.n_cached) == (1, 2)
    assert not np.array_equal(second.features[1], first.features[1])
    np.testing.assert_array_equal(second.features[[0, 2]], first.features[[0, 2]])


def test_changed_file_is_reextracted_through_the_hash_memo(tmp_path, wavs, egemaps):
    cache = FeatureCache(tmp_path / "cache", hash_memo_min_age_s=0.0)
    for i, p in enumerate(wavs):
        os.utime(p, ns=(10**9 * (i + 1),) * 2)
    extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=1, progress=False)
    again = extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=1, progress=False)
    assert again.n_cached == 3 and cache.n_files_hashed == 3  # the second run hashed nothing
    write(wavs[0], voiced(42))
    os.utime(wavs[0], ns=(10**9 * 50,) * 2)
    third = extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=1, progress=False)
    assert (third.n_extracted, third.n_cached) == (1, 2)


def test_changed_encoder_option_is_reextracted(tmp_path, wavs, egemaps):
    cache = FeatureCache(tmp_path / "cache")
    extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=1, progress=False)
    at_8k = build_audio_encoder("egemaps", sample_rate=8000)
    other = extract_audio_features(paths=wavs, encoder=at_8k, cache=cache, n_jobs=1, progress=False)
    assert (other.n_extracted, other.n_cached) == (3, 0)
    again = extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=1, progress=False)
    assert (again.n_extracted, again.n_cached) == (0, 3)  # both settings stay cached side by side


def test_duplicate_content_is_decoded_once(tmp_path, wavs, egemaps):
    copy = tmp_path / "copy_of_utt0.wav"
    copy.write_bytes(wavs[0].read_bytes())
    cache = FeatureCache(tmp_path / "cache")
    res = extract_audio_features(
        paths=[wavs[0], copy], encoder=egemaps, cache=cache, n_jobs=2, progress=False
    )
    assert res.n_extracted == 2 and res.ok.all()
    np.testing.assert_array_equal(res.features[0], res.features[1])
    assert len(list((cache.root / egemaps.fingerprint()).rglob("*.npy"))) == 1


def test_skip_marks_failures_with_nan_rows_and_reasons(tmp_path, wavs, egemaps):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file" * 50)
    too_short = write(tmp_path / "short.wav", voiced(5, seconds=0.005))
    missing = tmp_path / "missing.flac"
    paths = [wavs[0], garbage, missing, wavs[1], too_short]
    cache = FeatureCache(tmp_path / "cache")
    res = extract_audio_features(paths=paths, encoder=egemaps, cache=cache, n_jobs=2, progress=False)
    assert res.ok.tolist() == [True, False, False, True, False]
    assert np.isnan(res.features[~res.ok]).all() and np.isfinite(res.features[res.ok]).all()
    reasons = dict(res.failures)
    assert set(reasons) == {garbage, missing, too_short}
    assert (
        "decode" in reasons[garbage]
        and "not found" in reasons[missing]
        and "non-finite" in reasons[too_short]
    )
    assert res.n_extracted + res.n_cached + len(res.failures) == len(paths)
    # Failures are not cached: the next run tries them again (and still fails), the good files are cached.
    again = extract_audio_features(paths=paths, encoder=egemaps, cache=cache, n_jobs=2, progress=False)
    assert (again.n_extracted, again.n_cached, len(again.failures)) == (0, 2, 3)


def test_raise_keeps_earlier_results_in_cache(tmp_path, wavs, egemaps):
    garbage = tmp_path / "broken.flac"
    garbage.write_bytes(os.urandom(2048))
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(AudioError, match="broken.flac"):
        extract_audio_features(
            paths=[*wavs[:2], garbage, wavs[2]],
            encoder=egemaps,
            cache=cache,
            n_jobs=1,
            on_error="raise",
            progress=False,
        )
    res = extract_audio_features(paths=wavs[:2], encoder=egemaps, cache=cache, n_jobs=1, progress=False)
    assert (res.n_extracted, res.n_cached) == (0, 2)


def test_raise_from_pool_names_the_file(tmp_path, wavs, egemaps):
    garbage = tmp_path / "broken.ogg"
    garbage.write_bytes(b"OggS" + os.urandom(1024))
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(AudioError, match="broken.ogg"):
        extract_audio_features(
            paths=[garbage, *wavs], encoder=egemaps, cache=cache, n_jobs=2, on_error="raise", progress=False
        )
    with pytest.raises(AudioError, match="not found"):
        extract_audio_features(
            paths=[tmp_path / "gone.wav"], encoder=egemaps, cache=cache, on_error="raise", progress=False
        )


def test_bad_arguments_are_rejected(tmp_path, wavs, egemaps):
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="on_error"):
        extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, on_error="ignore", progress=False)
    with pytest.raises(ValueError, match="n_jobs"):
        extract_audio_features(paths=wavs, encoder=egemaps, cache=cache, n_jobs=0, progress=False)
    with pytest.raises(TypeError, match="sequence"):
        extract_audio_features(paths=wavs[0], encoder=egemaps, cache=cache, progress=False)


@pytest.mark.realdata
def test_real_files_extract_finite_88_dim(tmp_path, egemaps):
    paths = real_files(4)
    res = extract_audio_features(
        paths=paths, encoder=egemaps, cache=FeatureCache(tmp_path / "c"), n_jobs=2, progress=False
    )
    assert res.features.shape == (4, 88) and res.ok.all() and np.isfinite(res.features).all()


# -- text extraction --------------------------------------------------------------------------------------
def test_text_features_are_cached(tmp_path, monkeypatch):
    texts = [
        "Kids are talking by the door",
        "Dogs are sitting by the door",
        "",
        "Kids are talking by the door",
    ]
    enc = TfidfTextEncoder(max_features=300).fit(texts[:2])
    cache = FeatureCache(tmp_path / "cache")
    X = extract_text_features(texts=texts, encoder=enc, cache=cache, progress=False)
    np.testing.assert_array_equal(X, enc.encode(texts))
    assert len(list(cache.root.rglob("*.npy"))) == 3  # unique texts

    def no_encoding(batch):
        raise AssertionError(f"re-encoded {batch!r}")

    monkeypatch.setattr(enc, "encode", no_encoding)
    np.testing.assert_array_equal(
        extract_text_features(texts=texts, encoder=enc, cache=cache, progress=False), X
    )
    refit = TfidfTextEncoder(max_features=300).fit(texts[1:3])  # another training set: another fingerprint
    Y = extract_text_features(texts=texts, encoder=refit, cache=cache, progress=False)
    np.testing.assert_array_equal(Y, refit.encode(texts))
    with pytest.raises(TypeError, match=r"texts\[0\]"):
        extract_text_features(texts=[3.0], encoder=refit, cache=cache, progress=False)


def test_e5_text_features_through_cache(tmp_path):
    enc = E5TextEncoder()
    cache = FeatureCache(tmp_path / "cache")
    X = extract_text_features(texts=["hello there", "Guten Tag"], encoder=enc, cache=cache, progress=False)
    assert X.shape == (2, 384)
    np.testing.assert_allclose(X, enc.encode(["hello there", "Guten Tag"]), atol=1e-6)
