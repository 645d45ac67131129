"""load_audio: every container decodes, stereo mixes down, rates resample, and every broken file raises."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import soundfile as sf

from fairser.features.audio import AudioError, load_audio

SR = 16000


def tone(freq: float, *, seconds: float = 0.5, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / sr)[np.argmax(spectrum)])


FORMATS = [
    ("wav", {"format": "WAV", "subtype": "PCM_16"}, True),
    ("flac", {"format": "FLAC", "subtype": "PCM_16"}, True),
    ("ogg", {"format": "OGG", "subtype": "VORBIS"}, False),
    ("mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"}, False),
]


@pytest.mark.parametrize(("ext", "kwargs", "lossless"), FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_loads_as_mono_float32(tmp_path, ext, kwargs, lossless):
    if kwargs["format"] not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {kwargs['format']}")
    x = tone(440.0)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, x, SR, **kwargs)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    if lossless:
        np.testing.assert_allclose(y, x, atol=1 / 32768)
    else:  # lossy codecs may pad a little; the content must still be the same tone
        assert abs(y.size - x.size) <= 0.1 * x.size
        assert abs(dominant_freq(y, SR) - 440.0) < 5.0
        assert 0.8 < np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) < 1.2


def test_stereo_flac_44k_mixes_down_and_resamples(tmp_path):
    sr_in = 44100
    left, right = tone(440.0, sr=sr_in, seconds=1.0), tone(1000.0, sr=sr_in, seconds=1.0, amp=0.25)
    path = tmp_path / "stereo.flac"
    sf.write(path, np.stack([left, right], axis=1), sr_in, subtype="PCM_16")
    y = load_audio(path)
    assert y.ndim == 1 and abs(y.size - 16000) <= 1
    # Both channels survive the mixdown, at half their amplitude.
    spectrum = np.abs(np.fft.rfft(y[:16000])) / 8000
    freqs = np.fft.rfftfreq(16000, 1 / 16000)
    assert spectrum[freqs == 440.0][0] == pytest.approx(0.25, abs=0.01)
    assert spectrum[freqs == 1000.0][0] == pytest.approx(0.125, abs=0.01)


def test_stereo_mixdown_is_channel_mean(tmp_path):
    left, right = tone(300.0), tone(700.0, amp=0.2)
    path = tmp_path / "stereo16k.wav"
    sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path), (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize(("sr_in", "target"), [(44100, 16000), (8000, 16000), (48000, 16000), (16000, 8000)])
def test_resampling_length_and_pitch(tmp_path, sr_in, target):
    x = tone(440.0, sr=sr_in, seconds=0.75)
    path = tmp_path / f"in_{sr_in}.wav"
    sf.write(path, x, sr_in, subtype="FLOAT")
    y = load_audio(path, sample_rate=target)
    assert abs(y.size - round(x.size * target / sr_in)) <= 1
    assert abs(dominant_freq(y, target) - 440.0) < 3.0


def test_native_rate_is_not_resampled(tmp_path):
    x = tone(220.0)
    path = tmp_path / "native.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path), x)


def _write_wav_bytes(tmp_path, name: str) -> bytes:
    path = tmp_path / f"{name}_src.wav"
    sf.write(path, tone(440.0, seconds=1.0), SR, subtype="PCM_16")
    return path.read_bytes()


def _garbage(tmp_path):
    p = tmp_path / "garbage.wav"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return p, "decode"


def _empty(tmp_path):
    p = tmp_path / "empty.flac"
    p.write_bytes(b"")
    return p, "empty"


def _zero_frames(tmp_path):
    p = tmp_path / "zero_frames.wav"
    sf.write(p, np.zeros((0, 1), dtype=np.float32), SR)
    return p, "zero frames"


def _all_nan(tmp_path):
    p = tmp_path / "nan.wav"
    sf.write(p, np.full(SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    return p, "all samples are NaN"


def _some_inf(tmp_path):
    x = tone(440.0)
    x[100] = np.inf
    p = tmp_path / "inf.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    return p, "1 of"


def _truncated_wav(tmp_path):
    data = _write_wav_bytes(tmp_path, "trunc")
    p = tmp_path / "truncated.wav"
    p.write_bytes(data[: len(data) // 2])
    return p, "truncated"


def _truncated_flac(tmp_path):
    src = tmp_path / "src.flac"
    sf.write(src, np.random.default_rng(1).uniform(-0.5, 0.5, SR).astype(np.float32), SR)
    data = src.read_bytes()
    p = tmp_path / "truncated.flac"
    p.write_bytes(data[: len(data) // 2])
    return p, "decode"


def _header_only(tmp_path):
    data = _write_wav_bytes(tmp_path, "hdr")
    p = tmp_path / "header_only.wav"
    p.write_bytes(data[:44])
    return p, "truncated"


def _missing(tmp_path):
    return tmp_path / "does_not_exist.wav", "not found"


def _directory(tmp_path):
    p = tmp_path / "a_folder.wav"
    p.mkdir()
    return p, "not a regular file"


BROKEN = [
    _garbage,
    _empty,
    _zero_frames,
    _all_nan,
    _some_inf,
    _truncated_wav,
    _truncated_flac,
    _header_only,
    _missing,
    _directory,
]


@pytest.mark.parametrize("make", BROKEN, ids=[f.__name__.strip("_") for f in BROKEN])
def test_broken_files_raise_audio_error_naming_path(tmp_path, make):
    path, reason = make(tmp_path)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(path) in str(info.value)
    assert reason in info.value.reason
    assert info.value.path == path


def test_truncated_mp3_raises(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write MP3")
    src = tmp_path / "src.mp3"
    sf.write(src, tone(440.0, seconds=2.0), SR, format="MP3")
    path = tmp_path / "truncated.mp3"
    path.write_bytes(src.read_bytes()[: os.path.getsize(src) // 2])
    with pytest.raises(AudioError, match="truncated"):
        load_audio(path)


def test_silence_is_valid_audio_not_an_error(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR, dtype=np.float32), SR)
    y = load_audio(path)
    assert y.size == SR and not y.any()


def test_audio_error_survives_pickling():
    err = pickle.loads(pickle.dumps(AudioError("/x/y.wav", "corrupt")))
    assert isinstance(err, AudioError) and err.reason == "corrupt" and "/x/y.wav" in str(err)


def test_bad_sample_rate_rejected(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, tone(440.0), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(path, sample_rate=0)
