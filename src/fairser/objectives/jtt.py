"""JTT, Just Train Twice (Liu et al. 2021, "Just Train Twice: Improving Group Robustness without Training
Group Information", ICML): ERM for T epochs, then a fresh model with the first model's training errors
up-weighted by lambda_up. Needs no demographic labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from fairser.objectives._common import check_range, require_field
from fairser.objectives.base import GroupBatch, ObjectiveOutput, register
from fairser.objectives.erm import ERM
from fairser.objectives.stages import StageContext, StagedObjective

__all__ = ["JTT"]

#: The error set's file in a run's stage folder (backbone runs: a resumed run reuses it).
ERRORS_FILE = "jtt_errors.npy"


@register
class JTT(StagedObjective):
    """Just Train Twice (Liu et al. 2021).

    Stage 1 (:meth:`prepare`, run by the run pipeline for either backend): an identification model with
    the main model's initial weights is trained with ERM for ``first_epochs`` epochs (the last epoch is kept, as in the
    paper: T is a hyperparameter, not an early-stopping result). Its misclassified training samples form
    the error set ``E``. Stage 2 (the main loop, a fresh model): ``L = sum_i w_i l_i / (N_batch * w_bar)``
    with ``w_i = lambda_up`` for ``i`` in ``E`` and 1 otherwise, ``w_bar`` the mean weight over the training
    set. The paper up-samples ``E`` lambda_up times; weighting the loss has the same expected risk
    **(our choice)**, and dividing by ``w_bar`` keeps the loss on the ERM scale (the up-sampled set's mean).

    Before an error set is known (the objective used outside a run), the loss is plain ERM, i.e. stage 1.

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    first_epochs : int
        T, the epochs of the identification model (>= 1).
    lambda_up : float
        Weight of the error set (>= 1; 1 is ERM).
    """

    name = "jtt"

    def __init__(
        self,
        *,
        n_domains: int,
        n_classes: int,
        n_values: int = 2,
        first_epochs: int = 5,
        lambda_up: float = 5.0,
    ) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        self.first_epochs = int(check_range(self.name, "first_epochs", first_epochs, low=1))
        self.lambda_up = check_range(self.name, "lambda_up", lambda_up, low=1.0)
        self.weights: Tensor | None = None
        self._is_error: Tensor | None = None
        self.errors: np.ndarray | None = None
        self._info: dict[str, Any] = {}

    def set_errors(self, errors: np.ndarray, *, labelled: np.ndarray | None = None) -> None:
        """Use ``errors`` (bool per training row: misclassified by the identification model) as ``E``.

        ``labelled`` (bool per row, default all) marks the rows with an emotion label, over which the
        error rate in :meth:`summary` is computed.
        """
        errors = np.asarray(errors)
        if errors.ndim != 1 or errors.dtype != bool or errors.size == 0:
            raise ValueError(
                f"{self.name}: errors must be a non-empty 1-D bool array; got {errors.dtype} {errors.shape}"
            )
        labelled = np.ones_like(errors) if labelled is None else np.asarray(labelled, dtype=bool)
        if labelled.shape != errors.shape:
            raise ValueError(f"{self.name}: labelled has shape {labelled.shape}, errors {errors.shape}")
        self.errors = errors
        self._is_error = torch.as_tensor(errors)
        w = torch.where(self._is_error, self.lambda_up, 1.0).float()
        self.weights = w / w.mean()
        self._info = {
            "jtt_error_set_size": int(errors.sum()),
            "jtt_error_rate": float(errors[labelled].mean()) if labelled.any() else float("nan"),
        }

    def prepare(self, *, context: StageContext) -> None:
        """Stage 1, for any backend: the identification model (``context.trainer.new_model()``, the main
        model's initial weights) trained with ERM for ``first_epochs`` epochs, last epoch kept; its
        misclassified training rows become ``E``. It is freed (``trainer.release()``) before the main model
        is built. With a stage folder (backbone runs) the error set is saved there as ``jtt_errors.npy`` and
        a resumed run reuses it instead of training the stage again."""
        y = np.asarray(context.train.y)
        labelled = y >= 0
        record: dict[str, Any] = {"stage": "jtt_identification", "epochs": self.first_epochs}
        saved = context.stage_file(ERRORS_FILE)
        if saved is not None and saved.is_file():
            errors = np.load(saved)
            if errors.shape != (len(y),) or errors.dtype != bool:
                raise ValueError(
                    f"{saved} holds {errors.dtype} {errors.shape}, not the error set of these {len(y)} "
                    "training rows; delete it (or the run folder) to run JTT's identification stage again"
                )
            self.set_errors(errors, labelled=labelled)
            context.stages.append({**record, "reused": str(saved), **self._info})
            return
        trainer = context.trainer
        ident = trainer.new_model()
        res = trainer.fit(
            model=ident,
            objective=ERM(n_domains=self.n_domains, n_classes=self.n_classes, n_values=self.n_values),
            train=context.train,
            valid=context.valid,
            epochs=self.first_epochs,
            keep="last",
        )
        pred = trainer.predict_proba(res.model, context.train).argmax(1)
        self.set_errors((pred != y) & labelled, labelled=labelled)
        context.save_array(ERRORS_FILE, self.errors)
        del ident, res
        trainer.release()
        context.stages.append({**record, **self._info})

    def summary(self) -> dict[str, Any]:
        return dict(self._info)

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        losses = batch.losses
        erm = losses.mean()
        if self.weights is None:
            return ObjectiveOutput(loss=erm, logs={"erm": float(erm.detach())})
        index = require_field(batch, "index", self.name)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.weights.numel()):
            raise ValueError(
                f"{self.name}: batch.index must lie in [0, {self.weights.numel()}) (the training rows of the "
                f"error set); got min {int(index.min())}, max {int(index.max())}"
            )
        w = self.weights.to(losses.device).index_select(0, index).to(losses.dtype)
        loss = (w * losses).mean()
        error_frac = (
            float(self._is_error.index_select(0, index.cpu()).float().mean()) if index.numel() else 0.0
        )
        logs = {"erm": float(erm.detach()), "weighted": float(loss.detach()), "error_frac": error_frac}
        return ObjectiveOutput(loss=loss, logs=logs)
