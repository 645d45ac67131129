"""Synthesis worker: eSpeak NG -> soxr resampling -> loudness -> 16-bit mono WAV.

Run as a script (``python worker.py``) by :func:`fairser.data.synth.generate.generate_corpus`: it reads one
JSON task per line on stdin and answers one JSON line per task on stdout. It imports only numpy, soxr,
soundfile and the sibling ``espeak.py`` (loaded by file path, not through the ``fairser`` package), which
keeps the process small: :mod:`~fairser.data.synth.espeak` forks it once per batch (one speaker), and
``fork()`` is cheaper in a lean process than in one that has imported pandas.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

__all__ = ["active_rms", "render_batch"]

_FRAME_S = 0.02
_ACTIVE_DB = 40.0  # frames within 40 dB of the loudest frame count as speech
_PEAK_LIMIT = 0.99


def _espeak():
    if __package__:
        from fairser.data.synth import espeak

        return espeak
    name = "_fairser_synth_espeak"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("espeak.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def active_rms(samples: np.ndarray, *, sample_rate: int) -> float:
    """RMS over the 20 ms frames within 40 dB of the loudest frame (a simple active-speech level)."""
    n = max(1, int(round(_FRAME_S * sample_rate)))
    usable = len(samples) // n * n
    if usable == 0:
        return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    energy = np.mean(np.square(samples[:usable].reshape(-1, n), dtype=np.float64), axis=1)
    active = energy >= energy.max() * 10 ** (-_ACTIVE_DB / 10)
    return float(np.sqrt(energy[active].mean()))


def _finish(
    raw: np.ndarray, *, espeak, level_dbfs: float, sample_rate: int, path: str | Path, what: str
) -> dict:
    audio = raw.astype(np.float32) / np.float32(32768.0)
    if sample_rate != espeak.ESPEAK_SAMPLE_RATE:
        audio = soxr.resample(audio, espeak.ESPEAK_SAMPLE_RATE, sample_rate, quality="HQ")
    level = active_rms(audio, sample_rate=sample_rate)
    if level <= 0:
        raise RuntimeError(f"silent synthesis for {what}")
    audio = audio * np.float32(10 ** (level_dbfs / 20) / level)
    peak = float(np.max(np.abs(audio)))
    limited = peak > _PEAK_LIMIT
    if limited:
        audio = audio * np.float32(_PEAK_LIMIT / peak)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # encode in memory, then one write: soundfile would fsync every small WAV (4x slower per file)
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, subtype="PCM_16", format="WAV")
    Path(path).write_bytes(buf.getvalue())
    return {"n_samples": int(len(audio)), "peak": min(peak, _PEAK_LIMIT), "limited": bool(limited)}


def render_batch(items: list[dict], *, sample_rate: int) -> list[dict | None]:
    """Synthesise a batch (one eSpeak NG child, in order) and write the WAVs of the items that have a ``path``.

    Each item: ``text``, ``voice``, ``pitch``, ``range``, ``rate`` (eSpeak units), ``espeak_volume``,
    ``level_dbfs``, ``seed`` and ``path`` (``None``: synthesised, so that the batch, and thus every other
    item's audio, stays the same, but not written). Each WAV is resampled from eSpeak's 22,050 Hz with soxr
    (HQ), scaled so that its active-speech RMS is ``level_dbfs`` (loudness is an emotion and speaker cue, set
    digitally so that eSpeak never clips) and peak-limited to 0.99, then written as 16-bit mono.
    Returns ``{"n_samples", "peak", "limited"}`` per written item, ``None`` for the others.
    """
    espeak = _espeak()
    requests = [
        (
            item["text"],
            item["voice"],
            espeak.ProsodySettings(
                pitch=item["pitch"], range=item["range"], rate=item["rate"], volume=item["espeak_volume"]
            ),
            int(item["seed"]),
        )
        for item in items
    ]
    raws = espeak.synthesize_many(requests)
    out: list[dict | None] = []
    for item, raw in zip(items, raws, strict=True):
        if item.get("path") is None:
            out.append(None)
            continue
        what = f"voice {item['voice']!r}, text {item['text']!r}"
        out.append(
            _finish(
                raw,
                espeak=espeak,
                level_dbfs=item["level_dbfs"],
                sample_rate=sample_rate,
                path=item["path"],
                what=what,
            )
        )
    return out


def _serve() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        task = json.loads(line)
        key = task["key"]
        try:
            reply = {"key": key, "results": render_batch(task["items"], sample_rate=task["sample_rate"])}
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises
            reply = {"key": key, "error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
