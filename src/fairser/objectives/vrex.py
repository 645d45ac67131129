"""V-REx: ERM plus the variance of the group losses."""

from __future__ import annotations

from fairser.objectives._common import check_range
from fairser.objectives.base import GroupBatch, Objective, ObjectiveOutput, group_mean_losses, register

__all__ = ["VREx"]


@register
class VREx(Objective):
    """V-REx (Krueger et al. 2021, "Out-of-Distribution Generalization via Risk Extrapolation"):
    ``L = L_ERM + beta * Var_g(Lbar_g)`` over the (domain, sensitive value) groups present in the batch.

    The variance is the population variance (mean squared deviation from the mean of the present group
    losses), as in DomainBed's ``VREx``; with fewer than two groups present it is 0. Samples with an unknown
    sensitive value count in ``L_ERM`` only.

    Parameters
    ----------
    n_domains, n_classes : int
        Number of domains and emotion classes.
    n_values : int
        Number of values of the sensitive attribute (default 2, gender).
    beta : float
        Weight of the variance penalty (>= 0; default 1.0, our choice).
    """

    name = "vrex"
    compares_values = True

    def __init__(self, *, n_domains: int, n_classes: int, n_values: int = 2, beta: float = 1.0) -> None:
        super().__init__(n_domains=n_domains, n_classes=n_classes, n_values=n_values)
        self.beta = check_range(self.name, "beta", beta, low=0.0)

    def forward(self, batch: GroupBatch) -> ObjectiveOutput:
        erm = batch.losses.mean()
        means, counts = group_mean_losses(batch.losses, self.batch_groups(batch), self.n_groups)
        present = (counts > 0).to(means.dtype)
        n_present = present.sum().clamp_min(1.0)
        centre = (means * present).sum() / n_present
        variance = (present * (means - centre).square()).sum() / n_present
        loss = erm + self.beta * variance
        return ObjectiveOutput(
            loss=loss, logs={"erm": float(erm.detach()), "variance": float(variance.detach())}
        )
