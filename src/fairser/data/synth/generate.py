"""Plan, skew and synthesise the built-in synthetic multilingual emotional speech corpus.

Design (see ``docs/synthetic.md`` for the calibration behind every default):

* **Parallel content** as in MELD-ST: speaker *k* of a gender says the same script (line, emotion) in every
  language, so each utterance has translations (``parallel_id``).
* **Text carries the emotion with reliability r**: with probability ``text_reliability`` the words are a
  line worded for the spoken emotion, otherwise a line worded for another emotion (neutral wording with
  probability ``mismatch_neutral_share``); ``text_emotion`` records the wording.
* **Speakers** = an eSpeak NG voice variant + fixed per-speaker offsets (pitch, range, rate, gain).
* **Emotion through prosody**: a per-emotion table of pitch/range offsets and rate/loudness factors plus
  per-utterance Gaussian jitter.
* **Speaker-disjoint splits** per language and gender.
* **Bias mechanisms per language** (each a :class:`SynthConfig` knob): (a) a gender-emotion **label skew**
  that drops an exact number of TRAIN utterances of the named cells, (b) **under-representation** that keeps
  an exact number of one gender's TRAIN speakers, (c) **weaker emotion cues**: one gender's emotion prosody
  scaled toward neutral. (a) and (b) are drawn after the plan, so such a corpus is exactly the unbiased corpus
  minus the dropped rows (same ids, byte-identical audio); (c) changes the plan's prosody and nothing else
  (no extra random draw).
"""

from __future__ import annotations

import json
import math
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import warnings
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import fairser
from fairser.data.labels import MELD_EMOTIONS
from fairser.data.manifest import ManifestError, read_manifest, write_manifest
from fairser.data.synth.config import (
    AGE_BANDS,
    GENERATOR_VERSION,
    SYNTH_GENDERS,
    SkewRule,
    SynthConfig,
    UnderRepresentation,
    config_hash,
)
from fairser.data.synth.espeak import espeak_version
from fairser.data.synth.lines import load_lines
from fairser.lifeline import set_parent_death_signal

__all__ = [
    "CORPUS_INFO",
    "CORPUS_NAME",
    "apply_skew",
    "apply_under_representation",
    "generate_corpus",
    "is_synthetic",
    "plan_corpus",
    "read_corpus_info",
]

CORPUS_NAME = "synthetic"
GENERATOR_NAME = "fairser.data.synth"
#: File beside the manifest that marks a synthetic corpus and records how it was made.
CORPUS_INFO = "corpus.json"
_WORKER = Path(__file__).with_name("worker.py")


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent stream per purpose; string keys hashed stably so adding a language changes nothing else."""
    words = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(words)))


def _script(config: SynthConfig, *, gender: str, index: int) -> list[tuple[str, str, str]]:
    """(emotion, wording emotion, line_id) for one speaker slot; shared by the slot's speakers in every language."""
    lines = load_lines()
    rng = _rng(config.seed, "script", gender, index)
    emotions = np.repeat(np.array(MELD_EMOTIONS), config.utterances_per_emotion)
    emotions = emotions[rng.permutation(len(emotions))]
    decks: dict[str, deque[int]] = {}
    out = []
    for emotion in emotions:
        emotion = str(emotion)
        if rng.random() < config.text_reliability:
            wording = emotion
        elif emotion == "neutral":
            wording = str(rng.choice([e for e in MELD_EMOTIONS if e != "neutral"]))
        elif rng.random() < config.mismatch_neutral_share:
            wording = "neutral"
        else:
            wording = str(rng.choice([e for e in MELD_EMOTIONS if e not in ("neutral", emotion)]))
        deck = decks.get(wording)
        if not deck:  # draw lines without replacement, reshuffling when a wording's lines are used up
            deck = decks[wording] = deque(rng.permutation(len(lines[wording])).tolist())
        out.append((emotion, wording, lines[wording][deck.popleft()].line_id))
    return out


def plan_corpus(*, config: SynthConfig) -> pd.DataFrame:
    """Every utterance of the corpus before the skew, with its speaker, split, text and prosody.

    Returns a table with the manifest columns (``audio_path`` relative to the corpus folder) plus
    ``parallel_id``, ``line_id``, ``text_emotion``, ``cue_scale``, ``voice``, ``espeak_pitch``,
    ``espeak_range``, ``espeak_rate``, ``level_dbfs`` and ``synth_seed``. Deterministic in ``config``.
    ``cue_scale`` is the weak-cue scale (:class:`~fairser.data.synth.config.WeakCues`) applied to the
    utterance's emotion prosody (1 = full strength); it draws nothing from the random streams.
    """
    lines = {line.line_id: line for group in load_lines().values() for line in group}
    n_max = config.speakers_per_gender + max(config.extra_test_speakers.values(), default=0)
    scripts = {(g, k): _script(config, gender=g, index=k) for g in SYNTH_GENDERS for k in range(n_max)}
    sizes = config.split_speakers
    split_of_rank = ["train"] * sizes.train + ["valid"] * sizes.valid + ["test"] * sizes.test
    split_start = {"train": 0, "valid": sizes.train, "test": sizes.train + sizes.valid}
    spread, base, jit = config.speaker_spread, config.base, config.jitter
    rows = []
    for lang in config.languages:
        weak = config.weak_cues.get(lang)
        for gender in SYNTH_GENDERS:
            scale = weak.scale if weak is not None and weak.gender == gender else 1.0
            prosody = {e: _scaled(p, scale) for e, p in config.prosody.items()}
            variants = list(config.voice_variants[gender])
            n_base = config.speakers_per_gender
            n_extra = config.extra_test_speakers.get(lang, 0)
            # the base plan, then the extra test speakers from a stream of their own (so adding them changes
            # no base speaker); each group spread evenly over the variants, in a seeded order
            slots = []
            for stream, first, n in (("speakers", 0, n_base), ("extra test speakers", n_base, n_extra)):
                if n == 0:
                    continue
                rng = _rng(config.seed, stream, lang, gender)
                order = np.concatenate(
                    [rng.permutation(len(variants)) for _ in range(math.ceil(n / len(variants)))]
                )
                # rank -> split; the extra speakers rank after the base plan's test speakers (no draw)
                ranks = rng.permutation(n) if first == 0 else np.arange(n) + len(split_of_rank)
                for i in range(n):
                    offsets = (
                        rng.uniform(-spread.pitch, spread.pitch),
                        rng.uniform(-spread.range, spread.range),
                        rng.uniform(1 - spread.rate, 1 + spread.rate),
                        rng.uniform(-spread.gain_db, spread.gain_db),
                    )
                    slots.append((first + i, variants[order[i]], int(ranks[i]), offsets))
            for k, variant, rank, (s_pitch, s_range, s_rate, s_gain) in slots:
                speaker = f"{lang}_{gender[0]}{k:02d}"
                split = split_of_rank[rank] if rank < len(split_of_rank) else "test"
                # metadata only (no effect on the voice): bands cycle over the speakers of each split, so
                # every (language, gender, split) cell spreads evenly over them and no RNG draw changes
                age_band = AGE_BANDS[(rank - split_start[split]) % len(AGE_BANDS)]
                urng = _rng(config.seed, "utterances", lang, gender, k)
                for j, (emotion, wording, line_id) in enumerate(scripts[(gender, k)]):
                    table = prosody[emotion]
                    z = urng.standard_normal(4)
                    volume = max(0.05, table.volume * (1 + jit.volume * z[3]))
                    utt_id = f"{speaker}_{j:03d}"
                    rows.append(
                        {
                            "id": utt_id,
                            "audio_path": f"audio/{lang}/{speaker}/{utt_id}.wav",
                            "transcript": lines[line_id].texts[lang],
                            "emotion": emotion,
                            "gender": gender,
                            "language": lang,
                            "speaker": speaker,
                            "corpus": CORPUS_NAME,
                            "split": split,
                            "age_band": age_band,
                            "parallel_id": f"{gender[0]}{k:02d}_{j:03d}",
                            "line_id": line_id,
                            "text_emotion": wording,
                            "cue_scale": scale,
                            "voice": f"{lang}+{variant}",
                            "espeak_pitch": round(
                                base.pitch
                                + (config.male_pitch_offset if gender == "male" else 0)
                                + s_pitch
                                + table.pitch
                                + jit.pitch * z[0],
                                2,
                            ),
                            "espeak_range": round(base.range + s_range + table.range + jit.range * z[1], 2),
                            "espeak_rate": round(
                                base.rate * s_rate * table.rate * max(0.3, 1 + jit.rate * z[2]), 2
                            ),
                            "level_dbfs": round(base.level_dbfs + s_gain + 20 * math.log10(volume), 3),
                            "synth_seed": int(urng.integers(0, 2**31 - 1)),
                        }
                    )
    return pd.DataFrame(rows)


def _scaled(prosody, scale: float):
    """An emotion's prosody scaled toward neutral: offsets times ``scale``, factors to the power ``scale``."""
    if scale == 1.0:
        return prosody
    return prosody.model_copy(
        update={
            "pitch": prosody.pitch * scale,
            "range": prosody.range * scale,
            "rate": prosody.rate**scale,
            "volume": prosody.volume**scale,
        }
    )


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def apply_under_representation(
    manifest: pd.DataFrame,
    *,
    under_representation: Mapping[str, UnderRepresentation],
    seed: int,
) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, int]]]]:
    """Drop whole TRAIN speakers to under-represent one gender in a language (bias mechanism (b)).

    For each language, of the ``n`` training speakers of ``rule.gender`` exactly
    ``max(1, floor(keep_fraction * n + 0.5))`` are kept, chosen at random (seeded per language and gender);
    every utterance of the others is dropped. Validation and test splits are never touched.

    Returns the kept rows (original order) and ``{language: {gender: {"speakers": dropped speakers,
    "utterances": dropped utterances}}}``.
    """
    drop = pd.Series(False, index=manifest.index)
    dropped: dict[str, dict[str, dict[str, int]]] = {}
    for lang, rule in under_representation.items():
        cell = (
            (manifest["language"] == lang)
            & (manifest["split"] == "train")
            & (manifest["gender"] == rule.gender)
        )
        speakers = sorted(manifest.loc[cell, "speaker"].unique())
        n_keep = max(1, _round_half_up(rule.keep_fraction * len(speakers))) if speakers else 0
        chosen = _rng(seed, "under_representation", lang, rule.gender).choice(
            len(speakers), size=n_keep, replace=False
        )
        kept_speakers = {speakers[i] for i in chosen}
        gone = cell & ~manifest["speaker"].isin(kept_speakers)
        drop |= gone
        dropped.setdefault(lang, {})[rule.gender] = {
            "speakers": len(speakers) - n_keep,
            "utterances": int(gone.sum()),
        }
    return manifest.loc[~drop].copy(), dropped


def apply_skew(
    manifest: pd.DataFrame,
    *,
    skew: Mapping[str, Sequence[SkewRule]],
    seed: int,
) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, int]]]]:
    """Drop TRAIN utterances to inject a gender-emotion skew.

    For each language and rule, each (gender, emotion) cell of the train split of ``n`` utterances loses
    exactly ``floor(drop_fraction * n + 0.5)`` utterances chosen at random (seeded per cell, so the choice
    does not depend on the other cells or languages). Validation and test splits are never touched.

    Returns the kept rows (original order) and the dropped counts ``{language: {gender: {emotion: n}}}``.
    """
    drop = pd.Series(False, index=manifest.index)
    dropped: dict[str, dict[str, dict[str, int]]] = {}
    for lang, rules in skew.items():
        for rule in rules:
            for emotion in rule.emotions:
                cell = manifest.index[
                    (manifest["language"] == lang)
                    & (manifest["split"] == "train")
                    & (manifest["gender"] == rule.gender)
                    & (manifest["emotion"] == emotion)
                ]
                cell = manifest.loc[cell].sort_values("id").index
                n_drop = _round_half_up(rule.drop_fraction * len(cell))
                if n_drop:
                    chosen = _rng(seed, "skew", lang, rule.gender, emotion).choice(
                        len(cell), size=n_drop, replace=False
                    )
                    drop[cell[chosen]] = True
                dropped.setdefault(lang, {}).setdefault(rule.gender, {})[emotion] = n_drop
    return manifest.loc[~drop].copy(), dropped


class _WorkerPool:
    """``n`` worker processes (``worker.py``) fed JSON tasks, a few in flight each."""

    def __init__(self, n: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self._logs = [tempfile.TemporaryFile() for _ in range(n)]
        # -P: the synth folder (config.py, lines.py, ...) must not be on the worker's sys.path, where its
        # modules could shadow installed ones; the worker imports only numpy, soxr, soundfile and espeak.py
        self._procs = [
            subprocess.Popen(
                [sys.executable, "-P", str(_WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                # the kernel kills the worker when this process dies, even by SIGKILL (the tie survives exec)
                preexec_fn=set_parent_death_signal,
            )
            for log in self._logs
        ]

    def _stderr(self, i: int) -> str:
        self._logs[i].seek(0)
        return self._logs[i].read().decode(errors="replace")[-2000:]

    def run(self, tasks: list[dict], *, on_result) -> None:
        # One batch in flight per worker: a task is written only to an idle worker (blocked reading stdin),
        # so neither side can block on a full pipe. Replies are read from the raw descriptor and split into
        # lines here, so no complete line can sit unseen in a file object's buffer while select() waits.
        pending = deque(range(len(tasks)))
        buffers = {i: b"" for i in range(len(self._procs))}
        sel = selectors.DefaultSelector()
        for i, proc in enumerate(self._procs):
            sel.register(proc.stdout.fileno(), selectors.EVENT_READ, i)

        def feed(i: int) -> None:
            if pending:
                k = pending.popleft()
                self._procs[i].stdin.write((json.dumps({"key": k, **tasks[k]}) + "\n").encode())
                self._procs[i].stdin.flush()

        for i in buffers:
            feed(i)
        remaining = len(tasks)
        while remaining:
            for key, _ in sel.select():
                i = key.data
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"synthesis worker {i} exited unexpectedly:\n{self._stderr(i)}")
                buffers[i] += chunk
                while b"\n" in buffers[i]:
                    line, buffers[i] = buffers[i].split(b"\n", 1)
                    reply = json.loads(line)
                    if "error" in reply:
                        first = tasks[reply["key"]]["items"][0]
                        raise RuntimeError(
                            f"synthesis failed in the batch of voice {first['voice']!r} ({first['path']}): {reply['error']}"
                        )
                    remaining -= 1
                    on_result(reply)
                    feed(i)
        sel.close()

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.stdin.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()


def _synthesise(
    plan: pd.DataFrame, *, keep: pd.Series, config: SynthConfig, out_dir: Path, n_jobs: int, progress: bool
) -> pd.DataFrame:
    """Synthesise the kept rows of ``plan``, one batch per speaker holding ALL its planned utterances.

    Dropped (skewed-out) utterances are synthesised too but not written, so a speaker's audio does not
    depend on the skew (see :func:`fairser.data.synth.espeak.synthesize_many`).
    """
    tasks, index = [], []
    for _, group in plan.groupby("speaker", sort=True):
        if not keep[group.index].any():
            continue  # a speaker dropped whole (under-representation): its batch changes no one else's audio
        items = [
            {
                "text": row.transcript,
                "voice": row.voice,
                "pitch": float(row.espeak_pitch),
                "range": float(row.espeak_range),
                "rate": float(row.espeak_rate),
                "espeak_volume": config.base.espeak_volume,
                "level_dbfs": float(row.level_dbfs),
                "seed": int(row.synth_seed),
                "path": str(out_dir / row.audio_path) if keep[idx] else None,
            }
            for idx, row in zip(group.index, group.itertuples(index=False), strict=True)
        ]
        tasks.append({"items": items, "sample_rate": config.sample_rate})
        index.append(group.index)
    n_samples = pd.Series(0, index=plan.index, dtype="int64")
    limited = pd.Series(False, index=plan.index)

    def store(reply: dict) -> None:
        for idx, result in zip(index[reply["key"]], reply["results"], strict=True):
            if result is not None:
                n_samples[idx], limited[idx] = result["n_samples"], result["limited"]

    pool = _WorkerPool(max(1, min(n_jobs, len(tasks))))
    try:
        if progress:
            from rich.progress import Progress

            with Progress() as bar:
                job = bar.add_task("synthesising", total=int(keep.sum()))

                def on_result(reply: dict) -> None:
                    store(reply)
                    bar.advance(job, sum(r is not None for r in reply["results"]))

                pool.run(tasks, on_result=on_result)
        else:
            pool.run(tasks, on_result=store)
    finally:
        pool.close()
    out = plan.loc[keep].copy()
    out["duration"] = np.round(n_samples[keep] / config.sample_rate, 4)
    out["peak_limited"] = limited[keep]
    return out


def _counts(manifest: pd.DataFrame) -> dict:
    by = manifest.groupby(["language", "split", "gender"]).size()
    cells: dict = {}
    for (lang, split, gender), n in by.items():
        cells.setdefault(lang, {}).setdefault(split, {})[gender] = int(n)
    return {
        "utterances": int(len(manifest)),
        "speakers": int(manifest["speaker"].nunique()),
        "hours": round(float(manifest["duration"].sum()) / 3600, 3),
        "by_language_split_gender": cells,
        "by_emotion": {e: int((manifest["emotion"] == e).sum()) for e in MELD_EMOTIONS},
        "text_matches_emotion": round(float((manifest["text_emotion"] == manifest["emotion"]).mean()), 4),
        "peak_limited": int(manifest["peak_limited"].sum()),
    }


def _diff(old: Mapping, new: Mapping) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _write_info(path: Path, info: dict) -> None:
    path.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_corpus_info(path: str | Path) -> dict | None:
    """The ``corpus.json`` of a corpus folder (or of the folder of a manifest file); ``None`` if absent."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    info = folder / CORPUS_INFO
    if not info.is_file():
        return None
    try:
        return json.loads(info.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{info}: not valid JSON ({err})") from err


def is_synthetic(path: str | Path) -> bool:
    """True if ``path`` (a corpus folder or its manifest) holds a corpus made by :func:`generate_corpus`."""
    info = read_corpus_info(path)
    return bool(info and info.get("synthetic") is True)


def generate_corpus(
    *,
    config: SynthConfig,
    out_dir: str | Path,
    progress: bool = True,
    n_jobs: int = 2,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Generate the synthetic corpus (``fairser data synth``) and return its validated manifest.

    Writes ``out_dir/audio/<lang>/<speaker>/<id>.wav`` (16-bit mono, ``config.sample_rate``),
    ``out_dir/manifest.csv`` and ``out_dir/corpus.json`` (``"synthetic": true``, the config, versions,
    counts). The same config gives byte-identical files, whatever ``n_jobs``. If ``out_dir`` already holds
    a complete corpus made from the identical config (and generator version), it is returned without
    re-synthesising; a corpus this generator made from another config is regenerated (with a warning naming
    the fields that differ); an interrupted run is redone.

    Parameters
    ----------
    config : SynthConfig
        All settings (validated).
    out_dir : path
        Corpus folder.
    progress : bool
        Show a progress bar.
    n_jobs : int
        Synthesis worker processes (eSpeak NG is not thread-safe; each worker forks once per speaker).
    overwrite : bool
        Replace ``audio/`` and ``manifest.csv`` in ``out_dir`` even though this generator did not make them.

    Raises
    ------
    FileExistsError
        ``out_dir`` has ``audio/`` or ``manifest.csv`` without this generator's ``corpus.json`` and
        ``overwrite`` is False.
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    out_dir = Path(out_dir)
    info_path, manifest_path, audio_dir = out_dir / CORPUS_INFO, out_dir / "manifest.csv", out_dir / "audio"
    digest = config_hash(config)
    info = read_corpus_info(out_dir) if out_dir.is_dir() else None
    if info is not None and info.get("config_hash") == digest and info.get("complete"):
        try:
            return read_manifest(manifest_path, labels=MELD_EMOTIONS)
        except ManifestError:
            pass  # files missing or damaged: generate again
    elif info is not None and info.get("generator") == GENERATOR_NAME and info.get("config_hash") != digest:
        # a corpus made by this generator is a deterministic cache of its config.json: replace it, loudly
        changed = _diff(info.get("config", {}), config.model_dump(mode="json"))
        warnings.warn(
            f"{out_dir} holds a synthetic corpus made from a different config (fields differing: {changed}, "
            f"generator version {info.get('generator_version')} vs {GENERATOR_VERSION}); regenerating it",
            stacklevel=2,
        )
    elif info is None and (audio_dir.exists() or manifest_path.exists()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} has audio/ or manifest.csv but no {CORPUS_INFO} from this generator; "
            "pass overwrite=True or choose another out_dir"
        )
    for path in (info_path, manifest_path):
        path.unlink(missing_ok=True)
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "synthetic": True,
        "corpus": CORPUS_NAME,
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "fairser_version": fairser.__version__,
        "espeak_ng_version": espeak_version(),
        "config_hash": digest,
        "config": config.model_dump(mode="json"),
        "complete": False,  # marks an interrupted run, which the next call with this config redoes
    }
    _write_info(info_path, info)

    plan = plan_corpus(config=config)
    kept, under = apply_under_representation(
        plan, under_representation=config.under_representation, seed=config.seed
    )
    kept, dropped = apply_skew(kept, skew=config.skew, seed=config.seed)
    keep = pd.Series(plan.index.isin(kept.index), index=plan.index)
    manifest = _synthesise(plan, keep=keep, config=config, out_dir=out_dir, n_jobs=n_jobs, progress=progress)
    write_manifest(manifest, manifest_path)
    info["counts"] = {
        **_counts(manifest),
        "planned": int(len(plan)),
        "dropped_by_under_representation": under,
        "dropped_by_skew": dropped,
    }
    info["complete"] = True
    _write_info(info_path, info)
    return read_manifest(manifest_path, labels=MELD_EMOTIONS)
