"""The training loop: the same loop for every objective (METHODS.md §3) on cached embeddings.

The model gives per-sample losses; the objective turns them (plus the batch's domains and genders) into
the loss to minimise. Model selection uses the validation split only (METHODS.md §5). Multi-stage methods
(JTT, LfF, CFA; :class:`~fairser.objectives.stages.StagedObjective`) run their pre-stages through the
``prepare`` hook with this same loop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from torch import Tensor, nn

from fairser.config import TrainConfig
from fairser.objectives import GroupBatch, Objective
from fairser.objectives.stages import UNLABELED, StageContext, StagedObjective

__all__ = ["ArrayDataset", "TrainResult", "fit", "predict_embedding", "predict_proba", "score"]


@dataclass
class ArrayDataset:
    """Cached features and metadata of one split, aligned row by row.

    ``gender`` is 0 male, 1 female, -1 unknown; ``domain`` indexes the domains of the run; ``text_mask`` is
    True where the model may see the transcript; ``y`` is the class index, or ``UNLABELED`` (-1) for a row
    whose emotion label must not be used (its cross-entropy is 0).
    """

    audio: np.ndarray
    y: np.ndarray
    domain: np.ndarray
    gender: np.ndarray
    text: np.ndarray | None = None
    text_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.audio)
        for name in ("y", "domain", "gender", "text", "text_mask"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"ArrayDataset.{name} has {len(v)} rows, audio has {n}")

    def __len__(self) -> int:
        return len(self.audio)

    @property
    def group(self) -> np.ndarray:
        """Group id ``2 * domain + gender`` (-1 for unknown gender), as in :class:`GroupBatch`."""
        return np.where(self.gender >= 0, 2 * self.domain + self.gender, -1)

    def subset(self, rows: np.ndarray) -> ArrayDataset:
        """The rows ``rows`` (integer indices or a boolean mask) as a new dataset."""
        return ArrayDataset(
            **{
                name: None if getattr(self, name) is None else np.asarray(getattr(self, name))[rows]
                for name in ("audio", "y", "domain", "gender", "text", "text_mask")
            }
        )

    def concat(self, other: ArrayDataset) -> ArrayDataset:
        """This dataset's rows followed by ``other``'s (both must have the same columns)."""
        cols = {}
        for name in ("audio", "y", "domain", "gender", "text", "text_mask"):
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                raise ValueError(f"ArrayDataset.concat: {name} is present in one dataset only")
            cols[name] = None if a is None else np.concatenate([np.asarray(a), np.asarray(b)])
        return ArrayDataset(**cols)

    def tensors(self, idx: np.ndarray | slice = slice(None)) -> dict[str, Tensor | None]:
        def t(a, dtype):
            return None if a is None else torch.tensor(a[idx], dtype=dtype)  # copy: arrays may be read-only

        return {
            "audio": t(self.audio, torch.float32),
            "text": t(self.text, torch.float32),
            "text_mask": t(self.text_mask, torch.bool),
            "y": t(self.y, torch.long),
            "domain": t(self.domain, torch.long),
            "gender": t(self.gender, torch.long),
        }


@dataclass
class TrainResult:
    """The selected model (best validation epoch) and per-epoch / per-step logs.

    ``stages`` summarises the pre-stages of a multi-stage objective (e.g. JTT's identification model).
    """

    model: nn.Module
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    step_logs: list[dict[str, float]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)


def _batches(*, data: ArrayDataset, config: TrainConfig, seed: int, epoch: int):
    if config.sampler == "stratified":
        from fairser.sampler import GroupStratifiedSampler

        sampler = GroupStratifiedSampler(groups=data.group, batch_size=config.batch_size, seed=seed)
        sampler.set_epoch(epoch)
        yield from (np.asarray(b) for b in sampler)
    elif config.sampler == "balanced":
        from fairser.sampler import BalancedGroupSampler

        sampler = BalancedGroupSampler(
            domain=data.domain, sensitive=data.gender, y=data.y, batch_size=config.batch_size, seed=seed
        )
        sampler.set_epoch(epoch)
        yield from (np.asarray(b) for b in sampler)
    else:
        order = np.random.default_rng([seed, epoch]).permutation(len(data))
        yield from (order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size))


@torch.no_grad()
def predict_proba(model: nn.Module, data: ArrayDataset, *, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities (N, C) for every row of ``data``."""
    model.eval()
    out = []
    for i in range(0, len(data), batch_size):
        b = data.tensors(slice(i, i + batch_size))
        out.append(torch.softmax(model(b["audio"], b["text"], b["text_mask"]).logits, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


@torch.no_grad()
def predict_embedding(model: nn.Module, data: ArrayDataset, *, batch_size: int = 4096) -> np.ndarray:
    """The model's shared embedding (N, H) for every row of ``data`` (e.g. for a gender probe)."""
    model.eval()
    out = []
    for i in range(0, len(data), batch_size):
        b = data.tensors(slice(i, i + batch_size))
        out.append(model(b["audio"], b["text"], b["text_mask"]).embedding.numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def score(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    """Model-selection score (the ``select_metric`` values of :class:`fairser.config.TrainConfig`)."""
    if metric == "weighted_f1":
        return float(f1_score(y, pred, average="weighted", zero_division=0))
    if metric == "macro_f1":
        return float(f1_score(y, pred, average="macro", zero_division=0))
    if metric == "uar":
        return float(balanced_accuracy_score(y, pred))
    if metric == "accuracy":
        return float(accuracy_score(y, pred))
    raise ValueError(f"unknown select_metric {metric!r}; use weighted_f1, macro_f1, uar or accuracy")


def fit(
    *,
    model: nn.Module,
    objective: Objective,
    train: ArrayDataset,
    valid: ArrayDataset,
    config: TrainConfig,
    seed: int,
    log_every: int = 1,
    keep: Literal["best", "last"] = "best",
) -> TrainResult:
    """Train ``model`` with ``objective``; keep the epoch with the best validation ``config.select_metric``.

    Early stopping after ``config.patience`` epochs without improvement. Every step's objective logs
    (e.g. MinMaxGAP's ``lambda`` and ``R``) are kept in ``step_logs``. A
    :class:`~fairser.objectives.stages.StagedObjective` first runs its pre-stages (``prepare``), then the
    main loop starts from the same random state as without them. ``keep="last"`` returns the last epoch's
    model instead of the best one (no early stopping; e.g. JTT's identification model after T epochs).
    """
    if keep not in ("best", "last"):
        raise ValueError(f"fit: keep={keep!r} must be 'best' or 'last'")
    torch.manual_seed(seed)
    stages: list[dict[str, Any]] = []
    if isinstance(objective, StagedObjective):
        context = StageContext(
            model=model,
            train=train,
            valid=valid,
            config=config,
            seed=seed,
            fit=_fit_loop,
            predict_proba=predict_proba,
        )
        objective.prepare(context=context)
        stages = context.stages
        torch.manual_seed(seed)
    result = _fit_loop(
        model=model,
        objective=objective,
        train=train,
        valid=valid,
        config=config,
        seed=seed,
        log_every=log_every,
        keep=keep,
    )
    result.stages = stages
    return result


def _fit_loop(
    *,
    model: nn.Module,
    objective: Objective,
    train: ArrayDataset,
    valid: ArrayDataset,
    config: TrainConfig,
    seed: int,
    log_every: int = 1,
    keep: Literal["best", "last"] = "best",
) -> TrainResult:
    """The loop of :func:`fit`, without the pre-stage hook (what a pre-stage trains its models with)."""
    torch.manual_seed(seed)
    meta = train.tensors()
    objective.setup(domain=meta["domain"], sensitive=meta["gender"], y=meta["y"])
    params = list(model.parameters()) + [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    best_state, best_score, best_epoch, bad_epochs = None, -np.inf, -1, 0
    history: list[dict[str, float]] = []
    step_logs: list[dict[str, float]] = []
    step = 0
    for epoch in range(config.epochs):
        model.train()
        objective.train()
        losses = []
        for idx in _batches(data=train, config=config, seed=seed, epoch=epoch):
            b = train.tensors(idx)
            out = model(b["audio"], b["text"], b["text_mask"])
            per_sample = nn.functional.cross_entropy(
                out.logits, b["y"], reduction="none", ignore_index=UNLABELED
            )
            res = objective(
                GroupBatch(
                    losses=per_sample,
                    domain=b["domain"],
                    sensitive=b["gender"],
                    logits=out.logits,
                    y=b["y"],
                    index=torch.as_tensor(idx, dtype=torch.long),
                    embedding=out.embedding,
                )
            )
            if not torch.isfinite(res.loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {step}: {res.logs}")
            opt.zero_grad(set_to_none=True)
            res.loss.backward()
            opt.step()
            losses.append(float(res.loss.detach()))
            if step % log_every == 0:
                step_logs.append({"step": step, "epoch": epoch, **res.logs})
            step += 1
        objective.on_epoch_end(epoch)
        pred = predict_proba(model, valid).argmax(1)
        valid_score = score(config.select_metric, valid.y, pred)
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                f"valid_{config.select_metric}": valid_score,
            }
        )
        if keep == "last":
            best_state, best_score, best_epoch = None, valid_score, epoch
        elif valid_score > best_score:
            best_state, best_score, best_epoch, bad_epochs = (
                copy.deepcopy(model.state_dict()),
                valid_score,
                epoch,
                0,
            )
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model, best_epoch=best_epoch, best_score=float(best_score), history=history, step_logs=step_logs
    )
