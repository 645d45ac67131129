"""Degradations (issue 15): each condition does what it says (bitrate from the encoded bytes, SNR), is
deterministic per seed, a neural codec runs offline through a tiny random model, the cache key tells
conditions apart and a warm re-run extracts nothing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from assets.offline import block_network  # noqa: F401  (fixture)
from fairser.degrade import (
    build_condition,
    degraded_fingerprints,
    extract_degraded_features,
    file_rng,
    parse_condition,
)
from fairser.errors import UserError
from fairser.features import FeatureCache

SR = 16000


def _speechlike(seconds: float = 2.0, *, seed: int = 0) -> np.ndarray:
    """A vibrato harmonic complex with syllable-like amplitude modulation and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(140 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.25 * x / np.abs(x).max() + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def _envelope(x: np.ndarray) -> np.ndarray:
    frames = x[: x.size // 320 * 320].reshape(-1, 320).astype(np.float64)
    return np.sqrt((frames**2).mean(1))


def _apply(condition, x, *, seed=0, content_hash="ab" * 32):
    return condition.apply(x, sample_rate=SR, rng=file_rng(seed=seed, content_hash=content_hash))


# (name, params, expected kbps, relative tolerance): FFmpeg's encoders meet a target bitrate only on average
# (AAC and MP3 at low rates overshoot by a few %); AMR-NB 4.75 stores 12 + 1 header bytes per 20 ms frame.
BITRATES = [
    ("mp3", {"bitrate_kbps": 16}, 16.0, 0.10),
    ("mp3", {"bitrate_kbps": 32}, 32.0, 0.10),
    ("opus", {"bitrate_kbps": 6}, 6.0, 0.15),
    ("opus", {"bitrate_kbps": 12}, 12.0, 0.15),
    ("aac", {"bitrate_kbps": 16}, 16.0, 0.15),
    ("amr_nb", {"bitrate_kbps": 4.75}, 13 * 8 / 20, 0.02),
    ("amr_nb", {"bitrate_kbps": 12.2}, 32 * 8 / 20, 0.02),
    ("gsm", {}, 13.0, 0.02),  # 33 bytes per 160 samples at 8 kHz (WAV GSM 6.10: 65 bytes per 2 frames)
    ("telephone", {"codec": "mulaw"}, 64.0, 0.01),
    ("telephone", {"codec": "alaw"}, 64.0, 0.01),
]


@pytest.mark.parametrize(("name", "params", "kbps", "tol"), BITRATES, ids=lambda v: str(v))
def test_codec_bitrate_measured_from_the_bytes_is_what_was_asked(name, params, kbps, tol):
    x = _speechlike()
    condition = build_condition(name, **params)
    y, measures = _apply(condition, x)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    assert measures["bitrate_kbps"] == pytest.approx(kbps, rel=tol)
    # lossy but the same signal, aligned in time: the 20 ms energy envelopes (3 Hz syllable rhythm) agree
    assert np.corrcoef(_envelope(x), _envelope(y))[0, 1] > 0.9
    y2, _ = _apply(condition, x, seed=7)  # codecs draw no random numbers: the same bytes for any seed
    np.testing.assert_array_equal(y, y2)


def test_vorbis_bitrate_falls_with_quality_and_band_limits_cut_the_band():
    x = _speechlike()
    low = _apply(build_condition("vorbis", quality=0.0), x)[1]["bitrate_kbps"]
    high = _apply(build_condition("vorbis", quality=0.8), x)[1]["bitrate_kbps"]
    assert 0 < low < high
    x = x + 0.03 * np.random.default_rng(0).standard_normal(x.size).astype(np.float32)  # power up to 8 kHz
    f = np.fft.rfftfreq(x.size, 1 / SR)
    before = np.abs(np.fft.rfft(x)) ** 2
    assert before[f > 4200].sum() > 1e-3 * before.sum()  # the input has power above 4 kHz...
    for condition in (build_condition("bandlimit", high_hz=4000), build_condition("resample", rate=8000)):
        y, _ = _apply(condition, x)
        after = np.abs(np.fft.rfft(y)) ** 2
        assert after[f > 4200].sum() < 1e-4 * after.sum()  # ...which is gone
        assert after[f < 3500].sum() > 0.9 * before[f < 3500].sum()  # and the band below stays


def test_band_filter_designs_each_setting_once_and_keeps_the_design_intact():
    from scipy import signal as sps

    from fairser.degrade.channel import band_filter

    x = _speechlike(0.5)
    settings = [(300.0, 3400.0, 4), (300.0, 3400.0, 8), (None, 4000.0, 4), (100.0, None, 4)]
    outputs = []
    for low, high, order in settings * 2:  # the second pass reads the memoised designs
        y = band_filter(x, sample_rate=SR, low_hz=low, high_hz=high, order=order)
        btype = "bandpass" if low and high else "highpass" if low else "lowpass"
        sos = sps.butter(
            order, [low, high] if low and high else low or high, btype=btype, fs=SR, output="sos"
        )
        np.testing.assert_array_equal(y, sps.sosfiltfilt(sos, x.astype(np.float64)).astype(np.float32))
        outputs.append(y)
    assert all(not np.array_equal(a, b) for i, a in enumerate(outputs[:4]) for b in outputs[i + 1 : 4])


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
@pytest.mark.parametrize("snr", [20.0, 5.0, 0.0])
def test_noise_snr_is_what_was_asked_and_seeded(tmp_path, kind, snr):
    x = _speechlike()
    condition = build_condition("noise", kind=kind, snr_db=snr, n_talkers=2)
    if kind == "babble":
        pool = []
        for i in range(3):
            pool.append(tmp_path / f"talker{i}.wav")
            sf.write(pool[-1], _speechlike(1.3, seed=10 + i), SR)
        condition = condition.with_pool(pool, content_hashes=FeatureCache(tmp_path / "c").file_hashes(pool))
    y, measures = _apply(condition, x)
    noise = y.astype(np.float64) - x
    assert measures["snr_db"] == pytest.approx(snr, abs=1e-3)
    assert 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2)) == pytest.approx(
        snr, abs=1e-2
    )
    y_same, _ = _apply(condition, x)
    y_other, _ = _apply(condition, x, seed=1)
    y_file, _ = _apply(condition, x, content_hash="cd" * 32)
    np.testing.assert_array_equal(y, y_same)  # same seed and file: the same samples
    assert not np.array_equal(y, y_other) and not np.array_equal(y, y_file)
    if kind == "pink":  # power falls with frequency: about 10 dB per decade
        p = np.abs(np.fft.rfft(noise)) ** 2
        f = np.fft.rfftfreq(noise.size, 1 / SR)
        ratio = p[(f > 100) & (f < 200)].mean() / p[(f > 1000) & (f < 2000)].mean()
        assert 5 < ratio < 20


@pytest.mark.usefixtures("block_network")
def test_neural_codec_round_trip_through_a_tiny_random_model_offline(tmp_path):
    import torch
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(0)
    config = EncodecConfig(
        target_bandwidths=[2.5, 5.0], sampling_rate=24000, audio_channels=1, num_filters=4, hidden_size=16,
        upsampling_ratios=[8, 12], codebook_size=32, codebook_dim=16, num_lstm_layers=1, num_residual_layers=1,
    )  # fmt: skip
    EncodecModel(config).save_pretrained(tmp_path / "codec")
    x = _speechlike(0.25)
    condition = build_condition("neural_codec", path=str(tmp_path / "codec"), bandwidth_kbps=2.5)
    y, measures = _apply(condition, x)
    assert y.shape == x.shape and np.isfinite(y).all()
    # 24 kHz / (8 * 12) = 250 frames/s; 2.5 kbps = 2 codebooks x 250 frames/s x log2(32) = 5 bits
    assert measures["bitrate_kbps"] == pytest.approx(2.5, rel=0.01)
    np.testing.assert_array_equal(y, _apply(condition, x)[0])
    assert condition.config()["model_type"] == "encodec" and len(condition.config()["weights_sha256"]) == 64
    with pytest.raises(UserError, match="no config.json"):
        build_condition("neural_codec", path=str(tmp_path))


class _TinyEncoder:
    """A cheap audio encoder (log energy, zero-crossing rate, spectral centroid) for cache tests."""

    name, sample_rate, dim = "tiny", SR, 3

    def config(self):
        return {"encoder": "tiny"}

    def fingerprint(self):
        from fairser.features import config_fingerprint

        return config_fingerprint(self.config())

    def encode_signal(self, signal, *, sample_rate):
        spectrum = np.abs(np.fft.rfft(signal))
        f = np.fft.rfftfreq(signal.size, 1 / sample_rate)
        return np.array([np.log(np.mean(signal**2) + 1e-12), np.mean(np.abs(np.diff(np.sign(signal)))),
                         (f * spectrum).sum() / spectrum.sum()], dtype=np.float32)  # fmt: skip


def test_cache_key_distinguishes_conditions_and_seeds_and_a_warm_rerun_extracts_nothing(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"u{i}.wav")
        sf.write(paths[-1], _speechlike(0.8, seed=i), SR)
    cache, encoder = FeatureCache(tmp_path / "cache"), _TinyEncoder()
    mp3_16, mp3_32 = build_condition("mp3", bitrate_kbps=16), build_condition("mp3", bitrate_kbps=32)
    white = build_condition("noise", kind="white", snr_db=5)
    keys = {
        degraded_fingerprints(encoder=encoder, condition=c, seed=s)[0]
        for c, s in ((mp3_16, 0), (mp3_32, 0), (white, 0), (white, 1))
    }
    assert len(keys) == 4 and encoder.fingerprint() not in keys

    first = extract_degraded_features(
        paths=paths, condition=white, encoder=encoder, cache=cache, seed=0, progress=False
    )
    assert (first.n_extracted, first.n_cached) == (3, 0) and first.ok.all()
    np.testing.assert_allclose(first.measure("snr_db"), 5.0, atol=1e-3)
    warm = extract_degraded_features(
        paths=paths, condition=white, encoder=encoder, cache=cache, seed=0, progress=False
    )
    assert (warm.n_extracted, warm.n_cached) == (0, 3)
    np.testing.assert_array_equal(warm.features, first.features)
    np.testing.assert_array_equal(warm.measures, first.measures)
    other = extract_degraded_features(
        paths=paths, condition=white, encoder=encoder, cache=cache, seed=1, progress=False
    )
    assert other.n_extracted == 3 and not np.array_equal(other.features, first.features)
    a = extract_degraded_features(paths=paths, condition=mp3_16, encoder=encoder, cache=cache, progress=False)
    b = extract_degraded_features(paths=paths, condition=mp3_32, encoder=encoder, cache=cache, progress=False)
    assert a.n_extracted == b.n_extracted == 3 and not np.array_equal(a.features, b.features)
    np.testing.assert_allclose(a.measure("bitrate_kbps"), 16.0, rtol=0.15)
    # two worker processes give the same entries as one (features and measures)
    pooled = extract_degraded_features(
        paths=paths, condition=white, encoder=encoder, cache=FeatureCache(tmp_path / "c2"), seed=0, n_jobs=2,
        progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(pooled.features, first.features)
    # a missing file fails alone, with its reason
    broken = extract_degraded_features(
        paths=[*paths, tmp_path / "missing.wav"],
        condition=white,
        encoder=encoder,
        cache=cache,
        progress=False,
    )
    assert broken.ok.tolist() == [True, True, True, False] and "cannot read" in broken.failures[0][1]


class _InterruptedEncoder(_TinyEncoder):
    """The tiny encoder (same fingerprint), interrupted like Ctrl-C at its ``stop_at``-th file."""

    def __init__(self, stop_at):
        self.stop_at, self.calls = stop_at, 0

    def encode_signal(self, signal, *, sample_rate):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().encode_signal(signal, sample_rate=sample_rate)


def test_an_interrupted_extraction_keeps_finished_files_and_never_leaves_a_wrong_entry(tmp_path, monkeypatch):
    import fairser.features.cache as cache_module

    paths = []
    for i in range(5):
        paths.append(tmp_path / f"u{i}.wav")
        sf.write(paths[-1], _speechlike(0.6, seed=10 + i), SR)
    white = build_condition("noise", kind="white", snr_db=5)
    ref = extract_degraded_features(paths=paths, condition=white, encoder=_TinyEncoder(),
                                    cache=FeatureCache(tmp_path / "ref"), seed=3, progress=False)  # fmt: skip
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):  # files 0-2 finish, file 3 is interrupted while encoding
        extract_degraded_features(paths=paths, condition=white, encoder=_InterruptedEncoder(4), cache=cache,
                                  seed=3, progress=False)  # fmt: skip
    fp, mfp = degraded_fingerprints(encoder=_TinyEncoder(), condition=white, seed=3)
    hashes = cache.file_hashes(paths)
    assert [cache.contains(fingerprint=fp, content_hash=h) for h in hashes] == [True] * 3 + [False] * 2
    # a crash between a file's two writes (features stored, measures not) and a damaged entry
    cache.entry_path(fingerprint=mfp, content_hash=hashes[1]).unlink()
    damaged = cache.entry_path(fingerprint=fp, content_hash=hashes[0])
    damaged.write_bytes(damaged.read_bytes()[:40])
    # an interruption inside a write leaves no entry and no temporary file
    real_replace = os.replace
    monkeypatch.setattr(cache_module.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        extract_degraded_features(paths=paths[3:4], condition=white, encoder=_TinyEncoder(), cache=cache,
                                  seed=3, progress=False)  # fmt: skip
    monkeypatch.setattr(cache_module.os, "replace", real_replace)
    assert not cache.contains(fingerprint=fp, content_hash=hashes[3])
    assert not list(cache.root.rglob("*.tmp"))

    resumed = extract_degraded_features(paths=paths, condition=white, encoder=_TinyEncoder(), cache=cache,
                                        seed=3, progress=False)  # fmt: skip
    assert (resumed.n_cached, resumed.n_extracted) == (1, 4) and resumed.ok.all()  # only file 2 was whole
    np.testing.assert_array_equal(resumed.features, ref.features)
    np.testing.assert_array_equal(resumed.measures, ref.measures)
    warm = extract_degraded_features(paths=paths, condition=white, encoder=_TinyEncoder(), cache=cache,
                                     seed=3, progress=False)  # fmt: skip
    assert (warm.n_cached, warm.n_extracted) == (5, 0)
    np.testing.assert_array_equal(warm.features, ref.features)


def test_conditions_are_validated_by_name_and_parameter():
    assert parse_condition("noise:kind=babble,snr_db=5") == ("noise", {"kind": "babble", "snr_db": 5})
    assert parse_condition("gsm") == ("gsm", {})
    with pytest.raises(UserError, match="unknown degradation condition 'mp4'"):
        build_condition("mp4")
    with pytest.raises(UserError, match="bitrate"):
        build_condition("amr_nb", bitrate_kbps=5)
    with pytest.raises(UserError, match="unexpected keyword"):
        build_condition("mp3", kbps=16)
    with pytest.raises(UserError, match="snr_db"):
        build_condition("noise", snr_db=200)
    with pytest.raises(UserError, match="key=value"):
        parse_condition("mp3:16")
