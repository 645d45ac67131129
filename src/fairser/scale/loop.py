"""The training loop for raw-audio backbones (Qwen2-Audio + LoRA, SSL / Whisper encoders), single- or multi-process.

The same code runs on one CPU process and under ``accelerate launch`` (DDP; FSDP and DeepSpeed ZeRO through
the same Accelerator calls), with bf16/fp16 autocast, gradient checkpointing (a backbone option), gradient
accumulation, length-bucketed batches (:mod:`fairser.scale.buckets`), group losses over the global batch
(:mod:`fairser.scale.distributed`), model selection on the validation split (METHODS.md §5) and
checkpoints that resume exactly (:mod:`fairser.scale.checkpoint`).

One optimizer step = ``grad_accum_steps`` global micro-batches; a global micro-batch =
``per_device_batch_size x num_processes`` samples drawn by the (stratified) sampler, sorted by duration and
split over the processes. The objective (ERM, MinMaxGAP, Group DRO, ...) is evaluated on each global
micro-batch, and the step's gradient is the mean of the micro-batches' objective gradients. With one
process and ``per_device_batch_size = P x B`` the global batches, objective values and gradients are those
of ``P`` processes with ``per_device_batch_size = B`` (up to floating-point reduction order).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from fairser.objectives import GroupBatch, Objective, ObjectiveOutput
from fairser.scale import checkpoint as ckpt
from fairser.scale.buckets import LengthBucketedSampler, RandomBatches, eval_batches, shard_batch
from fairser.scale.data import AudioDataset
from fairser.scale.distributed import all_gather_variable, gather_group_batch
from fairser.train import ModelSelection, score  # the feature heads' model selection and score

__all__ = [
    "BackboneTrainResult",
    "LinearWarmupSchedule",
    "backbone_forward",
    "build_batch_sampler",
    "fit_backbone",
    "global_objective",
    "launched_on_cpu",
    "make_accelerator",
    "predict_backbone",
]


@dataclass
class BackboneTrainResult:
    """The trained backbone (best validation epoch's trainable weights loaded) and its logs.

    ``completed`` is False when training stopped at ``halt_after_steps`` (a checkpoint was written there);
    ``resumed_from`` is the step of the checkpoint training resumed from, if any.
    """

    model: nn.Module
    prepared: nn.Module
    best_epoch: int
    best_score: float
    global_step: int
    completed: bool
    history: list[dict[str, float]] = field(default_factory=list)
    step_logs: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None


class LinearWarmupSchedule:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then constant, linear or cosine decay to 0.

    A callable object (not a lambda), so ``LambdaLR.state_dict()`` stores its settings as JSON.
    """

    def __init__(self, *, kind: Literal["constant", "linear", "cosine"], warmup: int, total: int) -> None:
        if kind not in ("constant", "linear", "cosine"):
            raise ValueError(f"lr_schedule must be constant, linear or cosine, got {kind!r}")
        self.kind, self.warmup, self.total = kind, int(warmup), max(1, int(total))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def launched_on_cpu() -> bool:
    """Started by a launcher (``torchrun``, ``accelerate launch``) with several processes and no CUDA device:
    then the processes train together on CPU (DDP over gloo), which accelerate does only when told ``cpu``."""
    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1 and int(os.environ.get("WORLD_SIZE", 1)) > 1
    return launched and not torch.cuda.is_available()


def make_accelerator(*, mixed_precision: str | None = None, cpu: bool | None = None):
    """An :class:`accelerate.Accelerator` for this loop (gradient accumulation is done by the loop itself).

    ``mixed_precision`` ``"no"``, ``"bf16"`` or ``"fp16"``; ``None`` takes ``accelerate launch``'s setting
    (``ACCELERATE_MIXED_PRECISION``), else ``"no"``. ``cpu=None`` means CPU processes when launched on a
    machine without CUDA (:func:`launched_on_cpu`), else accelerate's choice. Accelerate keeps one global
    state per process; a different precision replaces its precision part (the process group is kept), so
    successive runs in one process may differ in precision. Models prepared before keep their autocast.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if mixed_precision not in (None, "no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be 'no', 'bf16' or 'fp16', got {mixed_precision!r}")
    if cpu is None and launched_on_cpu():
        cpu = True
    if AcceleratorState._shared_state and mixed_precision is not None:
        current = AcceleratorState().mixed_precision
        if current != mixed_precision:
            AcceleratorState._reset_state(reset_partial_state=False)
    kwargs: dict[str, Any] = {"mixed_precision": mixed_precision}
    if cpu is not None:
        kwargs["cpu"] = cpu
    return Accelerator(**kwargs)


def _unwrap(accelerator, model: nn.Module) -> nn.Module:
    return accelerator.unwrap_model(model) if accelerator is not None else model


def _inner(model: nn.Module) -> nn.Module:
    """The module inside DDP / FSDP wrappers (and ``torch.compile``)."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    while isinstance(model, DistributedDataParallel | FullyShardedDataParallel) or hasattr(
        model, "_orig_mod"
    ):
        model = model._orig_mod if hasattr(model, "_orig_mod") else model.module
    return model


def _takes_text(model: nn.Module) -> bool:
    # the class's forward: accelerate replaces the instance's forward with an autocast wrapper
    return "texts" in inspect.signature(type(model).forward).parameters


def backbone_forward(model: nn.Module, data: AudioDataset, idx: np.ndarray, *, labels: bool = True):
    """Run ``model`` on rows ``idx``: a :class:`~fairser.models.backbone.BackboneOutput`.

    Qwen2-Audio gets audio, transcripts and modalities; an audio-only backbone (SSL) gets the audio and
    refuses ``audio+text`` rows.
    """
    inputs = data.batch_inputs(idx)
    base = _inner(model)
    if not _takes_text(base):
        if any(m != "audio" for m in inputs["modalities"]):
            raise ValueError(
                f"{type(base).__name__} reads audio only; the 'audio+text' setting needs a backbone that "
                "takes transcripts (qwen2_audio)"
            )
        inputs = {"audios": inputs["audios"]}
    if "languages" in inputs and "languages" not in inspect.signature(type(base).forward).parameters:
        del inputs["languages"]  # a backbone whose prompts do not depend on the language
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    y = torch.as_tensor(data.y[idx], dtype=torch.long, device=device) if labels else None
    return model(**inputs, labels=y)


def global_objective(
    model: nn.Module, objective: Objective, data: AudioDataset, idx: np.ndarray
) -> tuple[ObjectiveOutput, GroupBatch]:
    """Forward this process's rows ``idx``, gather the global :class:`GroupBatch`, apply the objective.

    Returns the objective's output (the same loss value on every process) and the global batch.
    """
    out = backbone_forward(model, data, idx)
    device = out.losses.device
    local = GroupBatch(
        losses=out.losses,
        domain=torch.as_tensor(data.domain[idx], dtype=torch.long, device=device),
        sensitive=torch.as_tensor(data.sensitive[idx], dtype=torch.long, device=device),
        n_values=data.n_values,
        logits=out.logits,
        y=torch.as_tensor(data.y[idx], dtype=torch.long, device=device),
        index=torch.as_tensor(np.asarray(idx), dtype=torch.long, device=device),
        embedding=out.embedding,
    )
    batch = gather_group_batch(local)
    return objective(batch), batch


@torch.no_grad()
def predict_backbone(
    model: nn.Module,
    data: AudioDataset,
    *,
    batch_size: int = 8,
    accelerator=None,
    progress: bool = False,
) -> np.ndarray:
    """Class probabilities (N, C) of every row, in row order, on every process.

    Rows are sorted by duration into batches (less padding); with several processes each predicts a slice
    of every global batch and the slices are gathered. Every process runs the same number of forward
    passes (a process with an empty slice re-runs a row of the batch and discards it), as FSDP requires.
    """
    from rich.progress import track

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rank = accelerator.process_index if accelerator is not None else 0
    n_proc = accelerator.num_processes if accelerator is not None else 1
    was_training = model.training
    model.eval()
    probs, rows, n_classes = [], [], 0
    try:
        batches = eval_batches(data.durations, batch_size=batch_size, num_shards=n_proc)
        show = progress and rank == 0
        for shards in track(batches, description="predict", disable=not show):
            mine = shards[rank]
            idx = mine if len(mine) else next(s for s in shards if len(s))[:1]
            p = backbone_forward(model, data, idx, labels=False).logits.float().softmax(-1)
            n_classes = p.shape[-1]
            if len(mine):
                probs.append(p)
                rows.append(torch.as_tensor(idx, dtype=torch.long, device=p.device))
    finally:
        model.train(was_training)
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    local_p = torch.cat(probs) if probs else torch.zeros((0, n_classes), device=device)
    local_r = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long, device=device)
    if n_proc > 1:
        local_p, local_r = all_gather_variable(local_p), all_gather_variable(local_r)
    out = np.zeros((len(data), local_p.shape[-1]), dtype=np.float32)
    out[local_r.cpu().numpy()] = local_p.cpu().numpy()
    return out


def build_batch_sampler(
    data: AudioDataset, *, sampler: str, global_batch_size: int, window: int, seed: int
) -> LengthBucketedSampler:
    """The loop's batch sampler: stratified (or random) global micro-batches, length-bucketed."""
    if sampler == "stratified":
        from fairser.sampler import GroupStratifiedSampler

        base = GroupStratifiedSampler(groups=data.group, batch_size=global_batch_size, seed=seed)
        groups = data.group
    elif sampler == "random":
        base, groups = RandomBatches(n=len(data), batch_size=global_batch_size, seed=seed), None
    else:
        raise ValueError(f"sampler must be 'stratified' or 'random', got {sampler!r}")
    return LengthBucketedSampler(base, lengths=data.durations, groups=groups, window=window, seed=seed)


def _settings(
    config, *, seed: int, sampler: str, n_proc: int, select_metric: str, keep: str = "best"
) -> dict[str, Any]:
    keys = (
        "per_device_batch_size",
        "grad_accum_steps",
        "epochs",
        "lr",
        "weight_decay",
        "warmup_ratio",
        "lr_schedule",
        "max_grad_norm",
        "bucket_window",
    )
    out = {k: getattr(config, k) for k in keys}
    out.update(seed=seed, sampler=sampler, world_size=n_proc, select_metric=select_metric)
    if keep != "best":  # (absent for the default, so earlier checkpoints keep their fingerprint)
        out["keep"] = keep
    return out


def fit_backbone(
    *,
    model: nn.Module,
    objective: Objective,
    train: AudioDataset,
    valid: AudioDataset,
    config,
    seed: int,
    sampler: Literal["stratified", "random"] = "stratified",
    select_metric: str = "weighted_f1",
    patience: int = 10,
    keep: Literal["best", "last"] = "best",
    accelerator=None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    halt_after_steps: int | None = None,
    keep_checkpoints: int = 1,
    progress: bool = False,
) -> BackboneTrainResult:
    """Train a raw-audio backbone with ``objective``; keep the epoch with the best validation score.

    Parameters
    ----------
    model : nn.Module
        A :class:`~fairser.models.qwen2_audio.Qwen2AudioClassifier` or
        :class:`~fairser.models.ssl.SSLClassifier` (anything whose ``forward(*, audios, [texts, modalities,]
        labels)`` returns per-sample ``losses``, ``logits`` and ``embedding``), not yet prepared.
    objective : Objective
        Any registered objective; it sees the global batch of every micro-step.
    train, valid : AudioDataset
        Training rows and the model-selection rows.
    config : fairser.config.BackboneConfig
        Batch, accumulation, optimiser, schedule, precision, bucketing and checkpoint settings.
    seed : int
        Seeds the sampler and torch's RNG (dropout).
    sampler : {"stratified", "random"}
        Every (domain, sensitive value) cell in every global micro-batch, or plain shuffling.
    select_metric, patience
        Model-selection metric on ``valid`` and early-stopping patience in epochs
        (:class:`fairser.train.ModelSelection`, the rule of the feature heads too).
    keep : {"best", "last"}
        Return the best validation epoch's weights (default), or train all ``config.epochs`` epochs and
        keep the last (no early stopping; e.g. JTT's identification model, whose epochs are a
        hyperparameter). The validation score is still computed and logged every epoch; ``best_epoch`` and
        ``best_score`` of the result describe the returned (last) epoch then.
    accelerator : accelerate.Accelerator, optional
        Default: :func:`make_accelerator` with ``config.mixed_precision``.
    checkpoint_dir : path, optional
        Where checkpoints go (every ``config.checkpoint_every`` optimizer steps and at each epoch end);
        with ``resume`` the newest one there is loaded first, and training continues exactly where it
        stopped.
    halt_after_steps : int, optional
        Stop once this many optimizer steps are done (writing a checkpoint there), as if the run had been
        killed; resume later with the same arguments.
    keep_checkpoints : int
        Complete checkpoints kept (older ones are deleted).
    progress : bool
        Show a progress bar (main process only).
    """
    from fairser.progress import progress_bar

    if keep not in ("best", "last"):
        raise ValueError(f"fit_backbone: keep must be 'best' or 'last', got {keep!r}")
    acc = accelerator if accelerator is not None else make_accelerator(mixed_precision=config.mixed_precision)
    rank, n_proc = acc.process_index, acc.num_processes
    dist_type = str(acc.distributed_type).rsplit(".", 1)[-1]
    sharded = dist_type in ("FSDP", "DEEPSPEED")
    if dist_type == "DEEPSPEED" and config.grad_accum_steps > 1:
        raise ValueError(
            "DeepSpeed accumulates gradients itself; use grad_accum_steps: 1 (raise per_device_batch_size or "
            "the number of processes instead)"
        )
    if checkpoint_dir is not None and sharded:
        raise NotImplementedError(
            f"exact-resume checkpoints are implemented for one process and DDP, not {dist_type} (sharded "
            "parameters or optimizer states); run without checkpoint_dir, or use DDP (configs/accelerate/ddp.yaml)"
        )
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"fit_backbone: empty split (train {len(train)} rows, valid {len(valid)} rows)")
    # every generator a training step may draw from: transformers' SpecAugment masks of wav2vec2 / HuBERT / WavLM
    # draw from NumPy's global one, so an unseeded start made SSL runs differ run to run (a checkpoint keeps
    # all three states for an exact resume)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    objective.setup(
        domain=torch.tensor(train.domain), sensitive=torch.tensor(train.sensitive), y=torch.tensor(train.y)
    )
    objective.to(acc.device)
    obj_params = [p for p in objective.parameters() if p.requires_grad]
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable and not obj_params:
        raise ValueError(
            "fit_backbone: the model has no trainable parameters (no LoRA, head or unfrozen layer)"
        )
    opt = torch.optim.AdamW(trainable + obj_params, lr=config.lr, weight_decay=config.weight_decay)
    if dist_type == "DEEPSPEED":  # no prepared DataLoader tells DeepSpeed the micro-batch size
        ds_config = acc.state.deepspeed_plugin.deepspeed_config
        if ds_config.get("train_micro_batch_size_per_gpu") in (None, "auto"):
            ds_config["train_micro_batch_size_per_gpu"] = config.per_device_batch_size
    prepared, opt = acc.prepare(model, opt)
    model = _unwrap(acc, prepared)

    batches_sampler = build_batch_sampler(
        train,
        sampler=sampler,
        global_batch_size=config.per_device_batch_size * n_proc,
        window=config.bucket_window,
        seed=seed,
    )
    accum = int(config.grad_accum_steps)
    micro_per_epoch = len(batches_sampler)
    steps_per_epoch = -(-micro_per_epoch // accum)
    total_steps = steps_per_epoch * config.epochs
    schedule = LinearWarmupSchedule(
        kind=config.lr_schedule, warmup=round(config.warmup_ratio * total_steps), total=total_steps
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        opt.optimizer if hasattr(opt, "optimizer") else opt, schedule
    )
    settings = _settings(
        config, seed=seed, sampler=sampler, n_proc=n_proc, select_metric=select_metric, keep=keep
    )

    state: dict[str, Any] = {
        "global_step": 0,
        "epoch": 0,
        "best_score": None,
        "best_epoch": -1,
        "bad_epochs": 0,
        "history": [],
        "step_logs": [],
    }
    best_params: dict[str, Tensor] | None = None
    resumed_from = None
    ckpt_root = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_root is not None and resume:
        found = ckpt.latest_checkpoint(ckpt_root)
        if found is not None:
            state, best_params = _load(
                found,
                model=model,
                objective=objective,
                optimizer=opt,
                scheduler=scheduler,
                sampler=batches_sampler,
                accelerator=acc,
                settings=settings,
            )
            resumed_from = state["global_step"]

    def save() -> None:
        if ckpt_root is not None:
            _save(
                ckpt_root,
                model=model,
                objective=objective,
                optimizer=opt,
                scheduler=scheduler,
                sampler=batches_sampler,
                accelerator=acc,
                state=state,
                settings=settings,
                best_params=best_params,
                keep=keep_checkpoints,
            )

    params_to_clip = trainable + obj_params
    completed = True
    with progress_bar(enabled=progress and acc.is_main_process) as bar:
        task = bar.add_task("backbone training", total=total_steps, completed=state["global_step"])
        for epoch in range(state["epoch"], config.epochs):
            batches_sampler.set_epoch(epoch)
            epoch_batches = batches_sampler.batches(epoch)
            start = batches_sampler.position
            if start % accum and start != len(epoch_batches):
                raise ValueError(f"checkpoint position {start} is not at an accumulation boundary of {accum}")
            prepared.train()
            objective.train()
            for g0 in range(start, len(epoch_batches), accum):
                group = epoch_batches[g0 : g0 + accum]
                t0 = time.perf_counter()
                losses, n_samples, res = [], 0, None
                for j, global_idx in enumerate(group):
                    last = j == len(group) - 1
                    acc.sync_gradients = last  # optimizer.step / zero_grad act on the last micro-step only
                    mine = shard_batch(global_idx, lengths=train.durations, num_shards=n_proc)[rank]
                    with contextlib.nullcontext() if last else acc.no_sync(prepared):
                        res, gbatch = global_objective(prepared, objective, train, mine)
                        if not torch.isfinite(res.loss):
                            raise FloatingPointError(
                                f"non-finite loss at epoch {epoch}, step {state['global_step']}: {res.logs}"
                            )
                        acc.backward(res.loss / len(group))
                    losses.append(float(res.loss.detach()))
                    n_samples += int(gbatch.losses.shape[0])
                if n_proc > 1 and obj_params:  # objective parameters are not under DDP: average them here
                    for p in obj_params:
                        if p.grad is not None:
                            torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.AVG)
                if config.max_grad_norm is not None:
                    acc.clip_grad_norm_(params_to_clip, config.max_grad_norm)
                lr = float(opt.param_groups[0]["lr"])  # the rate this step uses
                opt.step()
                scheduler.step()
                opt.zero_grad(set_to_none=True)
                batches_sampler.set_position(g0 + len(group))
                state["global_step"] += 1
                state["step_logs"].append(
                    {
                        "step": state["global_step"],
                        "epoch": epoch,
                        "loss": float(np.mean(losses)),
                        "lr": lr,
                        "n_samples": n_samples,
                        "step_time_s": time.perf_counter() - t0,
                        **res.logs,
                    }
                )
                bar.advance(task)
                halt = halt_after_steps is not None and state["global_step"] >= halt_after_steps
                if halt or (config.checkpoint_every and state["global_step"] % config.checkpoint_every == 0):
                    save()
                if halt:
                    completed = False
                    break
            if not completed:
                break
            objective.on_epoch_end(epoch)
            proba = predict_backbone(
                prepared if sharded else model, valid, batch_size=config.eval_batch_size, accelerator=acc
            )
            valid_score = score(select_metric, valid.y, proba.argmax(1))
            epoch_losses = [s["loss"] for s in state["step_logs"] if s["epoch"] == epoch]
            state["history"].append(
                {
                    "epoch": epoch,
                    "train_loss": float(np.mean(epoch_losses)) if epoch_losses else float("nan"),
                    f"valid_{select_metric}": valid_score,
                }
            )
            selection = ModelSelection(
                patience=patience,
                keep=keep,
                best_score=state["best_score"],
                best_epoch=state["best_epoch"],
                bad_epochs=state["bad_epochs"],
            )
            if selection.update(epoch, valid_score) and keep == "best":
                best_params = _trainable_snapshot(acc, prepared, model)  # "last" needs no copy
            state.update(
                best_score=selection.best_score,
                best_epoch=selection.best_epoch,
                bad_epochs=selection.bad_epochs,
            )
            state["epoch"] = epoch + 1
            batches_sampler.set_epoch(epoch + 1)
            stop = selection.stop
            if stop:
                state["epoch"] = config.epochs  # early stop: a resume must not train further
            save()
            if stop:
                break
    if completed and best_params is not None and keep == "best":
        _load_trainable(acc, prepared, model, best_params)
    prepared.eval()
    best = state["best_score"]
    return BackboneTrainResult(
        model=model,
        prepared=prepared,
        best_epoch=int(state["best_epoch"]),
        best_score=float("nan") if best is None else float(best),
        global_step=int(state["global_step"]),
        completed=completed,
        history=list(state["history"]),
        step_logs=list(state["step_logs"]),
        resumed_from=resumed_from,
    )


# ---------------------------------------------------------------------------------------------- state
def _trainable_snapshot(acc, prepared: nn.Module, model: nn.Module) -> dict[str, Tensor]:
    if str(acc.distributed_type).endswith("FSDP"):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.summon_full_params(prepared, writeback=False):
            return ckpt.trainable_state(model)
    return ckpt.trainable_state(model)


def _load_trainable(acc, prepared: nn.Module, model: nn.Module, params: Mapping[str, Tensor]) -> None:
    if str(acc.distributed_type).endswith("FSDP"):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        with FSDP.summon_full_params(prepared, writeback=True):
            ckpt.load_trainable_state(model, dict(params), where="best epoch")
        return
    ckpt.load_trainable_state(model, dict(params), where="best epoch")


def _save(
    root: Path,
    *,
    model,
    objective,
    optimizer,
    scheduler,
    sampler,
    accelerator,
    state,
    settings,
    best_params,
    keep: int,
) -> Path:
    name = ckpt.checkpoint_name(state["global_step"])
    final, tmp = root / name, root / f".tmp-{name}"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rng_tensors, rng_meta = ckpt.rng_state()
    ckpt.save_tensors(tmp / f"rng-rank{accelerator.process_index}.safetensors", rng_tensors)
    ckpt.write_json(tmp / f"rng-rank{accelerator.process_index}.json", rng_meta)
    if accelerator.is_main_process:
        ckpt.save_tensors(tmp / "trainable.safetensors", ckpt.trainable_state(model))
        if best_params is not None:
            ckpt.save_tensors(tmp / "best.safetensors", best_params)
        ckpt.save_tensors(
            tmp / "objective.safetensors", {k: v.detach().cpu() for k, v in objective.state_dict().items()}
        )
        opt_tensors, opt_meta = ckpt.optimizer_state(optimizer)
        ckpt.save_tensors(tmp / "optimizer.safetensors", opt_tensors)
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else None
        meta = {
            "format": ckpt.CHECKPOINT_FORMAT,
            **state,
            "settings": settings,
            "sampler": sampler.state_dict(),
            "scheduler": scheduler.state_dict(),
            "optimizer": opt_meta,
            "scaler": scaler,
            "has_best": best_params is not None,
        }
        # state.json last: its presence marks a complete checkpoint
        ckpt.write_json(tmp / "state.json", meta)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        ckpt.prune(root, keep=max(1, keep))
    accelerator.wait_for_everyone()
    return final


def _load(
    path: Path, *, model, objective, optimizer, scheduler, sampler, accelerator, settings
) -> tuple[dict[str, Any], dict[str, Tensor] | None]:
    import json

    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    if meta.get("format") != ckpt.CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(path)!r}: checkpoint format {meta.get('format')!r}, expected {ckpt.CHECKPOINT_FORMAT}"
        )
    saved = meta["settings"]
    diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
    if diff:
        raise ValueError(
            f"{str(path)!r} was written with other training settings (saved, now): {diff}; exact resume needs "
            "the same settings (or delete the checkpoint folder to start over)"
        )
    ckpt.load_trainable_state(model, ckpt.load_tensors(path / "trainable.safetensors"), where=str(path))
    obj_state = ckpt.load_tensors(path / "objective.safetensors")
    objective.load_state_dict(obj_state)  # copied onto the objective's device (float64 state stays on host)
    ckpt.load_optimizer_state(optimizer, ckpt.load_tensors(path / "optimizer.safetensors"), meta["optimizer"])
    scheduler.load_state_dict(meta["scheduler"])
    if meta.get("scaler") is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(meta["scaler"])
    sampler.load_state_dict(meta["sampler"])
    rank = accelerator.process_index
    rng = path / f"rng-rank{rank}.json"
    rng_meta = json.loads(rng.read_text(encoding="utf-8")) if rng.is_file() else None
    if rng_meta is None:
        raise FileNotFoundError(f"{str(path)!r} has no RNG state for process {rank}")
    ckpt.load_rng_state(ckpt.load_tensors(path / f"rng-rank{rank}.safetensors"), rng_meta)
    best = ckpt.load_tensors(path / "best.safetensors") if meta.get("has_best") else None
    keys = ("global_step", "epoch", "best_score", "best_epoch", "bad_epochs", "history", "step_logs")
    return {k: meta[k] for k in keys}, best
