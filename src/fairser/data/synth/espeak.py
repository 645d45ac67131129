"""eSpeak NG through ctypes: synthesise utterances to memory.

The shared library and its data come from the ``espeakng-loader`` wheel (eSpeak NG 1.52), so nothing is
downloaded at run time. eSpeak NG keeps global state and is not thread-safe, so the library is loaded once per
process and every call holds a process-wide lock; parallel synthesis uses processes, never threads.

Some of that global state survives from one utterance to the next and is not reset by ``espeak_Initialize``:
the pitch-flutter phase (``Flutter_ix`` in ``wavegen.c``) and other counters. Synthesising the same text twice
in one process therefore gives different samples. To make every utterance a pure function of its arguments
(text, voice, prosody, seed), :func:`synthesize` runs each utterance in a ``fork()`` of a process holding a
freshly initialised engine and reads the samples back through a pipe; the parent's engine never synthesises,
so every child starts from the same state. :func:`synthesize_many` runs a batch in one child (cheaper: a
fresh child spends most of its time loading the language dictionary) and is a pure function of the batch.
On platforms without ``fork`` utterances are synthesised in-process, and their bytes may then depend on what
was synthesised before.
"""

from __future__ import annotations

import ctypes
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

__all__ = [
    "ESPEAK_SAMPLE_RATE",
    "EspeakError",
    "ProsodySettings",
    "espeak_version",
    "list_variants",
    "synthesize",
    "synthesize_many",
]

#: eSpeak NG's native output rate (Hz).
ESPEAK_SAMPLE_RATE = 22050

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakINITIALIZE_DONT_EXIT = 0x8000
_espeakRATE, _espeakVOLUME, _espeakPITCH, _espeakRANGE = 1, 2, 3, 4
_espeakCHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
_HEADER = struct.Struct("<2sQ")  # status (b"OK"/b"ER"), payload length


class EspeakError(RuntimeError):
    """eSpeak NG failed (library not loadable, unknown voice, synthesis error)."""


@dataclass(frozen=True)
class ProsodySettings:
    """eSpeak NG parameters for one utterance.

    ``pitch`` and ``range`` are on eSpeak's 0-100 scale (relative to the voice variant's own pitch
    settings), ``rate`` in words per minute (80-450), ``volume`` on eSpeak's 0-200 scale (100 = normal).
    Values outside these ranges are clipped by :func:`synthesize`.
    """

    pitch: float
    range: float
    rate: float
    volume: float

    def clipped(self) -> tuple[int, int, int, int]:
        """``(pitch, range, rate, volume)`` rounded and clipped to eSpeak's ranges."""

        def clip(value: float, lo: int, hi: int) -> int:
            return int(round(min(max(value, lo), hi)))

        return (
            clip(self.pitch, 0, 100),
            clip(self.range, 0, 100),
            clip(self.rate, 80, 450),
            clip(self.volume, 0, 200),
        )


def _data_path() -> Path:
    try:
        import espeakng_loader
    except ImportError as err:  # pragma: no cover - declared dependency
        raise EspeakError(
            "the synthetic corpus needs the 'espeakng-loader' package (pip install espeakng-loader)"
        ) from err
    return Path(espeakng_loader.get_data_path())


@cache
def list_variants() -> tuple[str, ...]:
    """Names of the voice variants shipped with eSpeak NG (``f1`` ... ``f5``, ``m1`` ... ``m8``, ...)."""
    return tuple(sorted(p.name for p in (_data_path() / "voices" / "!v").iterdir() if p.is_file()))


_Request = tuple[str, str, ProsodySettings, int]


class _Engine:
    """The process's single eSpeak NG instance (lazily initialised)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None
        self._chunks: list[bytes] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # keep a reference: ctypes must not free it

    def _on_audio(self, wav, numsamples, events) -> int:  # noqa: ARG002 - signature fixed by eSpeak
        if numsamples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0  # 0 = continue synthesis

    def _load(self) -> ctypes.CDLL:
        if self._lib is not None:
            return self._lib
        import espeakng_loader

        lib_path = espeakng_loader.get_library_path()
        data_path = str(_data_path())
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as err:
            raise EspeakError(f"cannot load eSpeak NG from {lib_path}: {err}") from err
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _espeakINITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data path {data_path}")
        if rate != ESPEAK_SAMPLE_RATE:
            raise EspeakError(f"eSpeak NG reports {rate} Hz, expected {ESPEAK_SAMPLE_RATE} Hz")
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        return lib

    def version(self) -> str:
        with self._lock:
            return self._load().espeak_Info(None).decode()

    def _synth_here(
        self, lib: ctypes.CDLL, text: str, voice: str, prosody: ProsodySettings, seed: int
    ) -> bytes:
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise EspeakError(f"eSpeak NG has no voice {voice!r} (use '<language>+<variant>', e.g. 'en+f3')")
        pitch, range_, rate, volume = prosody.clipped()
        for param, value in (
            (_espeakRATE, rate),
            (_espeakVOLUME, volume),
            (_espeakPITCH, pitch),
            (_espeakRANGE, range_),
        ):
            lib.espeak_SetParameter(param, value, 0)
        lib.espeak_ng_SetRandSeed(seed)  # breath/roughness noise
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        self._chunks = []
        status = lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _espeakCHARS_UTF8, None, None)
        if status != _EE_OK:
            raise EspeakError(f"espeak_Synth failed with status {status} for voice {voice!r}, text {text!r}")
        lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        return b"".join(chunks)

    def _synth_forked(self, lib: ctypes.CDLL, requests: Sequence[_Request]) -> list[bytes]:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesise in order, stream each result, exit without any Python cleanup
            code = 0
            try:
                os.close(read_fd)
                for text, voice, prosody, seed in requests:
                    try:
                        status, payload = b"OK", self._synth_here(lib, text, voice, prosody, seed)
                    except Exception as err:  # noqa: BLE001 - reported to the parent
                        status, payload = b"ER", str(err).encode("utf-8", "replace")
                    view = memoryview(_HEADER.pack(status, len(payload)) + payload)
                    while view:
                        view = view[os.write(write_fd, view) :]
                    if status != b"OK":
                        break
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        os.close(write_fd)
        parts = []
        try:
            while chunk := os.read(read_fd, 1 << 20):
                parts.append(chunk)
        finally:
            os.close(read_fd)
            _, wait_status = os.waitpid(pid, 0)
        message = b"".join(parts)
        out: list[bytes] = []
        offset = 0
        while offset + _HEADER.size <= len(message):
            status, length = _HEADER.unpack_from(message, offset)
            payload = message[offset + _HEADER.size : offset + _HEADER.size + length]
            offset += _HEADER.size + length
            if status != b"OK":
                raise EspeakError(payload.decode("utf-8", "replace"))
            out.append(payload)
        if os.waitstatus_to_exitcode(wait_status) != 0 or len(out) != len(requests):
            text, voice = requests[len(out)][:2] if len(out) < len(requests) else requests[-1][:2]
            raise EspeakError(f"eSpeak NG child process failed at voice {voice!r}, text {text!r}")
        return out

    def synthesize_many(self, requests: Sequence[_Request]) -> list[np.ndarray]:
        for text, voice, _, _ in requests:
            language, _, variant = voice.partition("+")
            if not language:
                raise EspeakError(
                    f"voice {voice!r} has no language (use '<language>+<variant>', e.g. 'en+f3')"
                )
            if variant and variant not in list_variants():
                raise EspeakError(
                    f"eSpeak NG has no voice variant {variant!r} (in voice {voice!r}); known: {list(list_variants())}"
                )
            if not text.strip():
                raise EspeakError(f"empty text for voice {voice!r}")
        if not requests:
            return []
        with self._lock:
            lib = self._load()
            if hasattr(os, "fork"):
                raws = self._synth_forked(lib, requests)
            else:  # pragma: no cover - Windows
                raws = [self._synth_here(lib, *request) for request in requests]
        for raw, (text, voice, _, _) in zip(raws, requests, strict=True):
            if not raw:
                raise EspeakError(f"eSpeak NG produced no audio for voice {voice!r}, text {text!r}")
        return [np.frombuffer(raw, dtype=np.int16).copy() for raw in raws]


_ENGINE = _Engine()


def espeak_version() -> str:
    """Version string of the loaded eSpeak NG library (e.g. ``'1.52.0'``)."""
    return _ENGINE.version()


def synthesize(text: str, *, voice: str, prosody: ProsodySettings, seed: int = 0) -> np.ndarray:
    """Synthesise ``text`` with eSpeak NG; return int16 mono samples at :data:`ESPEAK_SAMPLE_RATE`.

    The result depends only on the arguments (the call runs in a fork of a freshly initialised engine,
    see the module docstring).

    Parameters
    ----------
    text : str
        UTF-8 text (Japanese must be kana: eSpeak NG does not read kanji).
    voice : str
        ``'<language>+<variant>'``, e.g. ``'en+f3'``, ``'de+m4'``, ``'ja+f2'``.
    prosody : ProsodySettings
        Pitch, range, rate and volume for this utterance.
    seed : int
        Seed of eSpeak's noise generator (breath, roughness).
    """
    return _ENGINE.synthesize_many([(text, voice, prosody, seed)])[0]


def synthesize_many(requests: Sequence[tuple[str, str, ProsodySettings, int]]) -> list[np.ndarray]:
    """Synthesise several utterances in one forked child, in order: ``(text, voice, prosody, seed)`` each.

    One ``fork()`` per batch instead of per utterance (eSpeak NG loads a language's dictionary on the first
    utterance of a voice, which dominates the cost of a fresh child). The output is a pure function of the
    whole request list: an utterance's samples may depend on the requests before it in the same batch.
    """
    return _ENGINE.synthesize_many(list(requests))
