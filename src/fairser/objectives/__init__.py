"""Training objectives behind one registry (METHODS.md §3). Importing this package registers them all."""

from fairser.objectives import (  # noqa: F401  (importing a module registers its objectives)
    adversarial,
    cfa,
    covada,
    cvar,
    erm,
    groupdro,
    jtt,
    lff,
    minmaxgap,
    reweighting,
    soft_parity,
    vrex,
)
from fairser.objectives.base import (
    OBJECTIVES,
    GroupBatch,
    Objective,
    ObjectiveOutput,
    build_objective,
    group_mean_losses,
    register,
)

__all__ = [
    "OBJECTIVES",
    "GroupBatch",
    "Objective",
    "ObjectiveOutput",
    "build_objective",
    "group_mean_losses",
    "register",
]
