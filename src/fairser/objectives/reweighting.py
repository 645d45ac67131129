"""Reweighting (Kamiran & Calders 2012; AIF360 ``Reweighing``): per-sample weights that make the sensitive
attribute independent of the label within each domain, and the objective that trains with them."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fairser.objectives._common import require_field
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, register

__all__ = ["Reweighting", "reweighing_weights"]


def _codes(values, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"reweighing_weights: {what} must be 1-D; got shape {arr.shape}")
    return np.unique(arr, return_inverse=True)[1].reshape(-1)


def _cell_sizes(*codes: np.ndarray) -> np.ndarray:
    """Size of each sample's cell, the cell being the combination of the given codes (vectorised)."""
    _, inverse, counts = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.reshape(-1)].astype(np.float64)


def reweighing_weights(*, domain: np.ndarray, sensitive: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kamiran-Calders reweighing weights, within each domain.

    ``w_i = P(d, s) P(d, y) / (P(d) P(d, s, y)) = n_ds * n_dy / (n_d * n_dsy)`` for the training sample ``i``
    in cell ``(d, s, y)`` (Kamiran & Calders 2012, "Data preprocessing techniques for classification without
    discrimination", KAIS 33(1); AIF360's ``Reweighing`` is the one-domain, binary case), for a sensitive
    attribute ``s`` with any number of values. Under these weights ``P_w(d, s, y) = P(d) P(s | d) P(y | d)``:
    the attribute is independent of the label within each domain, and the weights sum to ``N``, provided
    every ``(s, y)`` combination occurs in the domain (an empty cell cannot be weighted into existence; its
    mass is then missing). An unknown value (-1) is one more value of ``s`` here, so those samples keep
    their own label balance and their share of the domain (as in the first release).

    Parameters
    ----------
    domain, sensitive, y : array (N,)
        Domain, sensitive-attribute value and label of each training sample (any values with equality, e.g.
        ints or strings).

    Returns
    -------
    np.ndarray (N,)
        The weight of each sample.
    """
    d, s, label = _codes(domain, "domain"), _codes(sensitive, "sensitive"), _codes(y, "y")
    if not d.shape == s.shape == label.shape:
        raise ValueError(
            f"reweighing_weights: domain, sensitive and y must have one length; got {d.shape[0]}, {s.shape[0]}, "
            f"{label.shape[0]}"
        )
    if d.size == 0:
        return np.empty(0)
    return _cell_sizes(d, s) * _cell_sizes(d, label) / (_cell_sizes(d) * _cell_sizes(d, s, label))


@register
class Reweighting(Objective):
    """Reweighting (Kamiran & Calders 2012): ``L = mean_i w_i * l_i`` with fixed per-sample weights.

    The weights are looked up by ``batch.index``, the row of each sample in the training set. By default
    they are :func:`reweighing_weights` of the training set, computed in :meth:`setup` (the trainer calls
    it with the training set's metadata); explicit ``weights`` override them. ``mean_i w_i l_i`` is an
    unbiased estimate of the weighted risk (reweighing weights average to 1 over the training set)
    **(our choice)**; ``normalize=True`` uses ``sum_i w_i l_i / sum_i w_i`` instead (lower variance,
    slightly biased).

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    n_values : int
        Number of values of the sensitive attribute (the weights need not know it: they count cells).
    weights : array (N_train,), optional
        Non-negative finite weight of each training sample (default: reweighing weights from :meth:`setup`).
    normalize : bool
        Divide by the batch's weight sum instead of the batch size.
    """

    name = "reweighting"
    compares_values = True

    def __init__(
        self,
        *,
        n_domains: int,
        n_classes: int,
        n_values: int = 2,
        weights: np.ndarray | Tensor | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        self.normalize = bool(normalize)
        self.weights: Tensor | None
        self._given = weights is not None
        # a hyperparameter, not learned state: not in state_dict
        self.register_buffer("weights", None if weights is None else self._checked(weights), persistent=False)

    def _checked(self, weights: np.ndarray | Tensor) -> Tensor:
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if w.dim() != 1 or w.numel() == 0:
            raise ValueError(
                f"{self.name}: weights must be a non-empty 1-D array; got shape {tuple(w.shape)}"
            )
        bad = ~torch.isfinite(w) | (w < 0)
        if bad.any():
            row = int(bad.nonzero()[0])
            raise ValueError(
                f"{self.name}: weights must be finite and >= 0; weights[{row}] = {w[row].item()}"
            )
        return w.float()

    def setup(self, *, domain: Tensor, sensitive: Tensor, y: Tensor) -> None:
        """Compute the reweighing weights of the training set (unless ``weights`` were given)."""
        n_train = len(domain)
        if self._given:
            if self.weights.numel() != n_train:
                raise ValueError(
                    f"{self.name}: {self.weights.numel()} weights were given but the training set has "
                    f"{n_train} samples"
                )
            return
        w = reweighing_weights(domain=np.asarray(domain), sensitive=np.asarray(sensitive), y=np.asarray(y))
        self.weights = self._checked(w).to(self.weights.device if self.weights is not None else "cpu")

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        if self.weights is None:
            raise ValueError(
                f"{self.name}: no weights; pass weights=... or call setup() with the training set"
            )
        index = require_field(batch, "index", self.name)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.weights.numel()):
            raise ValueError(
                f"{self.name}: batch.index must lie in [0, {self.weights.numel()}) (rows of the training set "
                f"the weights were computed on); got min {int(index.min())}, max {int(index.max())}"
            )
        losses = batch.losses
        w = self.weights.index_select(0, index.to(self.weights.device)).to(losses)
        weighted = (w * losses).sum()
        loss = weighted / w.sum().clamp_min(1e-12) if self.normalize else weighted / losses.shape[0]
        return ObjectiveOutput(
            loss=loss, logs={"erm": float(losses.detach().mean()), "weighted": float(loss.detach())}
        )
