"""Memory planner: parameter counts from config dimensions must equal the real built model's."""

from __future__ import annotations

import json

import pytest

from fairser.models.plan import (
    PRESETS,
    Plan,
    Qwen2AudioDims,
    audio_token_count,
    count_parameters,
    format_plan_table,
    lora_parameter_count,
    plan_memory,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; avoids spin-waiting on a loaded shared CPU
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("peft", reason="peft is not installed")
    from assets.tiny_models import save_tiny_qwen2_audio

    return save_tiny_qwen2_audio(tmp_path_factory.mktemp("plan") / "tiny")


def test_tiny_counts_equal_the_built_model(tiny_dir):
    from transformers import Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_dir, local_files_only=True)
    parts = count_parameters(Qwen2AudioDims.from_config(tiny_dir))
    assert parts["total"] == sum(p.numel() for p in model.parameters())
    assert parts["audio_encoder"] == sum(p.numel() for p in model.model.audio_tower.parameters())
    assert parts["projector"] == sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    assert parts["language_model"] == sum(p.numel() for p in model.model.language_model.parameters())
    assert parts["lm_head"] == model.lm_head.weight.numel()
    # the same dims from the config object and from the config.json mapping
    assert Qwen2AudioDims.from_config(model.config) == Qwen2AudioDims.from_config(
        json.loads((tiny_dir / "config.json").read_text())
    )


@pytest.mark.parametrize("mode", ["label_tokens", "head"])
@pytest.mark.parametrize("r", [2, 4])
def test_planned_trainable_count_equals_the_classifier(tiny_dir, mode, r):
    from fairser.models.qwen2_audio import Qwen2AudioClassifier

    clf = Qwen2AudioClassifier.from_pretrained(
        tiny_dir, labels=("neutral", "joy", "sadness", "anger"), mode=mode, lora={"r": r}
    )
    plan = plan_memory(backbone=tiny_dir, lora_r=r, mode=mode, n_classes=4, precision="fp32")
    counts = clf.count_parameters()
    assert plan.params_total == counts["total"]
    assert plan.params_trainable == counts["trainable"]


def test_planner_defaults_match_the_classifier_defaults(tiny_dir):
    from fairser.models.qwen2_audio import DEFAULT_LORA, Qwen2AudioClassifier

    clf = Qwen2AudioClassifier.from_pretrained(tiny_dir, labels=("neutral", "joy", "sadness", "anger"))
    assert clf.mode == "label_tokens" and clf.lora == DEFAULT_LORA and DEFAULT_LORA.r == 8
    assert plan_memory(backbone=tiny_dir).params_trainable == clf.count_parameters()["trainable"]


def test_planned_counts_with_unfrozen_audio_parts(tiny_dir):
    from fairser.models.qwen2_audio import Qwen2AudioClassifier

    kw = {"train_audio_encoder": True, "train_projector": True}
    clf = Qwen2AudioClassifier.from_pretrained(
        tiny_dir, labels=("neutral", "joy"), mode="head", lora={"r": 2}, **kw
    )
    plan = plan_memory(backbone=tiny_dir, lora_r=2, mode="head", n_classes=2, **kw)
    assert plan.params_trainable == clf.count_parameters()["trainable"]
    assert plan.activations > plan_memory(backbone=tiny_dir, lora_r=2, mode="head", n_classes=2).activations


def test_qwen2_audio_7b_preset_matches_the_published_size():
    parts = count_parameters(PRESETS["qwen2-audio-7b"])
    # Qwen2-Audio-7B: 8.40 B parameters; the Whisper-large-v3-style encoder ~0.64 B (Chu et al. 2024)
    assert parts["total"] == 8_397_094_912
    assert 0.63e9 < parts["audio_encoder"] < 0.65e9
    # LoRA r=8 on all 7 projections of 32 layers: 8 * 32 * (4 * (4096 + 4096) + 3 * (4096 + 11008))
    assert lora_parameter_count(PRESETS["qwen2-audio-7b"], r=8) == 8 * 32 * (4 * 8192 + 3 * 15104)


def test_memory_parts_follow_the_documented_formulas():
    p = plan_memory(batch=2, seq_len=100, precision="bf16", lora_r=8, optimizer="adamw", overhead_gib=0)
    trainable = p.params_trainable
    assert p.gradients == 4 * trainable and p.optimizer_states == 8 * trainable
    assert p.weights == 2 * (p.params_total - trainable) + 4 * trainable
    assert p.total == p.weights + p.gradients + p.optimizer_states + p.activations
    fp32 = plan_memory(batch=2, seq_len=100, precision="fp32", overhead_gib=0)
    assert fp32.weights > 1.9 * p.weights
    # activations grow linearly in batch; checkpointing shrinks them; weights do not depend on batch
    p4 = plan_memory(batch=4, seq_len=100, overhead_gib=0)
    ckpt = plan_memory(batch=2, seq_len=100, gradient_checkpointing=True, overhead_gib=0)
    assert p4.activations == pytest.approx(2 * p.activations, rel=0.05) and p4.weights == p.weights
    assert ckpt.activations < p.activations / 5
    sgd = plan_memory(batch=2, seq_len=100, optimizer="sgd", overhead_gib=0)
    assert sgd.optimizer_states == 4 * trainable


def test_fits_and_table():
    small = plan_memory(batch=1, audio_seconds=5, gradient_checkpointing=True)
    big = plan_memory(batch=8, audio_seconds=30)
    assert small.fits(24) and small.fits(80)
    assert not big.fits(24) and big.fits(big.gib() + 0.01)
    assert isinstance(big, Plan) and big.seq_len == audio_token_count(30) + 64 == 814
    table = format_plan_table([small, big], gpus=(24, 40, 80))
    lines = table.splitlines()
    assert len(lines) == 4 and "24GB" in lines[0] and "qwen2-audio-7b" in lines[2]
    assert lines[3].split()[-3:] == ["OOM" if not big.fits(g) else "fits" for g in (24, 40, 80)]


def test_audio_token_count_matches_the_processor_rule():
    # Qwen2AudioProcessor: frames -> (frames - 1) // 2 + 1 -> (x - 2) // 2 + 1; 100 mel frames per second
    assert audio_token_count(1.0) == 25 and audio_token_count(30.0) == 750
    assert audio_token_count(60.0) == 750  # truncated to the 30-s window


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="precision"):
        plan_memory(precision="int4")
    with pytest.raises(ValueError, match="optimizer"):
        plan_memory(optimizer="adafactor")
    with pytest.raises(ValueError, match="unknown backbone preset 'qwen9'"):
        plan_memory(backbone="qwen9")
    with pytest.raises(ValueError, match="unknown LoRA target"):
        plan_memory(lora_targets=("fc1",))
    with pytest.raises(ValueError, match="qwen2_audio config"):
        Qwen2AudioDims.from_config({"model_type": "wav2vec2"})


def test_desta25_counts_equal_the_built_model(tmp_path):
    pytest.importorskip("peft")
    from assets.tiny_models import TINY_LABELS, save_tiny_desta25
    from fairser.models.desta25 import DeSTA25Classifier
    from fairser.models.plan import DeSTA25Dims

    folder = save_tiny_desta25(tmp_path / "desta")
    clf = DeSTA25Classifier.from_pretrained(folder, labels=TINY_LABELS, lora={"r": 4, "alpha": 8})
    dims = DeSTA25Dims.from_folder(folder)
    parts = count_parameters(dims)
    assert parts["audio_encoder"] == sum(p.numel() for p in clf.whisper.model.encoder.parameters())
    assert parts["whisper_decoder"] == sum(p.numel() for p in clf.whisper.model.decoder.parameters())
    assert parts["projector"] == sum(p.numel() for p in clf.connector.parameters())
    plan = plan_memory(backbone=str(folder), lora_r=4)
    assert plan.params_trainable == clf.count_parameters()["trainable"]
    assert plan.params_total == clf.count_parameters()["total"]
    assert plan.seq_len == dims.prompt_size + 64  # the Q-Former's vectors + the prompt/transcript tokens
    real = plan_memory(backbone="desta2.5-audio")
    assert 9.6e9 < real.params_total < 9.9e9  # whisper-large-v3 (1.55 B) + Llama-3.1-8B (8.03 B) + Q-Former
