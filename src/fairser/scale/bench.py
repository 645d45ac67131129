"""One benchmark run with a raw-audio backbone: what ``fairser benchmark`` calls when the config has ``backbone:``.

:func:`execute_backbone_run` is the backbone counterpart of :func:`fairser.bench.runner.execute_run`: the
same grid cell (setting, objective, seed), the same domains (languages, or language x modality with
``joint_modalities``), the same predictions table and results row, but the model is a Qwen2-Audio + LoRA
classifier or an SSL encoder trained on the waveforms by :func:`fairser.scale.loop.fit_backbone`.
Checkpoints go to ``<output_dir>/runs/<run_id>/checkpoints`` (a killed benchmark resumes its unfinished
run exactly), the trained adapter to ``<output_dir>/runs/<run_id>/adapter``.
"""

from __future__ import annotations

import gc
import inspect
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from fairser.config import BackboneConfig, BenchmarkConfig
from fairser.results.rows import evaluate_run, predictions_table, run_fields
from fairser.scale.data import AudioDataset

__all__ = ["audio_views", "build_backbone", "execute_backbone_run"]

_GENDER_CODE = {"male": 0, "female": 1, "unknown": -1}


def build_backbone(config: BackboneConfig, *, labels: tuple[str, ...] | list[str]) -> nn.Module:
    """Load the configured backbone from its local folder (nothing is downloaded).

    ``qwen2_audio``: :meth:`Qwen2AudioClassifier.from_pretrained` with the config's mode, prompt, LoRA,
    precision and checkpointing options. ``ssl``: :meth:`SSLClassifier.from_pretrained` with ``finetune``
    (frozen / top_k / lora), the layer-weighted head's options, and gradient checkpointing through
    transformers' ``gradient_checkpointing_enable`` when asked.
    """
    lora = None
    if config.lora is not None:
        lora = {k: v for k, v in config.lora.model_dump().items() if v is not None}
    if config.name == "qwen2_audio":
        from fairser.models.qwen2_audio import DEFAULT_INSTRUCTION, Qwen2AudioClassifier

        kwargs: dict[str, Any] = {
            "labels": tuple(labels),
            "mode": config.mode,
            "lora": lora,
            "precision": config.precision,
            "attn_implementation": config.attn_implementation,
            "prompt_style": config.prompt_style,
            "instruction": config.instruction or DEFAULT_INSTRUCTION,
            "train_audio_encoder": config.train_audio_encoder,
            "train_projector": config.train_projector,
            "gradient_checkpointing": config.gradient_checkpointing,
        }
        if config.label_words is not None:
            kwargs["label_words"] = tuple(config.label_words)
        if config.adapter is not None:
            kwargs["adapter"] = config.adapter
        return Qwen2AudioClassifier.from_pretrained(config.path, **kwargs)
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


def audio_views(
    manifest: pd.DataFrame,
    *,
    setting: str,
    config: BenchmarkConfig,
    labels: tuple[str, ...],
) -> dict[str, tuple[AudioDataset, pd.DataFrame]]:
    """:class:`AudioDataset` and metadata rows of train / valid / test for one setting (as the runner's views).

    Domains: ``language_index * n_modalities + modality_index``; in the joint setting every utterance
    appears once per modality (audio-only rows get no transcript). ``audio_path`` must be resolved
    (absolute, or relative to the working directory), as ``prepare_data`` leaves it for backbone runs.
    """
    lang_index = {lang: i for i, lang in enumerate(config.languages)}
    label_index = {lab: i for i, lab in enumerate(labels)}
    modalities = list(config.modalities) if setting == "joint" else [setting]
    durations_all = manifest["duration"].to_numpy(dtype=float) if "duration" in manifest.columns else None
    views = {}
    for split in ("train", "valid", "test"):
        rows = np.flatnonzero((manifest["split"] == split).to_numpy())
        metas, domains = [], []
        for mod_i, modality in enumerate(modalities):
            meta = manifest.iloc[rows].copy()
            meta["modality"] = modality
            meta["row"] = rows
            metas.append(meta)
            domains.append(meta["language"].map(lang_index).to_numpy() * len(modalities) + mod_i)
        meta = pd.concat(metas, ignore_index=True)
        if meta["emotion"].map(label_index).isna().any():
            bad = sorted(set(meta["emotion"]) - set(labels))
            raise ValueError(f"labels {bad} are not in the configured label set {list(labels)}")
        views[split] = (
            AudioDataset(
                audio=[str(p) for p in meta["audio_path"]],
                y=meta["emotion"].map(label_index).to_numpy(),
                domain=np.concatenate(domains),
                gender=meta["gender"].map(_GENDER_CODE).to_numpy(),
                texts=[str(t) if isinstance(t, str) else "" for t in meta["transcript"]],
                modalities=list(meta["modality"]),
                durations=None if durations_all is None else durations_all[meta["row"].to_numpy()],
                cache_audio=bool(config.backbone.cache_audio),
            ),
            meta,
        )
    if len(views["train"][0]) == 0:
        raise ValueError("the corpus has no training rows (split == 'train')")
    return views


def _unsupported(spec, config: BenchmarkConfig) -> None:
    """Benchmark options the backbone path does not implement: refuse them by name, never ignore them."""
    from fairser.objectives import OBJECTIVES
    from fairser.objectives.jtt import JTT
    from fairser.objectives.stages import StagedObjective

    cls = OBJECTIVES[spec.objective.name]
    if issubclass(cls, StagedObjective) and cls is not JTT:
        raise ValueError(
            f"objective {spec.objective.name!r} is a staged method (a stage before the main training: a biased "
            "model, voice conversion or a target corpus); with a backbone only JTT's stage is implemented, the "
            "others run on the cached-feature heads"
        )
    if config.backbone.name == "ssl" and spec.setting != "audio" and "audio+text" in config.modalities:
        raise ValueError("an ssl backbone reads audio only: set modalities: [audio] (or use qwen2_audio)")


def _jtt_identification(
    objective,
    *,
    config: BenchmarkConfig,
    labels: tuple[str, ...],
    train: AudioDataset,
    valid: AudioDataset,
    seed: int,
    sampler: str,
    accelerator,
    errors_file: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """JTT's stage 1 with a backbone (Liu et al. 2021): ERM for ``first_epochs`` epochs, last epoch kept.

    The identification model is the backbone built with the run's seed (the main model's initial weights);
    its misclassified training rows become the error set (:meth:`JTT.set_errors`). It is freed before the
    main model is built. Every process of a distributed run trains it and gets the same predictions, so
    the error set is the same everywhere. With ``errors_file`` the error set is saved there, and a resumed
    run loads it instead of training the stage again (the main stage then continues with the very same
    set). Returns the stage's record for the results row.
    """
    from fairser.objectives import build_objective
    from fairser.scale.loop import fit_backbone, predict_backbone

    labelled = train.y >= 0
    if errors_file is not None and errors_file.is_file():
        errors = np.load(errors_file)
        if errors.shape != (len(train),) or errors.dtype != bool:
            raise ValueError(
                f"{errors_file} holds {errors.dtype} {errors.shape}, not the error set of these {len(train)} "
                "training rows; delete it (or the run folder) to run JTT's identification stage again"
            )
        objective.set_errors(errors, labelled=labelled)
        return {
            "stage": "jtt_identification",
            "epochs": objective.first_epochs,
            "reused": str(errors_file),
            **objective.summary(),
        }
    bb = config.backbone
    torch.manual_seed(seed)
    ident = build_backbone(bb, labels=labels)
    result = fit_backbone(
        model=ident,
        objective=build_objective("erm", n_domains=objective.n_domains, n_classes=objective.n_classes),
        train=train,
        valid=valid,
        config=bb.model_copy(update={"epochs": objective.first_epochs}),
        seed=seed,
        sampler=sampler,
        select_metric=config.train.select_metric,
        keep="last",
        accelerator=accelerator,
        progress=progress,
    )
    pred = predict_backbone(
        result.model, train, batch_size=bb.eval_batch_size, accelerator=accelerator
    ).argmax(1)
    objective.set_errors((pred != train.y) & labelled, labelled=labelled)
    if errors_file is not None and accelerator.is_main_process:
        errors_file.parent.mkdir(parents=True, exist_ok=True)
        np.save(errors_file, objective.errors)
    del ident, result
    accelerator.free_memory()  # drop accelerate's references to the identification model, then collect
    gc.collect()  # its autocast forward wrapper is a reference cycle: only a full collection frees it
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"stage": "jtt_identification", "epochs": objective.first_epochs, **objective.summary()}


def _objective_params(spec, *, model: nn.Module, train: AudioDataset) -> dict[str, Any]:
    """Required constructor arguments only the run knows: ``embed_dim`` (the backbone's embedding width)."""
    from fairser.objectives import OBJECTIVES
    from fairser.scale.loop import backbone_forward

    params = inspect.signature(OBJECTIVES[spec.objective.name].__init__).parameters
    out: dict[str, Any] = {}
    for p in params.values():
        if p.kind is not p.KEYWORD_ONLY or p.default is not p.empty:
            continue
        if p.name in ("n_domains", "n_classes") or p.name in spec.objective.params:
            continue
        if p.name != "embed_dim":
            raise ValueError(
                f"objective {spec.objective.name!r} needs params.{p.name}; the benchmark cannot derive it"
            )
        was = model.training
        model.eval()
        with torch.no_grad():
            out["embed_dim"] = int(
                backbone_forward(model, train, np.array([0]), labels=False).embedding.shape[1]
            )
        model.train(was)
    return out


def execute_backbone_run(spec, prepared, config: BenchmarkConfig, *, progress: bool = False):
    """Train, predict and evaluate one grid cell with the configured backbone.

    Returns ``(row, predictions, step_logs)`` like :func:`fairser.bench.runner.execute_run`; the row adds a
    ``backbone`` record (name, path, trainable parameters, optimizer steps, median step time, resume point).
    Every process of an ``accelerate launch`` calls this for the same run; only the main process writes
    files and evaluates (the others return an empty row, table and log).
    """

    from fairser.bench.runner import apply_inferred_groups
    from fairser.objectives import OBJECTIVES, build_objective
    from fairser.objectives.jtt import JTT
    from fairser.scale.loop import fit_backbone, make_accelerator, predict_backbone

    bb = config.backbone
    if bb is None:
        raise ValueError("execute_backbone_run needs a config with a backbone section")
    _unsupported(spec, config)
    gc.collect()  # the previous run's model: accelerate's autocast wrapper keeps it in a reference cycle
    t0 = time.perf_counter()
    labels = tuple(prepared.labels)
    views = audio_views(prepared.manifest, setting=spec.setting, config=config, labels=labels)
    train, train_meta = views["train"]
    groups_row = apply_inferred_groups(spec, prepared, config, train, train_meta)  # IDI, if configured
    accelerator = make_accelerator(mixed_precision=bb.mixed_precision)
    modalities = list(config.modalities) if spec.setting == "joint" else [spec.setting]
    n_domains = len(config.languages) * len(modalities)
    sampler = getattr(spec.objective, "sampler", None) or config.train.sampler
    if sampler not in ("stratified", "random"):
        raise ValueError(
            f"sampler {sampler!r} is not implemented for backbone runs (use stratified or random)"
        )
    stages: list[dict[str, Any]] = []
    run_dir = Path(config.output_dir) / "runs" / spec.run_id
    sharded = str(accelerator.distributed_type).rsplit(".", 1)[-1] in ("FSDP", "DEEPSPEED")
    if OBJECTIVES[spec.objective.name] is JTT:  # stage 1 first: one backbone in memory at a time
        if sharded:
            raise ValueError(
                "jtt with a backbone is implemented for one process and DDP, not FSDP/DeepSpeed (its stage "
                "would train a whole backbone before the checkpointed main run is refused)"
            )
        objective = build_objective(
            spec.objective.name, n_domains=n_domains, n_classes=len(labels), **spec.objective.params
        )
        stages.append(
            _jtt_identification(
                objective,
                config=config,
                labels=labels,
                train=train,
                valid=views["valid"][0],
                seed=spec.seed,
                sampler=sampler,
                accelerator=accelerator,
                errors_file=run_dir / "jtt_errors.npy",
                progress=progress,
            )
        )
        torch.manual_seed(spec.seed)
        model = build_backbone(bb, labels=labels)  # the identification model's initial weights
    else:
        torch.manual_seed(spec.seed)
        model = build_backbone(bb, labels=labels)
        objective = build_objective(
            spec.objective.name,
            n_domains=n_domains,
            n_classes=len(labels),
            **_objective_params(spec, model=model, train=train),
            **spec.objective.params,
        )
    counts = model.count_parameters() if hasattr(model, "count_parameters") else None
    result = fit_backbone(
        model=model,
        objective=objective,
        train=train,
        valid=views["valid"][0],
        config=bb,
        seed=spec.seed,
        sampler=sampler,
        select_metric=config.train.select_metric,
        patience=config.train.patience,
        accelerator=accelerator,
        checkpoint_dir=run_dir / "checkpoints",
        keep_checkpoints=bb.keep_checkpoints,
        progress=progress,
    )
    test, meta = views["test"]
    proba = predict_backbone(
        result.prepared if sharded else result.model,
        test,
        batch_size=bb.eval_batch_size,
        accelerator=accelerator,
    )
    if accelerator.is_main_process:
        if hasattr(result.model, "save_adapter"):
            result.model.save_adapter(run_dir / "adapter")
        shutil.rmtree(
            run_dir / "checkpoints", ignore_errors=True
        )  # the run is finished: its row is the record
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:  # the main process evaluates and reports; the others are done
        return {}, pd.DataFrame(), []

    pred = predictions_table(meta=meta, proba=proba, labels=labels, spec=spec)
    metrics, notes = evaluate_run(pred, labels=labels, evaluation=config.evaluation, seed=spec.seed)
    if config.evaluation.gender_probe:
        notes.append("gender_probe is not computed for backbone runs")
    logs = result.step_logs
    row = {
        **run_fields(spec=spec, result=result),
        "elapsed_s": time.perf_counter() - t0,
        **metrics,
        "notes": notes,
        "backbone": {
            "name": bb.name,
            "path": str(bb.path),
            "mode": bb.mode if bb.name == "qwen2_audio" else bb.finetune,
            "parameters": counts,
            "optimizer_steps": result.global_step,
            "processes": accelerator.num_processes,
            "mixed_precision": accelerator.mixed_precision,
            "median_step_s": float(np.median([s["step_time_s"] for s in logs])) if logs else None,
            "resumed_from_step": result.resumed_from,
        },
    }
    if groups_row is not None:
        row["groups"] = groups_row
    if stages:
        row["method"] = objective.summary()
        row["stages"] = stages
    return row, pred, logs
