"""Bad input and faults on the run side (issue 14): every case is one clear message (what, where, fix), exit
code 2 and no traceback, or a counted, said skip; never a silently wrong table. And no process outlives a
SIGKILL-ed benchmark.

Tiny files are built in each test; the corpus (two languages, real WAVs) and its feature cache once per
module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from assets.offline import single_thread  # noqa: F401  (fixture)
from assets.zoo_corpus import tiny_corpus
from fairser.cli import app
from fairser.errors import UserError
from fairser.results import ResultsStore

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(__file__).parent / "assets" / "results_tables"
LABELS = ["anger", "sadness", "neutral", "joy"]


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _user_error(result, *expected: str, code: int = 2) -> str:
    """The command failed as a user error: exit code, no traceback, every ``expected`` text in the message."""
    text = " ".join(result.output.split())
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for e in expected:
        assert " ".join(e.split()) in text, (e, result.output)
    return text


# ------------------------------------------------------------------------------------------------ config


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


CONFIG_CASES = {
    "empty file": ("", ["c.yaml: the config file is empty", "fix: state the fields you change"]),
    "only a comment": ("# nothing here\n", ["the config file is empty", "run without --config"]),
    "duplicate top-level key": (
        "name: a\nseeds: [0]\nname: b\n",
        ["c.yaml:3: key 'name' is given twice (lines 1 and 3)", "fix: keep one 'name'"],
    ),
    "duplicate nested key": (
        "train:\n  epochs: 2\n  hidden: 8\n  epochs: 3\n",
        ["c.yaml:4: key 'epochs' is given twice (lines 2 and 4)"],
    ),
    "YAML syntax": ("seeds: [0, 1\nname: x\n", ["c.yaml:", "not valid YAML", "fix: correct the YAML syntax"]),
    "misspelt key": (
        "train:\n  epochz: 3\n",
        ["train.epochz (", "c.yaml:2): unknown key — did you mean 'epochs'?"],
    ),
    "bad value": ("seeds: [0, two]\n", ["seeds.1 (", "c.yaml:1): Input should be a valid integer", "'two'"]),
    "not a mapping": ("- erm\n- minmaxgap\n", ["a config must be a mapping of fields", "got a list"]),
    "unknown objective": (
        "objectives:\n  - name: nope\n",
        ["config key objectives.0.name: unknown objective 'nope'", "fix: use one of the registered names"],
    ),
    "objective parameter typo": (
        "objectives:\n  - name: minmaxgap\n    params: {tua: 0.5}\n",
        ["config key objectives.0.params.tua", "has no parameter 'tua'", "did you mean 'tau'?"],
    ),
}


@pytest.mark.parametrize("case", CONFIG_CASES, ids=list(CONFIG_CASES))
def test_bad_config_is_one_message(tmp_path, case):
    text, expected = CONFIG_CASES[case]
    result = _invoke("benchmark", "--config", _write(tmp_path / "c.yaml", text), "-q")
    _user_error(result, *expected)
    assert not (tmp_path / "results").exists()  # nothing ran


def test_missing_config_and_folder_config(tmp_path):
    _user_error(_invoke("benchmark", "-c", tmp_path / "none.yaml"), "none.yaml: config not found")
    _user_error(_invoke("train", "-c", tmp_path), "is a folder, not a config file")


def test_debug_flag_shows_the_traceback(tmp_path):
    path = _write(tmp_path / "c.yaml", "")
    result = _invoke("--debug", "benchmark", "-c", path)
    assert isinstance(result.exception, UserError) and "config file is empty" in str(result.exception)
    assert "--debug" in _invoke("--help").output and "Exit codes" in _invoke("--help").output


# -------------------------------------------------------------------------------------- manifest files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Two languages (corpus a: en, b: de), 3 speakers per gender each (one per split), real WAVs."""
    root = tmp_path_factory.mktemp("corpus")
    tiny_corpus(root, corpora=(("a", "en"), ("b", "de")), speakers_per_gender=3, utterances=1)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _config(tmp_path: Path, manifest: Path, cache: Path, **over) -> Path:
    data = {
        "output_dir": str(tmp_path / "out"),
        "corpus": {"kind": "manifest", "path": str(manifest), "labels": LABELS},
        "features": {"cache_dir": str(cache), "n_jobs": 1},
        "languages": ["en", "de"],
        "modalities": ["audio"],
        "objectives": [{"name": "erm"}, {"name": "minmaxgap"}],
        "seeds": [0],
        "train": {"epochs": 2, "batch_size": 16, "hidden": 8},
        "evaluation": {"n_boot": 10, "n_perm": 10, "min_samples": 2},
        "n_jobs": 1,
    }
    data.update(over)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _manifest(corpus: Path, tmp_path: Path, name: str, keep=None) -> Path:
    """A copy of the corpus manifest (rows kept by ``keep(df)``) beside the audio, so its paths resolve."""
    df = pd.read_csv(corpus / "manifest.csv", dtype=str, keep_default_na=False)
    if keep is not None:
        df = df[keep(df)]
    path = corpus / f"{tmp_path.name}_{name}.csv"
    df.to_csv(path, index=False)
    return path


CSV_CASES = {
    "0-byte CSV": (b"", "the file is empty (0 bytes)"),
    # UTF-16 with a byte-order mark is read (what spreadsheets write); this one then lacks columns
    "UTF-16 CSV": ("id,audio_path\nu1,a.wav\n".encode("utf-16"), "missing column(s)"),
    "UTF-16LE CSV without BOM": ("id,audio_path\n".encode("utf-16-le"), "not UTF-8 text (NUL bytes"),
    "Latin-1 CSV": ("id,audio_path\nu1,caf\xe9.wav\n".encode("latin-1"), "not UTF-8 text"),
}


@pytest.mark.parametrize("case", CSV_CASES, ids=list(CSV_CASES))
def test_unreadable_manifest_names_the_file(tmp_path, cache, case):
    data, expected = CSV_CASES[case]
    path = tmp_path / "m.csv"
    path.write_bytes(data)
    _user_error(_invoke("data", "validate", path), f"{path}: {expected}", "fix:")
    result = _invoke("benchmark", "-c", _config(tmp_path, path, cache), "-q")
    _user_error(result, f"{path}: {expected}")


def test_corpus_paths(tmp_path, corpus, cache):
    missing = tmp_path / "nope.csv"
    _user_error(
        _invoke("benchmark", "-c", _config(tmp_path, missing, cache), "-q"),
        "config key corpus.path: manifest not found",
    )
    _user_error(_invoke("data", "validate", corpus), f"{corpus}: is a folder, not a CSV file")
    _user_error(
        _invoke("benchmark", "-c", _config(tmp_path, corpus, cache), "-q"), "is a folder, not a CSV file"
    )
    sources = {"kind": "import", "sources": [{"name": "generic", "path": str(tmp_path / "gone")}]}
    _user_error(
        _invoke("benchmark", "-c", _config(tmp_path, missing, cache, corpus=sources), "-q"),
        "config key corpus.sources.0.path: corpus 'generic' not found",
    )


def test_misspelt_corpus_option(tmp_path, corpus, cache):
    table = tmp_path / "corpus.csv"
    pd.read_csv(corpus / "manifest.csv").to_csv(table, index=False)
    sources = {
        "kind": "import",
        "sources": [{"name": "generic", "path": str(table), "options": {"colums": {"path": "audio_path"}}}],
    }
    result = _invoke("benchmark", "-c", _config(tmp_path, table, cache, corpus=sources), "-q")
    _user_error(result, "colums")


def test_missing_audio_and_labels_outside_the_set(tmp_path, corpus, cache):
    df = pd.read_csv(corpus / "manifest.csv", dtype=str, keep_default_na=False)
    df.loc[0, "audio_path"] = "audio/a/gone.wav"
    bad = corpus / f"{tmp_path.name}_gone.csv"
    df.to_csv(bad, index=False)
    _user_error(_invoke("benchmark", "-c", _config(tmp_path, bad, cache), "-q"), "gone.wav")
    config = _config(tmp_path, corpus / "manifest.csv", cache, languages=["en", "fr"])
    _user_error(_invoke("benchmark", "-c", config, "-q"), "config key languages", "['fr']")


# ---------------------------------------------------------------------------------- before any training


def _no_run_started(tmp_path: Path) -> None:
    assert ResultsStore(tmp_path / "out" / "results.jsonl").rows() == []
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize(
    ("case", "keep", "expected"),
    [
        ("no test split", lambda d: d["split"] != "test", "the test split has no rows"),
        ("no valid split", lambda d: d["split"] != "valid", "the valid split has no rows"),
        (
            "one language without test rows",
            lambda d: ~((d["language"] == "de") & (d["split"] == "test")),
            "language 'de' has no test rows",
        ),
        (
            "one language without training rows",
            lambda d: ~((d["language"] == "en") & (d["split"] == "train")),
            "language 'en' has no train rows",
        ),
        (
            "one gender in a training domain, MinMaxGAP",
            lambda d: ~((d["language"] == "de") & (d["split"] == "train") & (d["gender"] == "female")),
            "the training rows of domain de × audio have only ['male'] of gender; minmaxgap",
        ),
    ],
    ids=lambda x: x if isinstance(x, str) and " " in x else "",
)
def test_untrainable_grid_is_refused_before_training(tmp_path, corpus, cache, case, keep, expected):
    config = _config(tmp_path, _manifest(corpus, tmp_path, "m", keep), cache)
    result = _invoke("benchmark", "-c", config, "-q")
    _user_error(result, expected, "no run was started", "fix:")
    _no_run_started(tmp_path)


def test_one_gender_with_group_objective_of_inferred_groups_or_erm_only_trains(tmp_path, corpus, cache):
    """ERM alone has no group term: a one-gender training domain is no reason to refuse it (its gaps are
    undefined in the test split only if the test split lacks a gender, which the table says)."""
    keep = lambda d: ~((d["language"] == "de") & (d["split"] == "train") & (d["gender"] == "female"))  # noqa: E731
    config = _config(tmp_path, _manifest(corpus, tmp_path, "m", keep), cache, objectives=[{"name": "erm"}])
    result = _invoke("benchmark", "-c", config, "-q")
    assert result.exit_code == 0, result.output
    assert len(ResultsStore(tmp_path / "out" / "results.jsonl").rows()) == 1


def test_failed_runs_exit_1_with_a_table_and_the_table_says_so(tmp_path, corpus, cache):
    objectives = [{"name": "erm"}, {"name": "minmaxgap", "params": {"tau": -1.0}}]  # fails when built
    config = _config(tmp_path, corpus / "manifest.csv", cache, objectives=objectives, seeds=[0, 1])
    result = _invoke("benchmark", "-c", config, "-q")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert "2 run(s) failed" in text and "audio__minmaxgap__seed0__" in text and "tau" in text
    meta = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert meta["n_runs"] == 4 and meta["n_finished"] == 2 and len(meta["failures"]) == 2
    failed = [r for r in ResultsStore(tmp_path / "out" / "results.jsonl").rows() if r["status"] == "failed"]
    assert {r["run_id"] for r in failed} == {f["run_id"] for f in meta["failures"]}
    # the table: ERM over both seeds; `fairser table` lists the failed runs on stderr
    table = _invoke("table", tmp_path / "out")
    assert table.exit_code == 0, table.output
    assert table.output.count("run audio__minmaxgap__seed") == 2
    assert "2 failed run(s) are left out of the table" in table.output


# ------------------------------------------------------------------------------------- results and tables


def _results_folder(tmp_path: Path, rows: list[dict], *, seeds=(0, 1, 2)) -> Path:
    out = tmp_path / "res"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "config.yaml").write_text(yaml.safe_dump({"seeds": list(seeds)}))
    return out


def _asset_rows() -> list[dict]:
    return [json.loads(line) for line in (ASSETS / "rows.jsonl").read_text().splitlines() if line.strip()]


def test_torn_line_never_swallows_the_next_row(tmp_path, capsys):
    store = ResultsStore(tmp_path / "results.jsonl")
    store.append({"run_id": "a", "status": "ok"})
    row_b = json.dumps({"run_id": "b", "status": "ok", "x": {"y": 1}})
    with open(store.path, "a") as f:  # a crash (or a full disk) mid-write
        f.write(row_b[:17])
    assert [r["run_id"] for r in store.rows()] == ["a"] and len(store.skipped) == 1
    store.append({"run_id": "c", "status": "ok"})
    assert [r["run_id"] for r in store.rows()] == ["a", "c"] and store.skipped == []
    assert store.repaired == 1
    moved = [json.loads(line) for line in store.quarantine.read_text().splitlines()]
    assert [m["fragment"] for m in moved] == [row_b[:17]] and moved[0]["offset"] == len(
        json.dumps({"run_id": "a", "status": "ok"}, sort_keys=True) + "\n"
    )
    assert "ended in a torn line (17 bytes" in capsys.readouterr().err
    # a whole row that only lacks its newline is kept, not quarantined
    with open(store.path, "a") as f:
        f.write(json.dumps({"run_id": "d", "status": "ok"}))
    store.append({"run_id": "e", "status": "ok"})
    assert [r["run_id"] for r in store.rows()] == ["a", "c", "d", "e"] and store.repaired == 1
    assert store.path.read_text().endswith("\n") and store.path.read_text().count("\n") == 4


def test_a_row_glued_onto_a_fragment_by_older_versions_is_recovered(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    fragment = json.dumps({"run_id": "b", "status": "ok", "params": {"tau": 1}})[:30]
    store.path.write_text(fragment + json.dumps({"run_id": "c", "status": "ok", "params": {}}) + "\n")
    assert [r["run_id"] for r in store.rows()] == ["c"]
    assert store.skipped == [
        (1, "a torn fragment before a complete row (the row is kept, the fragment ignored)")
    ]


def test_table_counts_runs_per_cell_and_lists_unreadable_lines(tmp_path):
    out = _results_folder(tmp_path, _asset_rows())
    with open(out / "results.jsonl", "a") as f:
        f.write('{"run_id": "torn')
    result = _invoke("table", out)
    assert result.exit_code == 0, result.output
    assert "mean ± std over 3 seed(s); (n=k): a cell with only k finished runs" in result.output
    assert "| en | audio | 68.6 ± 15.8 | 6.4 ± 8.4 |" in result.output  # ERM: all 3 seeds
    assert "74.5 ± 7.7 (n=2)" in result.output and "49.9 (n=1)" in result.output  # JTT 2, IDI 1 seed(s)
    assert "results.jsonl:" in result.output and "not valid JSON" in result.output
    assert "1 failed run(s) are left out of the table" in result.output  # the asset's failed run


def test_table_and_report_refuse_a_folder_mixing_configs(tmp_path):
    rows = [r for r in _asset_rows() if r.get("status") == "ok"]
    for i, r in enumerate(rows):
        r["config_id"] = "aaaa" if i % 2 else "bbbb"
    out = _results_folder(tmp_path, rows)
    _user_error(_invoke("table", out), "results of 2 different configs cannot share one table", "output_dir")
    result = _invoke("report", out, "-q", "--n-boot", "0")
    assert result.exit_code == 2 and "different configs" in result.output and "Traceback" not in result.output


def test_table_refuses_two_runs_of_one_cell_without_config_ids(tmp_path):
    rows = [r for r in _asset_rows() if r.get("status") == "ok"]
    twin = dict(rows[0], run_id=rows[0]["run_id"] + "x")  # the same cell from another config (old rows)
    out = _results_folder(tmp_path, [*rows, twin])
    _user_error(_invoke("table", out), "two finished runs of one cell", rows[0]["run_id"])


def test_table_of_a_folder_without_results(tmp_path):
    _user_error(_invoke("table", tmp_path), "no results.jsonl here")
    (tmp_path / "results.jsonl").write_text("")
    _user_error(_invoke("table", tmp_path), "no finished runs")


def test_config_id_is_shared_by_one_config_and_changes_with_it():
    from fairser.config import BenchmarkConfig
    from fairser.run import plan_runs

    base = plan_runs(BenchmarkConfig())
    assert len({r.config_id for r in base}) == 1
    other = plan_runs(BenchmarkConfig(train={"epochs": 3}))
    assert {r.config_id for r in other}.isdisjoint({r.config_id for r in base})
    more_seeds = plan_runs(BenchmarkConfig(seeds=(0, 1, 2, 3)))  # more seeds of one config: the same config
    assert {r.config_id for r in more_seeds} == {r.config_id for r in base}


# ---------------------------------------------------------------------------------------------- orphans


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_and_count_survivors(popen: subprocess.Popen, ready, *, timeout: float = 180.0) -> tuple[int, int]:
    """Wait until ``ready(descendants)``, SIGKILL the parent, and return (descendants, survivors after 5 s)."""
    import psutil

    parent = psutil.Process(popen.pid)
    t0 = time.monotonic()
    kids: list = []
    while time.monotonic() - t0 < timeout:
        assert popen.poll() is None, "the command ended before its workers were seen"
        kids = parent.children(recursive=True)
        if ready(kids):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no workers after {timeout} s: {[k.cmdline() for k in kids]}")
    time.sleep(0.5)
    kids = parent.children(recursive=True)
    os.kill(popen.pid, signal.SIGKILL)
    popen.wait()
    t1 = time.monotonic()
    while time.monotonic() - t1 < 5 and any(_alive(k) for k in kids):
        time.sleep(0.1)
    survivors = [k for k in kids if _alive(k)]
    for k in survivors:  # never leave them behind, whatever the assertion says
        k.kill()
    return len(kids), len(survivors)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process-tree checks use Linux /proc")
def test_sigkill_of_benchmark_leaves_no_process_behind(tmp_path, corpus, cache):
    """The training pool (forkserver, its workers, the resource tracker) dies with a SIGKILL-ed benchmark."""
    pytest.importorskip("psutil")
    # a warm cache, so the workers appear fast; enough epochs that they are still training when killed
    _invoke("features", "-c", _config(tmp_path, corpus / "manifest.csv", cache), "-q")
    config = _config(
        tmp_path,
        corpus / "manifest.csv",
        cache,
        objectives=[{"name": "erm"}, {"name": "minmaxgap"}],
        train={"epochs": 5000, "patience": 5000, "batch_size": 16, "hidden": 8},
        n_jobs=2,
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO / "tests")]))
    popen = subprocess.Popen(
        [sys.executable, "-m", "fairser.cli", "benchmark", "-c", str(config), "-q"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def workers(kids) -> bool:
        forked = [k for k in kids if "forkserver" in " ".join(k.cmdline())]
        return len(forked) >= 3  # the forkserver and its two workers (the resource tracker beside them)

    n, left = _kill_and_count_survivors(popen, workers)
    assert n >= 4 and left == 0, f"{left} of {n} descendants survived the SIGKILL"


_EXTRACT_SCRIPT = """
import sys, time
import numpy as np
from fairser.features.cache import FeatureCache
from fairser.features.extract import extract_audio_features

class Slow:
    name, sample_rate, dim = "slow", 16000, 2
    def encode_signal(self, x, *, sample_rate):
        time.sleep(30)
        return np.zeros(2, dtype=np.float32)
    def fingerprint(self):
        return "0" * 64
    def config(self):
        return {"name": "slow"}

paths = sys.argv[2:]
extract_audio_features(paths=paths, encoder=Slow(), cache=FeatureCache(sys.argv[1]), n_jobs=2, progress=False)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process-tree checks use Linux /proc")
def test_sigkill_during_feature_extraction_leaves_no_worker(tmp_path, corpus):
    pytest.importorskip("psutil")
    wavs = sorted(str(p) for p in (corpus / "audio").rglob("*.wav"))[:4]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    popen = subprocess.Popen(
        [sys.executable, "-c", _EXTRACT_SCRIPT, str(tmp_path / "cache"), *wavs],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    n, left = _kill_and_count_survivors(popen, lambda kids: len(kids) >= 2, timeout=60)
    assert n >= 2 and left == 0, f"{left} of {n} extraction workers survived the SIGKILL"
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


_SYNTH_SCRIPT = """
import sys, time
from pathlib import Path
from fairser.data.synth import generate

generate._WORKER = Path(sys.argv[1])  # a worker busy for a minute, deaf to its stdin closing
pool = generate._WorkerPool(2)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process-tree checks use Linux /proc")
def test_sigkill_during_synthesis_leaves_no_worker(tmp_path):
    """The eSpeak synthesis workers (subprocesses fed over pipes) die with their parent even mid-batch, when
    the closed pipe alone would not end them."""
    pytest.importorskip("psutil")
    busy = tmp_path / "busy_worker.py"
    busy.write_text("import time\ntime.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    popen = subprocess.Popen(
        [sys.executable, "-c", _SYNTH_SCRIPT, str(busy)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    n, left = _kill_and_count_survivors(popen, lambda kids: len(kids) >= 2, timeout=60)
    assert n >= 2 and left == 0, f"{left} of {n} synthesis workers survived the SIGKILL"


_DEGRADE_SCRIPT = """
import sys, time
import numpy as np
from fairser.degrade import build_condition, extract_degraded_features
from fairser.features.cache import FeatureCache

class Slow:
    name, sample_rate, dim = "slow", 16000, 2
    def encode_signal(self, x, *, sample_rate):
        time.sleep(30)
        return np.zeros(2, dtype=np.float32)
    def config(self):
        return {"name": "slow"}

extract_degraded_features(paths=sys.argv[2:], condition=build_condition("noise", kind="white", snr_db=10),
                          encoder=Slow(), cache=FeatureCache(sys.argv[1]), n_jobs=2, progress=False)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process-tree checks use Linux /proc")
def test_sigkill_during_degraded_extraction_leaves_no_worker(tmp_path, corpus):
    """The degradation pool (fairser robustness, degrade_augment) dies with its parent, as the clean one does."""
    pytest.importorskip("psutil")
    wavs = sorted(str(p) for p in (corpus / "audio").rglob("*.wav"))[:4]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    popen = subprocess.Popen(
        [sys.executable, "-c", _DEGRADE_SCRIPT, str(tmp_path / "cache"), *wavs],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    n, left = _kill_and_count_survivors(popen, lambda kids: len(kids) >= 2, timeout=60)
    assert n >= 2 and left == 0, f"{left} of {n} degradation workers survived the SIGKILL"
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
