"""The raw-audio backbone backend of a run: Qwen2-Audio + LoRA or an SSL encoder trained on the waveforms.

What ``fairser benchmark`` uses when the config has ``backbone:``. The run itself is
:func:`fairser.run.execute_run`, the same as for the cached-feature heads: the same grid cell (setting,
objective, seed), the same domains, predictions table and results row; the model is trained by
:func:`fairser.scale.loop.fit_backbone`. Checkpoints go to ``<output_dir>/runs/<run_id>/checkpoints`` (a
killed benchmark resumes its unfinished run exactly), the trained adapter to
``<output_dir>/runs/<run_id>/adapter``, JTT's error set to ``<output_dir>/runs/<run_id>/jtt_errors.npy``.
"""

from __future__ import annotations

import gc
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from fairser.config import BackboneConfig, BenchmarkConfig
from fairser.objectives import Objective
from fairser.run.prepare import PreparedData
from fairser.run.saved import MODEL_DIR
from fairser.scale.data import AudioDataset

__all__ = ["BackboneBackend", "BackboneTrainer", "ZeroShotResult", "base_model_identity", "build_backbone"]


@dataclass
class ZeroShotResult:
    """The "training result" of a zero-shot run: the model as loaded, nothing fitted (no epochs, no steps)."""

    model: nn.Module
    best_epoch: int | None = None
    best_score: float | None = None
    history: list = field(default_factory=list)
    step_logs: list = field(default_factory=list)
    global_step: int = 0
    resumed_from: int | None = None


def build_backbone(config: BackboneConfig, *, labels: tuple[str, ...] | list[str]) -> nn.Module:
    """Load the configured backbone from its local folder (nothing is downloaded).

    ``qwen2_audio`` / ``desta25``: :func:`fairser.models.audio_llm.load_audio_llm` (mode, prompts, LoRA,
    zero-shot calibration, precision and checkpointing options). ``ssl``: :meth:`SSLClassifier.from_pretrained` with ``finetune``
    (frozen / top_k / lora), the layer-weighted head's options, and gradient checkpointing through
    transformers' ``gradient_checkpointing_enable`` when asked.
    """
    from fairser.models.audio_llm import AUDIO_LLMS, load_audio_llm

    if config.name in AUDIO_LLMS:
        return load_audio_llm(config=config, labels=labels)
    lora = None
    if config.lora is not None:
        lora = {k: v for k, v in config.lora.model_dump().items() if v is not None}
    from fairser.models.ssl import SSLClassifier

    model = SSLClassifier.from_pretrained(
        config.path,
        n_classes=len(labels),
        precision=config.precision,
        finetune=config.finetune,
        top_k=config.top_k,
        lora=lora,
        mlp_hidden=config.mlp_hidden,
        dropout=config.dropout,
        normalize_layers=config.normalize_layers,
        labels=tuple(labels),
    )
    if config.gradient_checkpointing:
        base = model.encoder.model
        base = base.get_base_model() if hasattr(base, "get_base_model") else base
        if not getattr(base, "supports_gradient_checkpointing", False):
            raise ValueError(f"{type(base).__name__} does not support gradient checkpointing")
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


class BackboneTrainer:
    """Backbones built from the config with the run's seed, trained by :func:`fairser.scale.loop.fit_backbone`.

    The main training (``main=True``) checkpoints to ``checkpoint_dir`` and resumes from it exactly; a
    pre-stage's training does not. Every process of a distributed run calls the same methods.
    """

    def __init__(
        self,
        *,
        config: BenchmarkConfig,
        labels: tuple[str, ...],
        seed: int,
        sampler: str,
        accelerator,
        checkpoint_dir: Path | None,
        progress: bool = False,
    ) -> None:
        self.backbone: BackboneConfig = config.backbone
        self.select_metric, self.patience = config.train.select_metric, config.train.patience
        self.labels, self.seed, self.sampler = labels, seed, sampler
        self.accelerator, self.checkpoint_dir, self.progress = accelerator, checkpoint_dir, progress
        self.sharded = str(accelerator.distributed_type).rsplit(".", 1)[-1] in ("FSDP", "DEEPSPEED")
        self._main = None

    def new_model(self) -> nn.Module:
        """The configured backbone, seeded with the run's seed (the same initial weights every time)."""
        torch.manual_seed(self.seed)
        return build_backbone(self.backbone, labels=self.labels)

    def zero_shot(self) -> ZeroShotResult:
        """The configured audio LLM as it is (``backbone.zero_shot``): no objective, no training step."""
        model = self.new_model()
        model.to(self.accelerator.device)
        self._main = None
        return ZeroShotResult(model=model)

    def fit(
        self,
        *,
        model: nn.Module,
        objective: Objective,
        train: AudioDataset,
        valid: AudioDataset,
        epochs: int | None = None,
        keep: Literal["best", "last"] = "best",
        main: bool = False,
    ):
        from fairser.scale.loop import fit_backbone

        bb = self.backbone if epochs is None else self.backbone.model_copy(update={"epochs": epochs})
        result = fit_backbone(
            model=model,
            objective=objective,
            train=train,
            valid=valid,
            config=bb,
            seed=self.seed,
            sampler=self.sampler,
            select_metric=self.select_metric,
            patience=self.patience,
            keep=keep,
            accelerator=self.accelerator,
            checkpoint_dir=self.checkpoint_dir if main else None,
            keep_checkpoints=bb.keep_checkpoints,
            progress=self.progress,
        )
        if main:
            self._main = result
        return result

    def predict_proba(self, model: nn.Module, data: AudioDataset) -> np.ndarray:
        from fairser.scale.loop import predict_backbone

        main = self._main
        if self.sharded and main is not None and model is main.model:
            model = main.prepared  # sharded parameters: predict through the prepared (wrapped) model
        return predict_backbone(
            model, data, batch_size=self.backbone.eval_batch_size, accelerator=self.accelerator
        )

    def release(self) -> None:
        """Free dropped models: accelerate's references, then a full collection (its autocast forward
        wrapper is a reference cycle), then the CUDA cache."""
        self.accelerator.free_memory()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class BackboneBackend:
    """A raw-audio backbone trained end to end (``config.backbone``)."""

    def __init__(self, prepared: PreparedData, config: BenchmarkConfig, *, progress: bool = False) -> None:
        from fairser.scale.loop import make_accelerator

        if config.backbone is None:
            raise ValueError("a backbone run needs a config with a backbone section")
        #: ``backbone.zero_shot``: the run scores the test split with the model as loaded (no training).
        self.zero_shot = bool(config.backbone.zero_shot)
        gc.collect()  # the previous run's model: accelerate's autocast wrapper keeps it in a reference cycle
        self.prepared, self.config, self.progress = prepared, config, progress
        self.accelerator = make_accelerator(mixed_precision=config.backbone.mixed_precision)
        self.is_main_process = bool(self.accelerator.is_main_process)
        self._durations = (
            prepared.manifest["duration"].to_numpy(dtype=float)
            if "duration" in prepared.manifest.columns
            else None
        )

    def check(self, spec: Any) -> None:
        """Benchmark options the backbone path does not implement: refuse them by name, never ignore them."""
        from fairser.objectives import OBJECTIVES
        from fairser.objectives.jtt import JTT
        from fairser.objectives.stages import StagedObjective

        config = self.config
        if self.zero_shot:
            return  # no objective, sampler or stage: nothing is trained
        cls = OBJECTIVES[spec.objective.name]
        if issubclass(cls, StagedObjective) and cls is not JTT:
            raise ValueError(
                f"objective {spec.objective.name!r} is a staged method (a stage before the main training: a biased "
                "model, voice conversion or a target corpus); with a backbone only JTT's stage is implemented, the "
                "others run on the cached-feature heads"
            )
        if config.backbone.name == "ssl" and spec.setting != "audio" and "audio+text" in config.modalities:
            raise ValueError(
                "an ssl backbone reads audio only: set modalities: [audio] (or use qwen2_audio / desta25)"
            )
        if self._sampler(spec) not in ("stratified", "random"):
            raise ValueError(
                f"sampler {self._sampler(spec)!r} is not implemented for backbone runs (use stratified or random)"
            )
        sharded = str(self.accelerator.distributed_type).rsplit(".", 1)[-1] in ("FSDP", "DEEPSPEED")
        if cls is JTT and sharded:
            raise ValueError(
                "jtt with a backbone is implemented for one process and DDP, not FSDP/DeepSpeed (its stage "
                "would train a whole backbone before the checkpointed main run is refused)"
            )

    def _sampler(self, spec: Any) -> str:
        return spec.objective.sampler or self.config.train.sampler

    def dataset(
        self, meta: pd.DataFrame, *, y: np.ndarray, domain: np.ndarray, sensitive: np.ndarray, n_values: int
    ) -> AudioDataset:
        rows = meta["row"].to_numpy()
        return AudioDataset(
            audio=[str(p) for p in meta["audio_path"]],
            y=y,
            domain=domain,
            sensitive=sensitive,
            n_values=n_values,
            texts=[str(t) if isinstance(t, str) else "" for t in meta["transcript"]],
            modalities=list(meta["modality"]),
            languages=[str(x) for x in meta["language"]],
            durations=None if self._durations is None else self._durations[rows],
            cache_audio=bool(self.config.backbone.cache_audio),
        )

    def run_dir(self, spec: Any) -> Path:
        return Path(self.config.output_dir) / "runs" / spec.run_id

    def trainer(self, *, spec: Any, train: AudioDataset) -> BackboneTrainer:
        return BackboneTrainer(
            config=self.config,
            labels=tuple(self.prepared.labels),
            seed=spec.seed,
            sampler=self._sampler(spec),
            accelerator=self.accelerator,
            checkpoint_dir=self.run_dir(spec) / "checkpoints",
            progress=self.progress,
        )

    def embed_dim(self, model: nn.Module, data: AudioDataset) -> int:
        from fairser.scale.loop import backbone_forward

        was = model.training
        model.eval()
        with torch.no_grad():
            dim = int(backbone_forward(model, data, np.array([0]), labels=False).embedding.shape[1])
        model.train(was)
        return dim

    def embedding(self, model: nn.Module, data: AudioDataset) -> np.ndarray | None:
        return None  # not implemented for backbones (the gender probe notes it)

    def stage_dir(self, spec: Any) -> Path | None:
        return self.run_dir(spec)

    def degrade_train(self, *, spec: Any, train: Any, meta: Any, progress: bool = False) -> dict:
        """Not implemented: a backbone reads waveforms (the config refuses ``degrade_augment`` with one)."""
        raise ValueError("degrade_augment works on heads on cached features only, not on backbones")

    def finish(self, *, spec: Any, result) -> dict[str, Any]:
        """Save the adapter and drop the checkpoints (the run is finished: its row is the record); the
        ``backbone`` record of the results row (name, path, parameters, optimizer steps, median step time,
        resume point)."""
        acc, bb = self.accelerator, self.config.backbone
        run_dir = self.run_dir(spec)
        if acc.is_main_process:
            if hasattr(result.model, "save_adapter") and not self.zero_shot:  # zero-shot trained nothing
                result.model.save_adapter(run_dir / "adapter")
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        saved = None
        if self.config.train.save_model and acc.is_main_process:
            saved = self._save_model(spec, result, run_dir / MODEL_DIR)
        acc.wait_for_everyone()
        logs = result.step_logs
        counts = result.model.count_parameters() if hasattr(result.model, "count_parameters") else None
        llm = bb.name != "ssl"
        extras: dict[str, Any] = {}
        if self.zero_shot:  # what the label scoring used: prompt language, instructions, calibration
            extras["zero_shot"] = {
                **result.model.scoring_settings(),
                "adapter": None if bb.adapter is None else str(bb.adapter),
            }
        return {
            **extras,
            "backbone": {
                "name": bb.name,
                "path": str(bb.path),
                "mode": bb.mode if llm else bb.finetune,
                "parameters": counts,
                "optimizer_steps": result.global_step,
                "processes": acc.num_processes,
                "mixed_precision": acc.mixed_precision,
                "median_step_s": float(np.median([s["step_time_s"] for s in logs])) if logs else None,
                "resumed_from_step": result.resumed_from,
            },
            **({"saved_model": str(saved)} if saved is not None else {}),
        }

    def _save_model(self, spec: Any, result, path: Path) -> Path | None:
        """``train.save_model``: the backbone's trainable tensors (LoRA, head, unfrozen layers) and the
        settings that rebuild it (:func:`fairser.run.saved.save_model`); the frozen base model stays in its
        folder and is identified by the sha256 of its ``config.json``. Not under FSDP / DeepSpeed (sharded
        parameters): the adapter folder is the record there."""
        from fairser.run.saved import run_record, save_model

        sharded = str(self.accelerator.distributed_type).rsplit(".", 1)[-1] in ("FSDP", "DEEPSPEED")
        if sharded:
            return None
        model = result.model
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        state = {f"backbone.{k}": v for k, v in model.state_dict().items() if k in trainable}
        meta = {
            "kind": "backbone",
            **run_record(spec=spec, config=self.config, result=result, labels=tuple(self.prepared.labels)),
            "backbone": self.config.backbone.model_dump(mode="json"),
            "base_model": base_model_identity(self.config.backbone.path),
        }
        return save_model(path, meta=meta, tensors=state)


def base_model_identity(path: str | Path) -> dict[str, Any]:
    """What identifies a local base model folder: its path, the sha256 of its ``config.json``, and per weight
    file its size and a sampled sha256 (of the size, the first and the last MiB: the safetensors header and
    tensor bytes at both ends; hashing gigabytes of weights at every save and load would take minutes)."""
    import hashlib

    root = Path(path)
    config = root / "config.json"
    files = {}
    for p in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")):
        size = p.stat().st_size
        h = hashlib.sha256(str(size).encode())
        with open(p, "rb") as f:
            h.update(f.read(_MIB))
            f.seek(max(0, size - _MIB))
            h.update(f.read(_MIB))
        files[p.name] = {"bytes": size, "sampled_sha256": h.hexdigest()}
    return {
        "path": str(root.resolve()),
        "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
        "weight_files": files,
    }


_MIB = 1 << 20
