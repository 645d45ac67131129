"""Qwen2-Audio + LoRA classifier on a tiny random Qwen2-Audio built and saved in the test (no downloads)."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="transformers is not installed (pip install transformers peft)")
pytest.importorskip("peft", reason="peft is not installed (pip install peft)")

from assets.offline import NetworkAccessError, block_network, single_thread  # noqa: E402,F401  (fixtures)
from assets.tiny_models import TINY_LABELS, save_tiny_qwen2_audio, tone  # noqa: E402
from fairser.models.qwen2_audio import Qwen2AudioClassifier  # noqa: E402
from fairser.objectives import OBJECTIVES, GroupBatch, build_objective  # noqa: E402

pytestmark = pytest.mark.usefixtures("block_network", "single_thread")

AUDIOS = [tone(0.4 + 0.15 * i, freq=180.0 + 70 * i, seed=i) for i in range(4)]
TEXTS = ["hello there", "okay yes", "I am fine thanks", "no"]
Y = torch.tensor([0, 1, 2, 3])
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen2_audio(tmp_path_factory.mktemp("qwen2_audio") / "tiny-qwen2-audio")


def _load(tiny_dir, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("lora", LORA)
    return Qwen2AudioClassifier.from_pretrained(tiny_dir, labels=TINY_LABELS, **kwargs)


def _texts(modality):
    return [None] * 4 if modality == "audio" else TEXTS


def test_network_is_blocked_in_these_tests():
    with pytest.raises(NetworkAccessError):
        socket.create_connection(("127.0.0.1", 9))


@pytest.mark.parametrize("path", ["does/not/exist", "Qwen/Qwen2-Audio-7B-Instruct"])
def test_missing_directory_is_a_clear_error_without_download(tmp_path, path):
    missing = tmp_path / path
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Qwen2AudioClassifier.from_pretrained(missing, labels=TINY_LABELS)
    # a bare hub id is never resolved remotely either (NetworkAccessError would surface otherwise)
    with pytest.raises(FileNotFoundError, match="local directories only"):
        Qwen2AudioClassifier.from_pretrained(path, labels=TINY_LABELS)


def test_directory_without_config_or_of_another_model_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        Qwen2AudioClassifier.from_pretrained(tmp_path / "empty", labels=TINY_LABELS)
    (tmp_path / "w2v").mkdir()
    (tmp_path / "w2v" / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ValueError, match="wav2vec2"):
        Qwen2AudioClassifier.from_pretrained(tmp_path / "w2v", labels=TINY_LABELS)


@pytest.mark.parametrize("objective", ["erm", "minmaxgap"])
@pytest.mark.parametrize("mode", ["label_tokens", "head"])
@pytest.mark.parametrize("modality", ["audio", "audio+text"])
def test_lora_steps_train_adapters_only(tiny_dir, mode, objective, modality):
    if objective not in OBJECTIVES:
        pytest.skip(f"objective {objective!r} is not registered yet")
    clf = _load(tiny_dir, mode=mode)
    model = clf.model
    lora = {n: p.detach().clone() for n, p in clf.named_parameters() if "lora_" in n}
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    assert lora and all("language_model" in n for n in lora)
    assert not any(p.requires_grad for p in model.model.audio_tower.parameters())
    assert not any(p.requires_grad for p in model.model.multi_modal_projector.parameters())
    head = None if clf.fairser_cls_head is None else clf.fairser_cls_head.weight.detach().clone()

    obj = build_objective(objective, n_domains=2, n_classes=len(TINY_LABELS))
    opt = torch.optim.AdamW(list(clf.trainable_parameters()) + list(obj.parameters()), lr=5e-2)
    clf.train()
    domain = torch.full((4,), 0 if modality == "audio" else 1)
    gender = torch.tensor([0, 1, 0, 1])
    for _ in range(3):
        out = clf(audios=AUDIOS, texts=_texts(modality), labels=Y)
        assert out.losses.shape == (4,) and out.logits.shape == (4, 4) and out.embedding.shape == (4, 64)
        batch = GroupBatch(
            losses=out.losses,
            domain=domain,
            sensitive=gender,
            logits=out.logits,
            y=Y,
            embedding=out.embedding,
        )
        loss = obj(batch).loss
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()

    assert any(not torch.equal(p, lora[n]) for n, p in clf.named_parameters() if n in lora)
    changed = [n for n, p in model.named_parameters() if n in base and not torch.equal(p, base[n])]
    assert changed == []
    if head is not None:
        assert not torch.equal(clf.fairser_cls_head.weight, head)


def test_loss_is_per_sample_cross_entropy(tiny_dir):
    clf = _load(tiny_dir, mode="head").eval()
    with torch.no_grad():
        out = clf(audios=AUDIOS, texts=TEXTS, labels=Y)
    expected = -torch.log_softmax(out.logits, -1)[torch.arange(4), Y]
    torch.testing.assert_close(out.losses, expected)


def test_label_token_scores_equal_raw_model_logits(tiny_dir):
    clf = _load(tiny_dir, mode="label_tokens")
    opt = torch.optim.AdamW(clf.trainable_parameters(), lr=5e-2)
    for _ in range(2):  # make the adapters non-trivial (LoRA B starts at zero)
        clf(audios=AUDIOS, texts=TEXTS, labels=Y).losses.mean().backward()
        opt.step()
        opt.zero_grad()
    clf.eval()
    modalities = ["audio", "audio+text", "audio+text", "audio"]
    pred = clf.predict(audios=AUDIOS, texts=TEXTS, modalities=modalities, batch_size=4)

    # independent computation: the raw model's full-vocabulary logits at each sample's last prompt token,
    # one sample at a time (no padding), read at the first token of each label word
    tok = clf.processor.tokenizer
    first = [tok.encode(w, add_special_tokens=False)[0] for w in TINY_LABELS]
    assert len(set(first)) == len(first)
    raw = []
    with torch.no_grad():
        for i in range(4):
            prompt = clf.build_prompts(n=1, texts=[TEXTS[i]], modalities=[modalities[i]])
            inputs = clf.processor(text=prompt, audio=[AUDIOS[i]], sampling_rate=16000, return_tensors="pt")
            logits = clf.backbone(**inputs).logits  # PeftModel -> Qwen2AudioForConditionalGeneration
            raw.append(logits[0, -1, first])
    raw = torch.stack(raw)
    np.testing.assert_array_equal(pred.y_pred, raw.argmax(-1).numpy())
    np.testing.assert_allclose(pred.proba, raw.softmax(-1).numpy(), atol=1e-5)
    assert pred.labels == TINY_LABELS


def test_head_mode_batch_equals_single_samples(tiny_dir):
    clf = _load(tiny_dir, mode="head").eval()
    with torch.no_grad():
        texts = [None, TEXTS[1], None, TEXTS[3]]
        batch = clf(audios=AUDIOS, texts=texts)
        single = torch.cat([clf(audios=[a], texts=[t]).logits for a, t in zip(AUDIOS, texts, strict=True)])
    torch.testing.assert_close(batch.logits, single, atol=1e-5, rtol=1e-4)


def test_label_first_tokens_must_be_distinct(tiny_dir):
    with pytest.raises(ValueError, match="'xq1' and 'xq2' both start"):
        _load(tiny_dir, mode="label_tokens", label_words=["neutral", "joy", "xq1", "xq2"])
    # the head mode does not score label tokens, so the same words are fine there
    assert _load(tiny_dir, mode="head", label_words=["neutral", "joy", "xq1", "xq2"]).label_token_ids is None


def test_prompts_hold_labels_and_transcript_only_for_audio_text(tiny_dir):
    clf = _load(tiny_dir, lora=None)
    audio_only, with_text = clf.build_prompts(
        n=2, texts=["secret words", "hello there"], modalities=["audio", "audio+text"]
    )
    for prompt in (audio_only, with_text):
        assert prompt.count("<|audio_bos|><|AUDIO|><|audio_eos|>") == 1
        assert "neutral, joy, sadness, anger" in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
    assert "secret words" not in audio_only
    assert 'Transcript: "hello there"' in with_text
    inferred = clf.build_prompts(n=2, texts=[None, "  "])
    assert all("Transcript" not in p for p in inferred)


def test_bad_inputs_are_named(tiny_dir):
    clf = _load(tiny_dir, lora=None)
    with pytest.raises(ValueError, match="sample 1: modality 'audio\\+text' but no transcript"):
        clf(audios=AUDIOS[:2], texts=["hi", None], modalities=["audio", "audio+text"])
    with pytest.raises(ValueError, match="modality must be one of"):
        clf(audios=AUDIOS[:1], texts=["hi"], modalities=["text"])
    with pytest.raises(ValueError, match="8000 Hz"):
        clf(audios=AUDIOS[:1], sampling_rate=8000)
    with pytest.raises(ValueError, match="special token"):
        clf(audios=AUDIOS[:1], texts=["hi <|AUDIO|>"])
    with pytest.raises(ValueError, match="audio 0 must be a non-empty mono"):
        clf(audios=[np.zeros((2, 100), dtype=np.float32)])
    with pytest.raises(ValueError, match="labels must lie in"):
        clf(audios=AUDIOS[:1], labels=torch.tensor([7]))
    with pytest.raises(ValueError, match="mode must be one of"):
        _load(tiny_dir, mode="generate")


def test_very_short_clip_is_padded_not_crashed(tiny_dir):
    clf = _load(tiny_dir, lora=None).eval()
    with torch.no_grad():
        out = clf(audios=[np.zeros(10, dtype=np.float32), AUDIOS[0]], labels=Y[:2])
    assert torch.isfinite(out.losses).all()


def test_audio_encoder_can_be_unfrozen(tiny_dir):
    clf = _load(tiny_dir, mode="head", train_audio_encoder=True, train_projector=True)
    tower = clf.model.model.audio_tower
    trainable = {n for n, p in tower.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in tower.named_parameters()} - {"embed_positions.weight"}
    before = tower.layers[0].fc1.weight.detach().clone()
    opt = torch.optim.SGD(clf.trainable_parameters(), lr=0.5)
    clf(audios=AUDIOS, texts=TEXTS, labels=Y).losses.mean().backward()
    opt.step()
    assert not torch.equal(tower.layers[0].fc1.weight, before)


def test_gradient_checkpointing_gives_the_same_losses_and_gradients(tiny_dir):
    grads = []
    for ckpt in (False, True):
        clf = _load(tiny_dir, mode="head", gradient_checkpointing=ckpt)
        assert clf.model.is_activation_checkpointing is ckpt
        clf.train()
        out = clf(audios=AUDIOS[:2], texts=TEXTS[:2], labels=Y[:2])
        out.losses.sum().backward()
        grads.append((out.losses.detach(), clf.fairser_cls_head.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


@pytest.mark.parametrize("mode", ["label_tokens", "head"])
def test_saved_adapter_reloads_to_the_same_predictions(tiny_dir, tmp_path, mode):
    clf = _load(tiny_dir, mode=mode)
    opt = torch.optim.AdamW(clf.trainable_parameters(), lr=5e-2)
    for _ in range(2):
        clf(audios=AUDIOS, texts=TEXTS, labels=Y).losses.mean().backward()
        opt.step()
        opt.zero_grad()
    before = clf.predict(audios=AUDIOS, texts=TEXTS)
    clf.save_adapter(tmp_path / "adapter")
    torch.manual_seed(123)  # a different random head init must not matter
    again = Qwen2AudioClassifier.from_pretrained(tiny_dir, labels=TINY_LABELS, adapter=tmp_path / "adapter")
    assert again.mode == mode and again.lora.r == LORA["r"]
    after = again.predict(audios=AUDIOS, texts=TEXTS)
    np.testing.assert_allclose(after.proba, before.proba, atol=1e-6)
    fresh = _load(tiny_dir, mode=mode).predict(audios=AUDIOS, texts=TEXTS)
    assert not np.allclose(fresh.proba, before.proba, atol=1e-6)
    with pytest.raises(ValueError, match="different"):
        Qwen2AudioClassifier.from_pretrained(
            tiny_dir, labels=("a", "b", "c", "d"), adapter=tmp_path / "adapter", label_words=TINY_LABELS
        )


def test_the_reproduction_guide_training_loop_runs(tmp_path):
    """docs/reproduce_paper.md §5 (fairser.scale) trains, predicts and reloads as written (tiny model, tone clips)."""
    import re
    from pathlib import Path

    import pandas as pd
    import soundfile as sf

    from fairser.data.labels import MELD_EMOTIONS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "reproduce_paper.md").read_text(encoding="utf-8")
    block = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "def train_qwen2_audio" in b][0]
    namespace: dict = {}
    exec(block.split("\n\ndf = read_manifest")[0], namespace)  # the imports and the function, not the run

    tiny = save_tiny_qwen2_audio(tmp_path / "tiny", words=MELD_EMOTIONS, vocab_size=700)
    rows = []
    for i in range(16):
        path = tmp_path / f"utt{i}.wav"
        sf.write(path, tone(0.3 + 0.05 * i, freq=120.0 + 20 * i, seed=i), 16000)
        rows.append(
            {
                "id": f"u{i}",
                "audio_path": str(path),
                "transcript": TEXTS[i % 4],
                "emotion": MELD_EMOTIONS[i % 4],
                "gender": ("male", "female")[i % 2],
                "language": ("en", "de")[(i // 2) % 2],
                "speaker": f"s{i % 4}",
                "corpus": "tones",
                "split": "train" if i < 12 else "valid",  # the guide selects on the valid split
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["root"] = str(tmp_path)
    clf = namespace["train_qwen2_audio"](
        df,
        model_dir=tiny,
        languages=("en", "de"),
        epochs=1,
        batch_size=8,
        precision="fp32",
        device="cpu",
        modality="audio+text",
        params={"estimate": "ema"} if "minmaxgap" in OBJECTIVES else None,
        objective="minmaxgap" if "minmaxgap" in OBJECTIVES else "erm",
    )
    assert any((p != 0).any() for n, p in clf.named_parameters() if "lora_B" in n)  # adapters were trained
    clf.save_adapter(tmp_path / "run")
    again = Qwen2AudioClassifier.from_pretrained(tiny, labels=MELD_EMOTIONS, adapter=tmp_path / "run")
    audios = [namespace["load_audio"](p) for p in df.audio_path]
    kw = {"texts": list(df.transcript), "modalities": ["audio+text"] * len(df)}
    np.testing.assert_allclose(
        again.predict(audios=audios, **kw).proba, clf.predict(audios=audios, **kw).proba, atol=1e-6
    )


def test_bf16_base_keeps_fp32_adapters_and_losses(tiny_dir):
    clf = _load(tiny_dir, precision="bf16", gradient_checkpointing=True)
    assert clf.model.dtype == torch.bfloat16
    assert {p.dtype for p in clf.trainable_parameters()} == {torch.float32}
    out = clf(audios=AUDIOS, texts=TEXTS, labels=Y)
    assert out.losses.dtype == torch.float32 and torch.isfinite(out.losses).all()
    out.losses.mean().backward()
    grads = [p.grad for p in clf.trainable_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_encode_keeps_log_mels_float32_under_bf16_autocast(tiny_dir):
    # accelerate's bf16 wraps the whole forward in autocast; the Whisper log-mels must not be computed in bf16
    clf = _load(tiny_dir)
    reference = clf.encode(audios=AUDIOS, texts=TEXTS)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        batch = clf.encode(audios=AUDIOS, texts=TEXTS)
        out = clf(audios=AUDIOS, texts=TEXTS, labels=Y)
    assert batch["input_features"].dtype == torch.float32
    torch.testing.assert_close(batch["input_features"], reference["input_features"])
    assert torch.isfinite(out.losses).all()
