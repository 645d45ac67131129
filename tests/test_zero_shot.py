"""Zero-shot label scoring of audio LLMs (Qwen2-Audio, DeSTA2.5-Audio): hand computations from raw logits,
contextual calibration, prompts per language, the released DeSTA2.5 checkpoint layout, and zero-shot runs
through ``fairser benchmark`` (tiny random models built in the test; nothing is downloaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("transformers", reason="transformers is not installed (pip install transformers peft)")
pytest.importorskip("peft", reason="peft is not installed (pip install peft)")

from assets.offline import block_network, single_thread  # noqa: E402,F401  (fixtures)
from assets.tiny_models import TINY_LABELS, save_tiny_desta25, save_tiny_qwen2_audio, tone  # noqa: E402
from fairser.config import BackboneConfig, BenchmarkConfig  # noqa: E402
from fairser.models.desta25 import DeSTA25Classifier, fairser_to_released, released_to_fairser  # noqa: E402
from fairser.models.label_scoring import CONTENT_FREE_TEXT  # noqa: E402
from fairser.models.qwen2_audio import Qwen2AudioClassifier  # noqa: E402
from fairser.objectives import GroupBatch, build_objective  # noqa: E402

pytestmark = pytest.mark.usefixtures("block_network", "single_thread")

AUDIOS = [tone(0.4 + 0.15 * i, freq=180.0 + 70 * i, seed=i) for i in range(4)]
TEXTS = [None, "hello there", None, "okay yes"]
Y = torch.tensor([0, 1, 2, 3])


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return save_tiny_qwen2_audio(tmp_path_factory.mktemp("zs_qwen") / "tiny-qwen2-audio")


@pytest.fixture(scope="module")
def desta_dir(tmp_path_factory):
    return save_tiny_desta25(tmp_path_factory.mktemp("zs_desta") / "tiny-desta25")


def _qwen(path, **kw):
    torch.manual_seed(0)
    return Qwen2AudioClassifier.from_pretrained(path, labels=TINY_LABELS, lora=None, **kw)


def _desta(path, **kw):
    torch.manual_seed(0)
    kw.setdefault("lora", None)
    return DeSTA25Classifier.from_pretrained(path, labels=TINY_LABELS, **kw)


def _raw_qwen_label_logits(clf, *, audio, text, modality, language=None):
    """The full-vocabulary logits of the raw model at the last prompt token, read at the label words' first tokens."""
    tok = clf.processor.tokenizer
    first = [tok.encode(w, add_special_tokens=False)[0] for w in TINY_LABELS]
    prompt = clf.build_prompts(n=1, texts=[text], modalities=[modality], languages=[language])
    inputs = clf.processor(text=prompt, audio=[audio], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return clf.model(**inputs).logits[0, -1, first]


def test_qwen_zero_shot_scores_equal_a_hand_computation_from_raw_logits(qwen_dir):
    clf = _qwen(qwen_dir)
    modalities = ["audio", "audio+text", "audio", "audio+text"]
    pred = clf.predict(audios=AUDIOS, texts=TEXTS, modalities=modalities, batch_size=4)
    raw = torch.stack(
        [
            _raw_qwen_label_logits(clf, audio=a, text=t, modality=m)
            for a, t, m in zip(AUDIOS, TEXTS, modalities, strict=True)
        ]
    )
    # the C-way softmax over the C label-word logits, computed by hand
    expected = torch.exp(raw - raw.max(-1, keepdim=True).values)
    expected = expected / expected.sum(-1, keepdim=True)
    np.testing.assert_allclose(pred.proba, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(pred.y_pred, raw.argmax(-1).numpy())


def test_contextual_calibration_subtracts_the_content_free_scores(qwen_dir):
    plain = _qwen(qwen_dir, prompt_language="utterance")
    calibrated = _qwen(qwen_dir, prompt_language="utterance", calibration="contextual")
    languages = ["en", "de", "de", "en"]
    modalities = ["audio", "audio+text", "audio", "audio+text"]
    with torch.no_grad():
        raw = plain(audios=AUDIOS, texts=TEXTS, modalities=modalities, languages=languages).logits
        out = calibrated(audios=AUDIOS, texts=TEXTS, modalities=modalities, languages=languages, labels=Y)
    for i in range(4):
        # the content-free input by hand: 1 s of silence (and "N/A" as the transcript) under sample i's prompt
        cf = _raw_qwen_label_logits(
            plain,
            audio=np.zeros(16000, dtype=np.float32),
            text=CONTENT_FREE_TEXT if modalities[i] == "audio+text" else None,
            modality=modalities[i],
            language=languages[i],
        )
        expected = raw[i].log_softmax(-1) - cf.log_softmax(-1)
        torch.testing.assert_close(out.logits[i], expected, atol=1e-5, rtol=1e-5)
    # the losses are the cross-entropy of the calibrated scores
    torch.testing.assert_close(out.losses, torch.nn.functional.cross_entropy(out.logits, Y, reduction="none"))
    # four (language, modality) prompts, four content-free inputs, each computed once
    assert set(calibrated._content_free) == {
        ("en", "audio"),
        ("de", "audio+text"),
        ("de", "audio"),
        ("en", "audio+text"),
    }


def test_prompts_follow_the_utterance_language_or_stay_english(qwen_dir):
    english = _qwen(qwen_dir)
    local = _qwen(qwen_dir, prompt_language="utterance", instructions={"xx": "Emotion? {labels}"})
    en_de = english.build_prompts(n=2, languages=["en", "de"])
    assert en_de[0] == en_de[1] and "What is the emotion" in en_de[1]
    de, xx = local.build_prompts(n=2, languages=["de", "xx"])
    assert "Welche Emotion" in de and "neutral, joy, sadness, anger" in de
    assert "Emotion? neutral, joy, sadness, anger" in xx
    with pytest.raises(ValueError, match="no instruction for language 'qq'"):
        local.build_prompts(n=1, languages=["qq"])
    with pytest.raises(ValueError, match="prompt_language='utterance' only"):
        _qwen(qwen_dir, instructions={"de": "{labels}"})
    with pytest.raises(ValueError, match="needs mode='label_tokens'"):
        _qwen(qwen_dir, mode="head", calibration="contextual")


# ------------------------------------------------------------------------------------------ DeSTA2.5
def test_desta_released_layout_round_trips_and_refuses_mismatches(desta_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    saved = load_file(desta_dir / "model.safetensors")
    # the released names, as DeSTA2.5-Audio's model.safetensors spells them
    assert {
        "perception.connector.layer_prompts.0",
        "perception.connector.layer_weights",
        "perception.connector.proj.0.weight",
        "perception.connector.proj.1.weight",
        "perception.connector.qformer.layer.0.crossattention.self.query.weight",
    } <= set(saved)
    mapped = released_to_fairser(saved)
    assert "queries.0" in mapped and "norm.weight" in mapped and "proj.weight" in mapped
    assert set(fairser_to_released(mapped)) == set(saved)
    clf = _desta(desta_dir)
    for name, value in mapped.items():  # the loaded adapter holds exactly the checkpoint's weights
        torch.testing.assert_close(clf.connector.state_dict()[name], value)

    def broken(edit) -> None:
        bad = tmp_path / "bad"
        if not bad.exists():
            import shutil

            shutil.copytree(desta_dir, bad)
        state = dict(saved)
        edit(state)
        save_file(state, bad / "model.safetensors")
        return bad

    bad = broken(lambda s: s.pop("perception.connector.proj.1.bias"))
    with pytest.raises(ValueError, match=r"missing \['perception.connector.proj.1.bias'\]"):
        _desta(bad)
    bad = broken(lambda s: s.update({"perception.connector.extra.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"unexpected \['perception.connector.extra.weight'\]"):
        _desta(bad)
    bad = broken(lambda s: s.update({"perception.connector.layer_weights": torch.zeros(3, 4)}))
    with pytest.raises(ValueError, match="shape mismatch.*layer_weights"):
        _desta(bad)
    bad = broken(lambda s: s.update({"llm_model.model.embed_tokens.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match="outside 'perception.connector.'.*llm_model.model.embed_tokens"):
        _desta(bad)
    (tmp_path / "nollm").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "nollm" / name).write_bytes((desta_dir / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="no local LLM"):
        _desta(tmp_path / "nollm")
    cfg = json.loads((desta_dir / "config.json").read_text())
    (tmp_path / "nollm" / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(ValueError, match="not desta25"):
        _desta(tmp_path / "nollm")


def test_desta_label_scores_equal_a_hand_computation_from_the_llm(desta_dir):
    clf = _desta(desta_dir, whisper_transcript=False, prompt_language="utterance")
    modalities = ["audio", "audio+text", "audio", "audio+text"]
    languages = ["en", "de", "de", "en"]
    pred = clf.predict(audios=AUDIOS, texts=TEXTS, modalities=modalities, languages=languages, batch_size=4)
    tok = clf.tokenizer
    first = [tok.encode(w, add_special_tokens=False)[0] for w in TINY_LABELS]
    raw = []
    with torch.no_grad():
        for i in range(4):  # one sample at a time, no padding, the LLM's full-vocabulary logits
            feats = clf.feature_extractor([AUDIOS[i]], sampling_rate=16000, return_tensors="pt")[
                "input_features"
            ]
            audio = clf._audio_embeddings(feats)[0]
            before, after = clf.prompt_parts(language=languages[i])
            transcript = TEXTS[i] if modalities[i] == "audio+text" else ""
            pieces = [
                tok(x, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
                for x in (before, transcript, after)
            ]
            emb = clf.llm.get_input_embeddings()
            seq = torch.cat([emb(pieces[0]), audio, emb(pieces[1]), emb(pieces[2])])[None]
            raw.append(clf.llm(inputs_embeds=seq).logits[0, -1, first])
    raw = torch.stack(raw)
    np.testing.assert_allclose(pred.proba, raw.softmax(-1).numpy(), atol=1e-5)
    assert "<|start_header_id|>assistant" in clf.prompt_parts(language="en")[1]
    assert "Welche Emotion" in clf.prompt_parts(language="de")[1]


def test_desta_whisper_transcribes_audio_only_clips_once(desta_dir):
    clf = _desta(desta_dir, calibration="contextual")
    with torch.no_grad():
        out = clf(audios=AUDIOS[:2], texts=[None, None])
        again = clf(audios=AUDIOS[:2], texts=[None, None])
    assert len(clf._transcripts) == 3  # two clips and the content-free silence, cached
    torch.testing.assert_close(out.logits, again.logits)


@pytest.mark.parametrize("objective", ["erm", "minmaxgap"])
def test_desta_lora_trains_adapters_only_and_reloads(desta_dir, tmp_path, objective):
    clf = _desta(desta_dir, lora={"r": 4, "alpha": 8, "dropout": 0.0}, whisper_transcript=False)
    frozen = {n: p.detach().clone() for n, p in clf.named_parameters() if "lora_" not in n}
    obj = build_objective(objective, n_domains=2, n_classes=4)
    opt = torch.optim.AdamW(list(clf.trainable_parameters()) + list(obj.parameters()), lr=5e-2)
    clf.train()
    for _ in range(2):
        out = clf(audios=AUDIOS, texts=TEXTS, labels=Y)
        batch = GroupBatch(
            losses=out.losses,
            domain=torch.tensor([0, 1, 0, 1]),
            sensitive=torch.tensor([0, 0, 1, 1]),
            logits=out.logits,
            y=Y,
            embedding=out.embedding,
        )
        loss = obj(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in clf.named_parameters() if n in frozen)
    assert any((p != 0).any() for n, p in clf.named_parameters() if "lora_B" in n)
    assert not clf.connector.training and not clf.whisper.training  # frozen parts run without dropout
    before = clf.predict(audios=AUDIOS, texts=TEXTS)
    clf.save_adapter(tmp_path / "adapter")
    again = DeSTA25Classifier.from_pretrained(
        desta_dir, labels=TINY_LABELS, adapter=tmp_path / "adapter", whisper_transcript=False
    )
    np.testing.assert_allclose(again.predict(audios=AUDIOS, texts=TEXTS).proba, before.proba, atol=1e-6)


# ------------------------------------------------------------------------------------- config and e2e
def test_zero_shot_config_is_validated():
    base = {"name": "qwen2_audio", "path": "/m", "lora": None}
    with pytest.raises(ValueError, match="needs mode: label_tokens"):
        BackboneConfig(**base, zero_shot=True, mode="head")
    with pytest.raises(ValueError, match="drop backbone.lora"):
        BackboneConfig(name="qwen2_audio", path="/m", zero_shot=True, lora={"r": 4})
    with pytest.raises(ValueError, match="applies to zero-shot scoring"):
        BackboneConfig(**base, calibration="contextual")
    with pytest.raises(ValueError, match="need backbone.prompt_language: utterance"):
        BackboneConfig(**base, instructions={"de": "{labels}"})
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['whisper_transcript'\]"):
        BackboneConfig(**base, whisper_transcript=False)
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['zero_shot'\]"):
        BackboneConfig(name="ssl", path="/m", zero_shot=True)
    bb = {**base, "zero_shot": True}
    with pytest.raises(ValueError, match="one objective named zero_shot and one seed"):
        BenchmarkConfig(backbone=bb, seeds=[0])
    with pytest.raises(ValueError, match="one objective named zero_shot and one seed"):
        BenchmarkConfig(backbone=bb, objectives=[{"name": "zero_shot"}], seeds=[0, 1])
    with pytest.raises(ValueError, match="needs an audio LLM backbone with backbone.zero_shot"):
        BenchmarkConfig(objectives=[{"name": "zero_shot"}])
    ok = BenchmarkConfig(backbone=bb, objectives=[{"name": "zero_shot", "label": "Zero-shot"}], seeds=[0])
    assert BenchmarkConfig.model_validate(ok.model_dump(mode="json")) == ok


@pytest.mark.parametrize("name", ["qwen2_audio", "desta25"])
def test_zero_shot_benchmark_goes_into_the_table_and_report(tmp_path, name):
    import pandas as pd

    from fairser.bench.runner import plan_runs, run_benchmark
    from fairser.data.labels import MELD_EMOTIONS
    from fairser.report import build_report
    from fairser.results import ResultsStore

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    cfg_file = (
        root
        / "configs"
        / ("tiny_qwen2_audio_zero_shot.yaml" if name == "qwen2_audio" else "tiny_desta25_zero_shot.yaml")
    )
    data = yaml.safe_load(cfg_file.read_text())
    build = save_tiny_qwen2_audio if name == "qwen2_audio" else save_tiny_desta25
    model_dir = build(tmp_path / "model", words=MELD_EMOTIONS, vocab_size=520)
    data["output_dir"] = str(tmp_path / "out")
    data["corpus"]["path"] = str(tmp_path / "corpus")
    data["corpus"]["synth"]["utterances_per_emotion"] = 1
    data["features"] = {"cache_dir": str(tmp_path / "cache"), "n_jobs": 1}
    data["backbone"]["path"] = str(model_dir)
    data["evaluation"] = {"n_boot": 20, "n_perm": 20, "min_samples": 3}
    cfg = BenchmarkConfig.model_validate(data)
    table = run_benchmark(cfg, progress=False)

    out = tmp_path / "out"
    runs = plan_runs(cfg)
    assert [r.objective.name for r in runs] == ["zero_shot", "zero_shot"]
    rows = {r["run_id"]: r for r in ResultsStore(out / "results.jsonl").rows()}
    assert set(rows) == {r.run_id for r in runs}
    n_test = int((pd.read_csv(tmp_path / "corpus" / "manifest.csv")["split"] == "test").sum())
    for spec in runs:
        row = rows[spec.run_id]
        assert row["status"] == "ok" and row["epochs_run"] == 0 and row["backbone"]["optimizer_steps"] == 0
        assert row["backbone"]["name"] == name and row["backbone"]["parameters"]["trainable"] == 0
        assert row["zero_shot"]["prompt_language"] == data["backbone"]["prompt_language"]
        assert row["zero_shot"]["calibration"] == data["backbone"]["calibration"]
        pred = pd.read_csv(out / "runs" / spec.run_id / "predictions.csv")
        assert len(pred) == n_test and set(pred["language"]) == {"en", "de"}
        assert np.allclose(pred[[f"prob_{e}" for e in MELD_EMOTIONS]].sum(axis=1), 1.0, atol=1e-4)
        assert not (out / "runs" / spec.run_id / "adapter").exists()  # nothing was trained
    assert "Zero-shot W-F1" in table.columns
    assert "| en | audio |" in (out / "table.md").read_text()
    report = build_report(out)
    assert report is not None

    # `fairser predict CONFIG INPUT`: the same scores for the test split, from the config alone
    from typer.testing import CliRunner

    from fairser.cli import app

    cfg_path = tmp_path / "zero_shot.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(
        app,
        ["predict", str(cfg_path), str(tmp_path / "corpus" / "manifest.csv"), "--split", "test", "-q"]
        + ["--out", str(tmp_path / "predict.csv")],
    )
    assert res.exit_code == 0, res.output
    again = pd.read_csv(tmp_path / "predict.csv")
    probs = [f"prob_{e}" for e in MELD_EMOTIONS]
    for spec in runs:
        bench = pd.read_csv(out / "runs" / spec.run_id / "predictions.csv")
        mine = again[again["modality"] == bench["modality"].iloc[0]].set_index("id").loc[bench["id"]]
        assert np.allclose(mine[probs].to_numpy(), bench[probs].to_numpy(), atol=1e-5)
        assert (mine["y_pred"].to_numpy() == bench["y_pred"].to_numpy()).all()


def test_desta_trains_through_the_backbone_loop_with_minmaxgap(desta_dir):
    """The benchmark's path: the config builds DeSTA2.5 (build_backbone) and fit_backbone trains its LoRA."""
    from fairser.run.backbone import build_backbone
    from fairser.scale.data import AudioDataset
    from fairser.scale.loop import fit_backbone, predict_backbone

    def data(n, seed):
        return AudioDataset(
            audio=[tone(0.3 + 0.05 * i, freq=150.0 + 40 * (i % 4), seed=seed * 10 + i) for i in range(n)],
            y=np.arange(n) % 4,
            domain=(np.arange(n) // 4) % 2,
            sensitive=np.arange(n) % 2,
            texts=["hello there", "okay yes"] * (n // 2),
            modalities=["audio+text"] * n,
            languages=["en", "de"] * (n // 2),
        )

    cfg = BackboneConfig(
        name="desta25",
        path=desta_dir,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        prompt_language="utterance",
        per_device_batch_size=6,
        epochs=1,
        lr=1e-2,
        eval_batch_size=4,
        mixed_precision="no",
    )
    torch.manual_seed(0)
    model = build_backbone(cfg, labels=TINY_LABELS)
    assert isinstance(model, DeSTA25Classifier) and model.prompt_language == "utterance"
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    train, valid = data(12, 0), data(4, 1)
    objective = build_objective("minmaxgap", n_domains=2, n_classes=4)
    result = fit_backbone(model=model, objective=objective, train=train, valid=valid, config=cfg, seed=0)
    assert result.global_step == 2 and all("lambda" in s for s in result.step_logs)
    after = dict(result.model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in frozen.items())
    proba = predict_backbone(result.model, valid, batch_size=4)
    assert proba.shape == (4, 4) and np.allclose(proba.sum(1), 1.0, atol=1e-5)
