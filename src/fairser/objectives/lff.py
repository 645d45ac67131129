"""LfF, Learning from Failure (Nam, Cha, Ahn, Lee, Shin 2020, "Learning from Failure: Training Debiased
Classifier from Biased Classifier", NeurIPS): a biased model trained with generalized cross-entropy and a
debiased model whose samples are weighted by their relative difficulty ``l_b / (l_b + l_d)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from fairser.objectives._common import check_choice, check_range, require_field
from fairser.objectives.base import GroupBatch, ObjectiveOutput, register
from fairser.objectives.stages import StageContext, StagedObjective, gce_loss

__all__ = ["LearningFromFailure", "relative_difficulty"]


def relative_difficulty(loss_biased: Tensor, loss_debiased: Tensor, *, eps: float = 1e-8) -> Tensor:
    """LfF's sample weight ``W = l_b / (l_b + l_d)`` (Nam et al. 2020, eq. 3), in ``[0, 1]``.

    High where the biased model fails (large ``l_b``) and the debiased one does not: the bias-conflicting
    samples the debiased model should learn from.
    """
    return loss_biased / (loss_biased + loss_debiased + eps)


@register
class LearningFromFailure(StagedObjective):
    """Learning from Failure (Nam et al. 2020).

    Two classifiers train together. The *biased* one minimises the generalized cross-entropy
    (:func:`~fairser.objectives.stages.gce_loss`, ``q``), which makes it rely on the easiest cues. The
    *debiased* one (the main model) minimises ``mean_i W_i l_i`` where ``l_i = batch.losses`` and
    ``W_i = l_b,i / (l_b,i + l_d,i)`` (:func:`relative_difficulty`, no gradient), computed as in the
    authors' code: ``l_b`` and ``l_d`` are per-sample exponential moving averages (momentum ``ema``) of
    both models' cross-entropies, each divided by its maximum over the training samples of the same class.
    The loss is ``mean_i W_i l_i + mean_i GCE_b,i``.

    Where the biased classifier comes from (``biased``):

    - ``"network"``: an untrained copy of the main model on the same inputs, attached by
      the run pipeline (the :meth:`prepare` hook, cached-feature heads), which feeds it ``batch.index`` rows of the
      training set: the paper's setting (two networks).
    - ``"embedding"``: a linear classifier on the main model's shared embedding with the gradient stopped,
      for backbones where a second network is too costly (a speech LLM) or when the objective is used outside
      ``fit``. A lighter variant **(our choice)**: the biased classifier then sees only what the debiased
      model's embedding keeps.
    - ``"auto"`` (default): ``"network"`` when the run attached one, else ``"embedding"``. The log ``biased_net``
      says which was used.

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    embed_dim : int
        Dimension of ``batch.embedding`` (for the ``"embedding"`` variant).
    q : float
        GCE exponent (0 < q <= 1; the paper's 0.7).
    ema : float
        Momentum of the per-sample loss averages (the paper's 0.7).
    biased : {"auto", "network", "embedding"}
        See above.
    """

    name = "lff"
    requires = ("embed_dim",)

    def __init__(
        self,
        *,
        n_domains: int,
        n_classes: int,
        n_values: int = 2,
        embed_dim: int,
        q: float = 0.7,
        ema: float = 0.7,
        biased: str = "auto",
    ) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        if int(embed_dim) < 1:
            raise ValueError(f"{self.name}: embed_dim={embed_dim} must be >= 1")
        self.embed_dim = int(embed_dim)
        self.q = check_range(self.name, "q", q, low=0.0, high=1.0, low_open=True)
        self.ema = check_range(self.name, "ema", ema, low=0.0, high=1.0, high_open=True)
        self.biased = check_choice(self.name, "biased", biased, ("auto", "network", "embedding"))
        self.biased_head: nn.Module | None = (
            nn.Linear(self.embed_dim, n_classes) if self.biased != "network" else None
        )
        self.biased_network: nn.Module | None = None
        self._inputs = None  # the training set whose rows batch.index points at (network variant)
        self.ema_biased: Tensor
        self.ema_debiased: Tensor
        self.seen: Tensor
        self.label: Tensor
        for name, dtype in (
            ("ema_biased", torch.float32),
            ("ema_debiased", torch.float32),
            ("seen", torch.bool),
        ):
            self.register_buffer(name, torch.zeros(0, dtype=dtype), persistent=False)
        self.register_buffer("label", torch.zeros(0, dtype=torch.long), persistent=False)

    # -- state ------------------------------------------------------------------------------------------
    def _ensure_size(self, n: int) -> None:
        old = self.ema_biased.numel()
        if n <= old:
            return
        pad = n - old
        self.ema_biased = torch.cat([self.ema_biased, torch.zeros(pad)])
        self.ema_debiased = torch.cat([self.ema_debiased, torch.zeros(pad)])
        self.seen = torch.cat([self.seen, torch.zeros(pad, dtype=torch.bool)])
        self.label = torch.cat([self.label, torch.full((pad,), -1, dtype=torch.long)])

    def setup(self, *, domain: Tensor, sensitive: Tensor, y: Tensor) -> None:
        self.ema_biased = torch.zeros(0)
        self.ema_debiased = torch.zeros(0)
        self.seen = torch.zeros(0, dtype=torch.bool)
        self.label = torch.zeros(0, dtype=torch.long)
        self._ensure_size(int(y.numel()))
        self.label = y.detach().cpu().long().clone()

    def prepare(self, *, context: StageContext) -> None:
        if self.biased == "embedding":
            return
        self.biased_network = context.trainer.new_model()
        self._inputs = context.train
        self.biased_head = None  # unused with a network: keep it out of the optimiser
        context.stages.append(
            {
                "stage": "lff_biased_network",
                "params": sum(p.numel() for p in self.biased_network.parameters()),
            }
        )

    def _biased_logits(self, batch: GroupBatch, index: Tensor) -> Tensor:
        if self.biased_network is not None:
            b = self._inputs.tensors(index.cpu().numpy())
            return self.biased_network(b["audio"], b["text"], b["text_mask"]).logits
        if self.biased == "network":
            raise RuntimeError(
                f"{self.name}: biased='network' needs the network attached by the run pipeline (prepare "
                "hook); use biased='embedding' or 'auto' outside a run"
            )
        embedding = require_field(batch, "embedding", self.name)
        if embedding.dim() != 2 or embedding.shape[1] != self.embed_dim:
            raise ValueError(
                f"{self.name}: GroupBatch.embedding has shape {tuple(embedding.shape)}; expected "
                f"(N, {self.embed_dim}) (embed_dim)"
            )
        return self.biased_head(embedding.detach())

    def sample_weights(self) -> Tensor:
        """Current ``W_i`` of every training sample seen so far (NaN for samples not seen yet)."""
        lb, ld = self._normalised(torch.arange(self.ema_biased.numel()))
        return torch.where(self.seen, relative_difficulty(lb, ld), torch.full_like(lb, float("nan")))

    def _normalised(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """EMA losses at ``index`` divided by the class-wise maximum over seen training samples."""
        valid = self.seen & (self.label >= 0)
        cls = torch.where(valid, self.label, torch.zeros_like(self.label))
        out = []
        for ema in (self.ema_biased, self.ema_debiased):
            vals = torch.where(valid, ema, torch.zeros_like(ema))
            cmax = torch.zeros(self.n_classes).scatter_reduce(0, cls, vals, reduce="amax", include_self=True)
            lab = self.label[index].clamp_min(0)
            out.append(ema[index] / cmax[lab].clamp_min(1e-8))
        return out[0], out[1]

    # -- loss -------------------------------------------------------------------------------------------
    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        index = require_field(batch, "index", self.name)
        y = require_field(batch, "y", self.name)
        if index.numel() and int(index.min()) < 0:
            raise ValueError(f"{self.name}: batch.index must be >= 0 (training rows); got {int(index.min())}")
        idx = index.detach().cpu().long()
        self._ensure_size(int(idx.max()) + 1 if idx.numel() else 0)
        losses = batch.losses
        logits_b = self._biased_logits(batch, index)
        labelled = y >= 0
        gce = gce_loss(logits_b, y, q=self.q)
        n_lab = labelled.to(losses.dtype).sum().clamp_min(1.0)
        with torch.no_grad():
            ce_b = F.cross_entropy(logits_b.detach(), y.clamp_min(0), reduction="none").cpu()
            ce_d = losses.detach().float().cpu()
            if self.training:
                first = ~self.seen[idx]
                for ema, value in ((self.ema_biased, ce_b), (self.ema_debiased, ce_d)):
                    ema[idx] = torch.where(first, value, self.ema * ema[idx] + (1 - self.ema) * value)
                self.seen[idx] = True
                self.label[idx] = y.detach().cpu().long()
            lb, ld = self._normalised(idx)
            current = self.seen[idx]
            weight = torch.where(current, relative_difficulty(lb, ld), torch.full_like(lb, 0.5))
            weight = weight.to(losses.device, losses.dtype) * labelled.to(losses.dtype)
        debiased = (weight * losses).sum() / n_lab
        biased = gce.sum() / n_lab
        loss = debiased + biased
        with torch.no_grad():
            acc_b = ((logits_b.argmax(1) == y) & labelled).to(losses.dtype).sum() / n_lab
        logs = {
            "erm": float(losses.detach().mean()),
            "weighted": float(debiased.detach()),
            "gce_biased": float(biased.detach()),
            "biased_acc": float(acc_b),
            "mean_weight": float(weight.mean()) if weight.numel() else 0.0,
            "biased_net": float(self.biased_network is not None),
        }
        return ObjectiveOutput(loss=loss, logs=logs)

    def summary(self) -> dict[str, Any]:
        w = self.sample_weights()
        w = w[torch.isfinite(w)]
        if not w.numel():
            return {}
        return {
            "lff_mean_weight": float(w.mean()),
            "lff_frac_weight_above_half": float((w > 0.5).float().mean()),
        }
