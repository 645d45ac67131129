"""The raw-audio backbone loop (fairser.scale): length bucketing with the stratified sampler, mixed precision,
gradient checkpointing and accumulation, model selection, an SSL backbone, the shipped accelerate configs,
and ``fairser benchmark`` end to end with a tiny random Qwen2-Audio on the built-in synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

pytest.importorskip("transformers")
pytest.importorskip("peft")

from assets.offline import block_network, single_thread  # noqa: E402,F401  (fixtures)
from assets.tiny_models import TINY_LABELS, save_tiny_qwen2_audio, save_tiny_ssl, tone  # noqa: E402
from fairser.config import BackboneConfig, BenchmarkConfig  # noqa: E402
from fairser.objectives import build_objective  # noqa: E402
from fairser.sampler import GroupStratifiedSampler  # noqa: E402
from fairser.scale import (  # noqa: E402
    AudioDataset,
    LengthBucketedSampler,
    RandomBatches,
    eval_batches,
    fit_backbone,
    padding_fraction,
    predict_backbone,
    shard_batch,
)
from fairser.scale.loop import score  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("block_network", "single_thread")
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


# ------------------------------------------------------------------------------------------- bucketing
def _groups_lengths(n=300, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.choice([0, 1, 2, 3, 4, 5, -1], size=n, p=[0.3, 0.1, 0.2, 0.2, 0.1, 0.05, 0.05])
    return groups, rng.uniform(0.5, 12.0, size=n)


@pytest.mark.parametrize("window", [1, 4, 8])
def test_bucketing_keeps_every_cell_in_every_batch_and_the_epoch_samples(window):
    groups, lengths = _groups_lengths()
    base = GroupStratifiedSampler(groups=groups, batch_size=16, seed=3)
    sampler = LengthBucketedSampler(base, lengths=lengths, groups=groups, window=window, seed=3)
    assert len(sampler) == len(base)
    for epoch in range(3):
        drawn, recut = base.batches(epoch), sampler.batches(epoch)
        for b in recut:
            assert set(range(6)) <= set(groups[b].tolist())  # every guaranteed cell, as the base sampler
        assert sorted(np.concatenate(drawn).tolist()) == sorted(np.concatenate(recut).tolist())
        assert sorted(map(len, drawn)) == sorted(map(len, recut))
        if window == 1:
            assert all(np.array_equal(a, b) for a, b in zip(drawn, recut, strict=True))
        else:  # less padding than the stratified batches as drawn
            assert padding_fraction(recut, lengths=lengths) < 0.85 * padding_fraction(drawn, lengths=lengths)
    # deterministic in (seed, epoch)
    again = LengthBucketedSampler(base, lengths=lengths, groups=groups, window=window, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again.batches(1), sampler.batches(1), strict=True))


def test_bucketing_resumes_mid_epoch_and_refuses_other_data():
    groups, lengths = _groups_lengths()
    make = lambda: LengthBucketedSampler(  # noqa: E731
        GroupStratifiedSampler(groups=groups, batch_size=16, seed=1), lengths=lengths, groups=groups, window=4
    )
    full = make()
    full.set_epoch(2)
    expected = list(full)
    partial = make()
    partial.set_epoch(2)
    it = iter(partial)
    head = [next(it) for _ in range(5)]
    state = partial.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert head + list(resumed) == expected
    other = LengthBucketedSampler(
        GroupStratifiedSampler(groups=groups, batch_size=16, seed=1),
        lengths=lengths * 2,
        groups=groups,
        window=4,
    )
    with pytest.raises(ValueError, match="lengths"):
        other.load_state_dict(state)


def test_random_batches_and_sharding():
    _, lengths = _groups_lengths(n=37)
    sampler = LengthBucketedSampler(RandomBatches(n=37, batch_size=8, seed=0), lengths=lengths, window=3)
    batches = sampler.batches(0)
    assert sorted(map(len, batches)) == [7, 7, 7, 8, 8] and sorted(np.concatenate(batches)) == list(range(37))
    batch = batches[0]
    for shards in (1, 2, 3):
        parts = shard_batch(batch, lengths=lengths, num_shards=shards)
        joined = np.concatenate(parts)
        assert list(joined) == sorted(batch, key=lambda i: (lengths[i], i))  # same global order for any W
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    with pytest.raises(ValueError, match="cannot feed 9 processes"):
        shard_batch(batch, lengths=lengths, num_shards=9)
    ev = eval_batches(lengths, batch_size=4, num_shards=2)
    rows = np.concatenate([s for shards in ev for s in shards])
    assert sorted(rows) == list(range(37)) and all(len(shards) == 2 for shards in ev)


# ------------------------------------------------------------------------------------------- the loop
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen2_audio(tmp_path_factory.mktemp("loop") / "tiny-qwen2-audio")


def _data(n, seed, *, modality="audio+text"):
    rng = np.random.default_rng(seed)
    return AudioDataset(
        audio=[
            tone(0.2 + 0.5 * rng.random(), freq=120.0 + 45 * (i % 4), seed=seed * 100 + i) for i in range(n)
        ],
        y=np.arange(n) % 4,
        domain=(np.arange(n) // 4) % 2,
        sensitive=np.arange(n) % 2,
        texts=["hello there", "okay yes", "I am fine thanks", "no"] * (n // 4),
        modalities=[modality] * n,
    )


def _qwen(tiny_dir, mode="head", **kw):
    from fairser.models.qwen2_audio import Qwen2AudioClassifier

    torch.manual_seed(0)
    return Qwen2AudioClassifier.from_pretrained(tiny_dir, labels=TINY_LABELS, mode=mode, lora=LORA, **kw)


def _cfg(tiny_dir, **kw):
    base = dict(
        name="qwen2_audio",
        path=tiny_dir,
        per_device_batch_size=6,
        epochs=1,
        lr=1e-2,
        bucket_window=2,
        eval_batch_size=4,
    )
    return BackboneConfig(**{**base, **kw})


def _tiny_grid(tmp_path, **backbone) -> dict:
    """configs/tiny_qwen2_audio.yaml with a tiny random model, corpus, cache and output under tmp_path."""
    from fairser.data.labels import MELD_EMOTIONS

    model_dir = save_tiny_qwen2_audio(tmp_path / "tiny-qwen2-audio", words=MELD_EMOTIONS)
    data = yaml.safe_load((ROOT / "configs" / "tiny_qwen2_audio.yaml").read_text())
    data["output_dir"] = str(tmp_path / "out")
    data["corpus"]["path"] = str(tmp_path / "corpus")
    data["corpus"]["synth"]["utterances_per_emotion"] = 1
    data["features"] = {"cache_dir": str(tmp_path / "cache"), "n_jobs": 1}
    data["backbone"] = {**data["backbone"], "path": str(model_dir), "epochs": 1, **backbone}
    data["evaluation"] = {"n_boot": 20, "n_perm": 20, "min_samples": 3}
    return data


def test_bf16_checkpointing_and_accumulation(tiny_dir):
    train, valid = _data(20, 0), _data(8, 1)
    model = _qwen(tiny_dir, gradient_checkpointing=True)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    train_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    objective = build_objective("minmaxgap", n_domains=2, n_classes=4)
    cfg = _cfg(tiny_dir, mixed_precision="bf16", grad_accum_steps=2, epochs=2, gradient_checkpointing=True)
    result = fit_backbone(model=model, objective=objective, train=train, valid=valid, config=cfg, seed=0)
    # 20 samples, global batch 6 with 4 cells -> 4 micro-batches per epoch -> 2 optimizer steps per epoch
    assert result.completed and result.global_step == 4 and len(result.history) == 2
    per_epoch = [sum(s["n_samples"] for s in result.step_logs if s["epoch"] == e) for e in (0, 1)]
    assert per_epoch == [20, 20]
    assert all(np.isfinite(s["loss"]) and "lambda" in s and "R" in s for s in result.step_logs)
    assert model.model.is_gradient_checkpointing
    after = dict(result.model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in frozen_before.items())  # the base model stays frozen
    assert any(not torch.equal(after[n], v) for n, v in train_before.items())
    assert all(after[n].dtype == torch.float32 for n in train_before)  # fp32 master weights under autocast
    # bf16 autocast is really on: the first step's loss differs from the fp32 run's (same seed, same batch)
    fp32 = fit_backbone(
        model=_qwen(tiny_dir),
        objective=build_objective("minmaxgap", n_domains=2, n_classes=4),
        train=train,
        valid=valid,
        config=_cfg(tiny_dir, mixed_precision="no", grad_accum_steps=2, epochs=2),
        seed=0,
        halt_after_steps=1,
    )
    a, b = fp32.step_logs[0]["loss"], result.step_logs[0]["loss"]
    assert a != b and abs(a - b) < 0.05 * abs(a)


def test_model_selection_keeps_the_best_validation_epoch(tiny_dir):
    train, valid = _data(16, 2), _data(12, 3)

    def fit(**kw):
        return fit_backbone(
            model=_qwen(tiny_dir, mode="label_tokens"),
            objective=build_objective("erm", n_domains=2, n_classes=4),
            train=train,
            valid=valid,
            config=_cfg(tiny_dir, epochs=3, lr=3e-2, mixed_precision="no", lr_schedule="constant"),
            seed=1,
            sampler="random",
            select_metric="uar",
            **kw,
        )

    result = fit()
    scores = [h["valid_uar"] for h in result.history]
    assert result.best_epoch == int(np.argmax(scores)) and result.best_score == max(scores)
    proba = predict_backbone(result.model, valid, batch_size=5)
    assert proba.shape == (12, 4) and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    assert score("uar", valid.y, proba.argmax(1)) == pytest.approx(result.best_score)  # best weights loaded
    # keep="last": every epoch is trained (no early stop) and the last epoch's weights are returned
    last = fit(patience=1, keep="last")
    assert [h["epoch"] for h in last.history] == [0, 1, 2]
    last_proba = predict_backbone(last.model, valid, batch_size=5)
    assert score("uar", valid.y, last_proba.argmax(1)) == pytest.approx(last.history[-1]["valid_uar"])


def test_ssl_backbone_trains_and_refuses_transcripts(tmp_path):
    from fairser.models.ssl import SSLClassifier

    path = save_tiny_ssl(tmp_path / "w2v", kind="wav2vec2", layer_norm_cnn=True)
    torch.manual_seed(0)
    model = SSLClassifier.from_pretrained(path, n_classes=4, finetune="lora", lora={"r": 2}, mlp_hidden=16)
    objective = build_objective("groupdro", n_domains=2, n_classes=4)
    cfg = BackboneConfig(name="ssl", path=path, finetune="lora", per_device_batch_size=5, epochs=1, lr=1e-2)
    train = _data(12, 4, modality="audio")
    result = fit_backbone(
        model=model, objective=objective, train=train, valid=_data(8, 5, modality="audio"), config=cfg, seed=0
    )
    assert result.global_step == 3 and all("q_max" in s for s in result.step_logs)
    assert not torch.allclose(objective.q, torch.full_like(objective.q, 0.25))  # Group DRO weights moved
    with pytest.raises(ValueError, match="reads audio only"):
        fit_backbone(
            model=SSLClassifier.from_pretrained(path, n_classes=4, finetune="top_k", top_k=1),
            objective=build_objective("erm", n_domains=2, n_classes=4),
            train=_data(12, 4),
            valid=_data(8, 5),
            config=cfg.model_copy(update={"finetune": "top_k"}),
            seed=0,
        )


def test_audio_files_are_read_and_missing_ones_named(tmp_path):
    import soundfile as sf

    from fairser.features.audio import AudioError

    paths = []
    for i, secs in enumerate((0.5, 1.25)):
        p = tmp_path / f"clip{i}.wav"
        sf.write(p, tone(secs, freq=200.0), 16000)
        paths.append(p)
    data = AudioDataset(audio=paths, y=[0, 1], domain=[0, 0], sensitive=[0, 1])
    assert data.durations.tolist() == [0.5, 1.25]
    assert [w.shape[0] for w in data.waveforms([1, 0])] == [20000, 8000]
    with pytest.raises(AudioError, match="nope.wav"):
        AudioDataset(audio=[tmp_path / "nope.wav"], y=[0], domain=[0], sensitive=[0])
    with pytest.raises(ValueError, match="row 0: modality 'audio\\+text' but no transcript"):
        AudioDataset(
            audio=paths, y=[0, 1], domain=[0, 0], sensitive=[0, 1], modalities=["audio+text", "audio"]
        )


def test_shipped_accelerate_configs_are_valid_launch_configs(monkeypatch):
    import accelerate.utils.launch as launch
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    monkeypatch.setattr(launch, "is_port_in_use", lambda port: False)  # a local socket probe, not under test

    def parsed(name):
        args = launch_command_parser().parse_args(
            [
                "--config_file",
                str(ROOT / "configs" / "accelerate" / f"{name}.yaml"),
                "-m",
                "fairser.scale",
                "benchmark",
            ]
        )
        return _validate_launch_command(args)

    args, _, _ = parsed("ddp")
    assert args.multi_gpu and args.mixed_precision == "bf16"
    assert prepare_multi_gpu_env(args)["ACCELERATE_MIXED_PRECISION"] == "bf16"
    args, _, _ = parsed("fsdp")
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_USE_ORIG_PARAMS"] == "true"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Qwen2DecoderLayer,Qwen2AudioEncoderLayer"
    import transformers.models.qwen2.modeling_qwen2 as q2
    import transformers.models.qwen2_audio.modeling_qwen2_audio as q2a

    assert hasattr(q2, "Qwen2DecoderLayer") and hasattr(q2a, "Qwen2AudioEncoderLayer")
    args, defaults, _ = parsed("deepspeed_zero2")
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    _, env = prepare_deepspeed_cmd_env(args)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"


def test_backbone_config_refuses_options_of_the_other_backbone_and_round_trips():
    with pytest.raises(ValueError, match="backbone 'ssl' does not take option\\(s\\) \\['mode'\\]"):
        BackboneConfig(name="ssl", path="/m", mode="head")
    with pytest.raises(ValueError, match="'top_k'"):
        BackboneConfig(name="qwen2_audio", path="/m", top_k=4)
    cfg = BackboneConfig(name="qwen2_audio", path="/m", mode="head", lora=None, per_device_batch_size=2)
    assert BackboneConfig.model_validate(cfg.model_dump(mode="json")) == cfg  # a full dump reloads
    with pytest.raises(ValueError, match="per_device_batch_size"):
        BackboneConfig(name="qwen2_audio", path="/m", per_device_batch_size=0)


# ------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_benchmark_end_to_end_with_tiny_qwen2_audio(tmp_path, capsys):
    from fairser.bench.runner import plan_runs, run_benchmark
    from fairser.data.labels import MELD_EMOTIONS
    from fairser.results import ResultsStore

    cfg = BenchmarkConfig.model_validate(_tiny_grid(tmp_path))
    table = run_benchmark(cfg, progress=False)

    out = tmp_path / "out"
    runs = plan_runs(cfg)
    assert len(runs) == 4  # {audio, audio+text} x {ERM, ERM-MinMaxGAP}
    rows = {r["run_id"]: r for r in ResultsStore(out / "results.jsonl").rows()}
    assert set(rows) == {r.run_id for r in runs} and all(r["status"] == "ok" for r in rows.values())
    text = (out / "table.md").read_text()
    assert "SYNTHETIC" in text
    for lang in ("en", "de"):
        for modality in ("audio", "audio+text"):
            assert f"| {lang} | {modality} |" in text
    assert {"ERM W-F1", "ERM-MinMaxGAP W-F1"} <= set(table.columns)
    manifest = pd.read_csv(tmp_path / "corpus" / "manifest.csv")
    n_test = int((manifest["split"] == "test").sum())
    for spec in runs:
        row = rows[spec.run_id]
        assert row["backbone"]["name"] == "qwen2_audio" and row["backbone"]["optimizer_steps"] >= 2
        assert row["backbone"]["parameters"]["trainable"] > 0
        pred = pd.read_csv(out / "runs" / spec.run_id / "predictions.csv")
        assert {"id", "y_true", "y_pred", "gender", "language", "modality", "speaker"} <= set(pred.columns)
        assert {f"prob_{e}" for e in MELD_EMOTIONS} <= set(pred.columns) and len(pred) == n_test
        assert set(pred["modality"]) == {spec.setting} and set(pred["language"]) == {"en", "de"}
        assert np.allclose(pred[[f"prob_{e}" for e in MELD_EMOTIONS]].sum(axis=1), 1.0, atol=1e-4)
        log = pd.read_csv(out / "runs" / spec.run_id / "train_log.csv")
        if spec.objective.name == "minmaxgap":
            assert {"lambda", "R"} <= set(log.columns) and row["final_lambda"] is not None
        adapter = out / "runs" / spec.run_id / "adapter"
        assert (adapter / "fairser_classifier.json").is_file() and (adapter / "lora_adapter").is_dir()
        assert not (out / "runs" / spec.run_id / "checkpoints").exists()  # removed once the run finished
    # the launcher entry point on one process: the same grid, already finished
    from fairser.scale.__main__ import main

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    capsys.readouterr()
    assert main(["benchmark", "--config", str(cfg_file), "--quiet"]) == 0
    assert "resuming: 4 of 4 runs already finished" in capsys.readouterr().out


def test_backbone_runs_train_on_inferred_groups(tmp_path):
    # IDI for a raw-audio backbone: genders inferred once per benchmark (F0 rule; k-means on cached eGeMAPS),
    # the group objective sees them, the evaluation keeps the true gender
    from fairser.bench.runner import run_benchmark
    from fairser.results import ResultsStore

    data = _tiny_grid(tmp_path)
    data["modalities"] = ["audio"]
    data["objectives"] = [
        {"name": "groupdro", "label": "IDI f0", "groups": {"source": "inferred", "method": "f0"}},
        # an absurd threshold: every speaker is inferred male, so every female training row changes group
        {
            "name": "minmaxgap",
            "label": "IDI all male",
            "groups": {"source": "inferred", "method": "f0", "f0_threshold": 5000},
        },
        {"name": "groupdro", "label": "IDI kmeans fill", "groups": {"source": "fill", "method": "kmeans"}},
    ]
    run_benchmark(BenchmarkConfig.model_validate(data), progress=False)

    out = tmp_path / "out"
    rows = {r["objective_label"]: r for r in ResultsStore(out / "results.jsonl").rows()}
    assert all(r["status"] == "ok" and r["backbone"]["name"] == "qwen2_audio" for r in rows.values())
    manifest = pd.read_csv(tmp_path / "corpus" / "manifest.csv")
    train = manifest[(manifest["split"] == "train") & manifest["language"].isin(["en", "de"])]
    n_female = int((train["gender"] == "female").sum())
    all_male = rows["IDI all male"]["groups"]
    assert all_male["changed_train_rows"] == n_female and n_female > 0
    assert all_male["agreement_train"]["accuracy"] == pytest.approx(1 - n_female / len(train))
    assert {"agreement_train", "agreement_all"} <= set(rows["IDI f0"]["groups"])
    assert rows["IDI kmeans fill"]["groups"]["changed_train_rows"] == 0  # every training row has a gender
    for run in (out / "runs").iterdir():  # evaluation always uses the true gender
        assert set(pd.read_csv(run / "predictions.csv")["gender"]) == {"male", "female"}
    notes = (out / "benchmark.json").read_text()
    assert "IDI f0: agreement" in notes and "IDI kmeans: agreement" in notes


@pytest.mark.parametrize("name", ["lff", "covada", "cfa"])
def test_backbone_runs_refuse_staged_methods_by_name(name):
    from fairser.run import PreparedData, plan_runs
    from fairser.run.backbone import BackboneBackend

    data = yaml.safe_load((ROOT / "configs" / "tiny_qwen2_audio.yaml").read_text())
    data["objectives"] = [{"name": name}, {"name": "groupdro"}]
    cfg = BenchmarkConfig.model_validate(data)
    staged, plain = (s for s in plan_runs(cfg) if s.setting == "audio")
    prepared = PreparedData(
        manifest=pd.DataFrame(), audio=np.zeros((0, 0)), text=None, labels=("a",), synthetic=True, source=""
    )
    backend = BackboneBackend(prepared, cfg)
    with pytest.raises(ValueError, match=rf"objective '{name}' is a staged method"):
        backend.check(staged)
    backend.check(plain)  # a per-batch objective runs with a backbone
