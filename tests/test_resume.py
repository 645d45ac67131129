"""Checkpoints and exact resume of the backbone loop (tiny random Qwen2-Audio + LoRA, built in the test).

A run stopped after k optimizer steps (``halt_after_steps``) or killed mid-step (an exception after the last
checkpoint), then resumed in a fresh model with a different seed, ends with the *same* weights, objective
state, step logs and validation history as an uninterrupted run. LoRA dropout (torch RNG), the AdamW
moments, the warm-up schedule, MinMaxGAP's dual weight and EMA, and the sampler's mid-epoch position all
have to be restored for that.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from assets.offline import block_network, single_thread  # noqa: E402,F401  (fixtures)
from assets.tiny_models import TINY_LABELS, save_tiny_qwen2_audio, tone  # noqa: E402
from fairser.config import BackboneConfig  # noqa: E402
from fairser.models.qwen2_audio import Qwen2AudioClassifier  # noqa: E402
from fairser.objectives.minmaxgap import MinMaxGap  # noqa: E402
from fairser.scale import AudioDataset, fit_backbone  # noqa: E402

pytestmark = pytest.mark.usefixtures("block_network", "single_thread")

LORA = {"r": 4, "alpha": 8, "dropout": 0.3}  # dropout: the resumed run must continue the RNG stream
OBJ = {"weight": "dual", "eta": 0.5, "estimate": "ema"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen2_audio(tmp_path_factory.mktemp("resume") / "tiny-qwen2-audio")


def _data(n: int, seed: int) -> AudioDataset:
    rng = np.random.default_rng(seed)
    return AudioDataset(
        audio=[
            tone(0.2 + 0.5 * rng.random(), freq=150.0 + 30 * (i % 6), seed=seed * 100 + i) for i in range(n)
        ],
        y=np.arange(n) % 4,
        domain=(np.arange(n) // 2) % 2,
        sensitive=np.array([0, 1, 1, 0, -1])[np.arange(n) % 5],
        texts=["hello there"] * n,
        modalities=["audio+text" if i % 2 else "audio" for i in range(n)],
    )


TRAIN, VALID = _data(20, 0), _data(8, 1)


def _config(tiny_dir, **kw) -> BackboneConfig:
    base = dict(
        name="qwen2_audio",
        path=tiny_dir,
        mode="head",
        lora=LORA,
        per_device_batch_size=5,
        grad_accum_steps=2,
        epochs=2,
        lr=5e-3,
        warmup_ratio=0.3,
        bucket_window=2,
        eval_batch_size=4,
        mixed_precision="no",
    )
    return BackboneConfig(**{**base, **kw})


def _fit(tiny_dir, *, seed_model=0, objective=None, **kw):
    torch.manual_seed(seed_model)
    model = Qwen2AudioClassifier.from_pretrained(tiny_dir, labels=TINY_LABELS, mode="head", lora=LORA)
    objective = objective if objective is not None else MinMaxGap(n_domains=2, n_classes=4, **OBJ)
    config = kw.pop("config", None) or _config(tiny_dir)
    result = fit_backbone(
        model=model, objective=objective, train=TRAIN, valid=VALID, config=config, seed=3, **kw
    )
    return result, objective


def _logs(result):
    return [{k: v for k, v in s.items() if k != "step_time_s"} for s in result.step_logs]


@pytest.fixture(scope="module")
def uninterrupted(tiny_dir):
    result, objective = _fit(tiny_dir)
    weights = {n: p.detach().clone() for n, p in result.model.named_parameters() if p.requires_grad}
    return result, weights, objective.state_dict()


def _assert_same_run(result, objective, reference) -> None:
    ref, ref_weights, ref_state = reference
    assert result.completed and result.global_step == ref.global_step == 4  # 2 epochs x 2 optimizer steps
    got = {n: p.detach() for n, p in result.model.named_parameters() if p.requires_grad}
    assert got.keys() == ref_weights.keys()
    for name, value in got.items():
        assert torch.equal(value, ref_weights[name]), name  # bit for bit
    for key, value in objective.state_dict().items():
        assert torch.equal(value, ref_state[key]), key
    assert _logs(result) == _logs(ref)
    assert result.history == ref.history and result.best_epoch == ref.best_epoch


def test_halted_run_resumes_to_the_same_weights(tiny_dir, tmp_path, uninterrupted):
    ref = uninterrupted[0]
    assert ref.completed and ref.resumed_from is None
    first, _ = _fit(tiny_dir, checkpoint_dir=tmp_path / "ckpt", halt_after_steps=3)
    assert not first.completed and first.global_step == 3  # stopped mid-epoch 1 (2 steps per epoch)
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["step-00000003"]  # keep_checkpoints=1
    # a "fresh process": a different seed gives different LoRA / head initial weights, all overwritten
    objective = MinMaxGap(n_domains=2, n_classes=4, **OBJ)
    resumed, objective = _fit(tiny_dir, seed_model=123, objective=objective, checkpoint_dir=tmp_path / "ckpt")
    assert resumed.resumed_from == 3
    _assert_same_run(resumed, objective, uninterrupted)
    # the unresumed control: without the checkpoint, the other seed ends elsewhere
    other, _ = _fit(tiny_dir, seed_model=123)
    w = {n: p for n, p in other.model.named_parameters() if p.requires_grad}
    assert any(not torch.equal(w[n], uninterrupted[1][n]) for n in w)


class _Killed(RuntimeError):
    pass


class _CrashingMinMaxGap(MinMaxGap):
    """Raises on its ``crash_at``-th call: the process dies in the middle of an optimizer step."""

    def __init__(self, *, crash_at: int, **kw) -> None:
        super().__init__(**kw)
        self.calls, self.crash_at = 0, crash_at

    def forward(self, batch):
        self.calls += 1
        if self.calls == self.crash_at:
            raise _Killed(f"killed at objective call {self.calls}")
        return super().forward(batch)


def test_run_killed_mid_step_resumes_from_last_checkpoint(tiny_dir, tmp_path, uninterrupted):
    ckpt = tmp_path / "ckpt"
    crashing = _CrashingMinMaxGap(crash_at=6, n_domains=2, n_classes=4, **OBJ)  # step 3, 2nd micro-batch
    with pytest.raises(_Killed):
        _fit(tiny_dir, objective=crashing, checkpoint_dir=ckpt)  # checkpoints at epoch ends only
    assert [p.name for p in ckpt.iterdir()] == ["step-00000002"]  # the end of epoch 0; step 3 is lost
    state = json.loads((ckpt / "step-00000002" / "state.json").read_text())
    assert state["epoch"] == 1 and state["sampler"]["position"] == 0 and len(state["history"]) == 1
    objective = MinMaxGap(n_domains=2, n_classes=4, **OBJ)
    resumed, objective = _fit(tiny_dir, seed_model=7, objective=objective, checkpoint_dir=ckpt)
    assert resumed.resumed_from == 2
    _assert_same_run(resumed, objective, uninterrupted)


def test_checkpoint_holds_only_safetensors_and_json(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    result, _ = _fit(tiny_dir, checkpoint_dir=tmp_path / "ckpt", halt_after_steps=1)
    folder = tmp_path / "ckpt" / "step-00000001"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "objective.safetensors",
        "optimizer.safetensors",
        "rng-rank0.json",
        "rng-rank0.safetensors",
        "state.json",
        "trainable.safetensors",
    ]  # no best.safetensors yet: no epoch has been evaluated
    trainable = load_file(folder / "trainable.safetensors")
    expected = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert set(trainable) == expected and any("lora_A" in n for n in expected)
    assert any("fairser_cls_head" in n for n in expected)
    optimizer = load_file(folder / "optimizer.safetensors")
    assert {k.split(".", 1)[1] for k in optimizer} == {"step", "exp_avg", "exp_avg_sq"}  # AdamW moments
    assert set(load_file(folder / "objective.safetensors")) == {"lam_t", "ema", "ema_seen"}
    state = json.loads((folder / "state.json").read_text())
    assert state["global_step"] == 1 and state["sampler"]["position"] == 2  # 2 micro-batches consumed
    assert state["settings"]["grad_accum_steps"] == 2


def test_resume_with_other_settings_is_refused(tiny_dir, tmp_path):
    _fit(tiny_dir, checkpoint_dir=tmp_path / "ckpt", halt_after_steps=1)
    with pytest.raises(ValueError, match="other training settings.*'lr'"):
        _fit(tiny_dir, checkpoint_dir=tmp_path / "ckpt", config=_config(tiny_dir, lr=1e-3))
