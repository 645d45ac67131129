"""Checkpoints for exact resume: tensors in safetensors, everything else in JSON (no pickle anywhere).

A checkpoint is a folder ``step-00000042/`` holding

* ``trainable.safetensors``: the trainable parameters (LoRA adapters, head, unfrozen layers), by name;
* ``best.safetensors``: the trainable parameters of the best validation epoch so far (model selection);
* ``objective.safetensors``: the objective's state (MinMaxGAP's dual weight and EMA, Group DRO's ``q``, ...);
* ``optimizer.safetensors`` + the optimizer's non-tensor state and the scheduler's state in ``state.json``;
* ``rng-rank<r>.safetensors`` / ``rng-rank<r>.json``: every process's torch (CPU and CUDA), NumPy and Python
  RNG states, so dropout masks continue exactly;
* ``state.json``: step, epoch, sampler position, history, step logs, best score.

It is written to a temporary folder and renamed when complete, so a run killed while saving leaves the
previous checkpoint intact. Implemented for one process and DDP (parameters replicated); FSDP and DeepSpeed
shard parameters or optimizer states and are refused with a clear error.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "CHECKPOINT_FORMAT",
    "latest_checkpoint",
    "load_rng_state",
    "load_optimizer_state",
    "optimizer_state",
    "rng_state",
    "trainable_state",
]

CHECKPOINT_FORMAT = 1
_PREFIX = "step-"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters with ``requires_grad``, by name (what a checkpoint stores)."""
    return {
        n: p.detach().to("cpu", copy=True).contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], *, where: str) -> None:
    """Copy ``state`` into the trainable parameters; names must match exactly."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"{where}: trainable parameters do not match the checkpoint (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); was it written for another backbone or LoRA setting?"
        )
    with torch.no_grad():
        for name, p in params.items():
            if p.shape != state[name].shape:
                raise ValueError(
                    f"{where}: {name} has shape {tuple(p.shape)}, checkpoint {tuple(state[name].shape)}"
                )
            p.copy_(state[name].to(p.device, p.dtype))


def optimizer_state(optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into tensors (for safetensors) and JSON-serialisable rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states: torch (CPU, every CUDA device) as tensors, NumPy and Python as JSON."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    meta = {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }
    return tensors, meta


def load_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in ``directory`` (``None`` if there is none)."""
    root = Path(directory)
    if not root.is_dir():
        return None
    done = [p for p in root.glob(f"{_PREFIX}*") if p.is_dir() and (p / "state.json").is_file()]
    return max(done, key=lambda p: int(p.name[len(_PREFIX) :]), default=None)


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{int(step):08d}"


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, default=_json_default), encoding="utf-8")


def _json_default(obj: Any):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint's JSON")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} is missing; the checkpoint is incomplete")
    return load_file(str(path))


def prune(directory: Path, *, keep: int) -> None:
    """Remove all but the ``keep`` newest complete checkpoints (and stale temporary folders)."""
    done = sorted(
        (p for p in directory.glob(f"{_PREFIX}*") if p.is_dir() and (p / "state.json").is_file()),
        key=lambda p: int(p.name[len(_PREFIX) :]),
    )
    for old in done[: max(0, len(done) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in directory.glob(f".tmp-{_PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
