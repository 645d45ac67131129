"""The training loop: the same loop for every objective (METHODS.md §3) on cached embeddings.

The model gives per-sample losses; the objective turns them (plus the batch's domains and genders) into
the loss to minimise. Model selection uses the validation split only (METHODS.md §5, :class:`ModelSelection`,
shared with the backbone loop). Multi-stage methods (JTT, LfF, CFA) train their pre-stage models with this
same loop, through the run pipeline's trainer (:mod:`fairser.run`); ``fit`` knows nothing about them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from torch import Tensor, nn

from fairser.config import TrainConfig
from fairser.grouping import group_index
from fairser.objectives import GroupBatch, Objective
from fairser.objectives.stages import UNLABELED

__all__ = [
    "ArrayDataset",
    "ModelSelection",
    "TrainResult",
    "fit",
    "predict_embedding",
    "predict_proba",
    "score",
]


@dataclass
class ArrayDataset:
    """Cached features and metadata of one split, aligned row by row.

    ``sensitive`` is the sensitive attribute's value id (``0 .. n_values - 1`` in the order of the run's
    :class:`~fairser.grouping.Grouper`; -1 unknown); ``domain`` indexes the domains of the run; ``text_mask``
    is True where the model may see the transcript; ``y`` is the class index, or ``UNLABELED`` (-1) for a row
    whose emotion label must not be used (its cross-entropy is 0).
    """

    audio: np.ndarray
    y: np.ndarray
    domain: np.ndarray
    sensitive: np.ndarray
    text: np.ndarray | None = None
    text_mask: np.ndarray | None = None
    n_values: int = 2

    _COLUMNS = ("audio", "y", "domain", "sensitive", "text", "text_mask")

    def __post_init__(self) -> None:
        n = len(self.audio)
        for name in self._COLUMNS[1:]:
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"ArrayDataset.{name} has {len(v)} rows, audio has {n}")

    def __len__(self) -> int:
        return len(self.audio)

    @property
    def group(self) -> np.ndarray:
        """Group id ``n_values * domain + sensitive`` (-1 for an unknown value), as in :class:`GroupBatch`."""
        return group_index(np.asarray(self.domain), np.asarray(self.sensitive), self.n_values)

    def subset(self, rows: np.ndarray) -> ArrayDataset:
        """The rows ``rows`` (integer indices or a boolean mask) as a new dataset."""
        cols = {
            name: None if getattr(self, name) is None else np.asarray(getattr(self, name))[rows]
            for name in self._COLUMNS
        }
        return ArrayDataset(**cols, n_values=self.n_values)

    def concat(self, other: ArrayDataset) -> ArrayDataset:
        """This dataset's rows followed by ``other``'s (both must have the same columns and values)."""
        if self.n_values != other.n_values:
            raise ValueError(f"ArrayDataset.concat: n_values {self.n_values} and {other.n_values} differ")
        cols = {}
        for name in self._COLUMNS:
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                raise ValueError(f"ArrayDataset.concat: {name} is present in one dataset only")
            cols[name] = None if a is None else np.concatenate([np.asarray(a), np.asarray(b)])
        return ArrayDataset(**cols, n_values=self.n_values)

    def tensors(self, idx: np.ndarray | slice = slice(None)) -> dict[str, Tensor | None]:
        def t(a, dtype):
            return None if a is None else torch.tensor(a[idx], dtype=dtype)  # copy: arrays may be read-only

        return {
            "audio": t(self.audio, torch.float32),
            "text": t(self.text, torch.float32),
            "text_mask": t(self.text_mask, torch.bool),
            "y": t(self.y, torch.long),
            "domain": t(self.domain, torch.long),
            "sensitive": t(self.sensitive, torch.long),
        }


@dataclass
class TrainResult:
    """The selected model (:class:`ModelSelection`) and per-epoch / per-step logs."""

    model: nn.Module
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    step_logs: list[dict[str, float]] = field(default_factory=list)


@dataclass
class ModelSelection:
    """Which epoch's model a training loop returns (METHODS.md §5): the one rule of both loops.

    ``keep="best"``: an epoch is kept when its validation score is strictly higher than every earlier epoch's
    (the first epoch is always kept), and training stops once ``patience`` epochs in a row brought none.
    ``keep="last"``: every epoch replaces the kept one and training never stops early (``best_epoch`` and
    ``best_score`` then describe the last epoch, the one returned).
    """

    patience: int
    keep: Literal["best", "last"] = "best"
    best_score: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0

    def __post_init__(self) -> None:
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep={self.keep!r} must be 'best' or 'last'")

    def update(self, epoch: int, score: float) -> bool:
        """Record epoch ``epoch``'s validation score; True when its model is now the one to keep."""
        if self.keep == "last" or self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch, self.bad_epochs = float(score), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        """True once ``patience`` epochs in a row did not improve (never with ``keep="last"``)."""
        return self.keep == "best" and self.bad_epochs >= self.patience


def _batches(*, data: ArrayDataset, config: TrainConfig, seed: int, epoch: int):
    if config.sampler == "stratified":
        from fairser.sampler import GroupStratifiedSampler

        sampler = GroupStratifiedSampler(groups=data.group, batch_size=config.batch_size, seed=seed)
        sampler.set_epoch(epoch)
        yield from (np.asarray(b) for b in sampler)
    elif config.sampler == "balanced":
        from fairser.sampler import BalancedGroupSampler

        sampler = BalancedGroupSampler(
            domain=data.domain, sensitive=data.sensitive, y=data.y, batch_size=config.batch_size, seed=seed
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
    """Train ``model`` with ``objective``; keep the model :class:`ModelSelection` picks on ``valid``.

    Early stopping after ``config.patience`` epochs without improvement of ``config.select_metric``; with
    ``keep="last"`` every epoch is trained and the last one returned (e.g. JTT's identification model). Every
    step's objective logs (e.g. MinMaxGAP's ``lambda`` and ``R``) are kept in ``step_logs``. Staged methods
    run their pre-stages before this, through the run pipeline (:mod:`fairser.run`).
    """
    if keep not in ("best", "last"):
        raise ValueError(f"fit: keep={keep!r} must be 'best' or 'last'")
    torch.manual_seed(seed)
    meta = train.tensors()
    objective.setup(domain=meta["domain"], sensitive=meta["sensitive"], y=meta["y"])
    params = list(model.parameters()) + [p for p in objective.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    selection = ModelSelection(patience=config.patience, keep=keep)
    best_state = None
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
                    sensitive=b["sensitive"],
                    n_values=train.n_values,
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
        if selection.update(epoch, valid_score) and keep == "best":
            best_state = copy.deepcopy(model.state_dict())
        if selection.stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        best_epoch=selection.best_epoch,
        best_score=float("nan") if selection.best_score is None else float(selection.best_score),
        history=history,
        step_logs=step_logs,
    )
