"""Power of the between-speaker permutation test: the minimum detectable gap (METHODS.md §2, "Power").

The question: how large must a true gap of a metric (W-F1 by default) between the values of the sensitive
attribute be for *our* test -- the gap's permutation test that shuffles the attribute between speakers
(:func:`fairser.metrics.resampling.permutation_confusion`) -- to reach ``p < alpha`` with probability
``power``? That gap is the **minimum detectable gap** (MDG). There is no closed form for a gap of W-F1 under
a permutation test on clustered data, so it is found by simulation (Monte Carlo power analysis; e.g.
Arnold et al. 2011, "Simulation methods to estimate design power", BMC Med Res Methodol 11:94):

* **Generative model** (:class:`PowerDesign`). Speaker ``k`` (value ``g_k`` of the attribute) has ``n_k``
  test utterances; each utterance's true class is drawn from the class distribution ``pi``; the prediction
  is correct with probability ``expit(mu_c + tau * z_k + o_g)`` (a logistic random-intercept model:
  ``z_k ~ N(0, 1)`` is the speaker's skill, ``tau`` the between-speaker spread on the logit scale, ``mu_c``
  set so that class ``c``'s recall averages ``recall[c]``), and a wrong prediction goes to class ``j`` with
  probability ``errors[c, j]``. The planted gap is the offset ``o_g``: ``+s/2`` for the first value,
  ``-s/2`` for the last. Its size in the metric's units is the **population gap** ``delta(s)``: the gap of
  the metric between the groups' expected confusion matrices (the limit of many speakers), so the MDG is
  a gap of the population, not of one noisy sample.
* **The test** is run exactly as :func:`fairser.metrics.evaluate_predictions` runs it: per-speaker
  confusion matrices, ``permutation_confusion`` (vectorised over the simulated data sets too), the gap
  ``max - min`` of the metric, and :func:`~fairser.metrics.resampling.permutation_p_value`.
* **Search**: common random numbers (the same speakers, utterances, uniforms and permutations for every
  ``s``), so the estimated power is monotone in ``s``; doubling to bracket the target power, then
  bisection, then linear interpolation. The Monte-Carlo standard error of the MDG is the binomial error of
  the power at the MDG divided by the power curve's slope there.

The speaker-level variance of a predictions table (:func:`design_from_predictions`) is a method-of-moments
estimate (the between-cluster variance of a one-way random-effects ANOVA, on per-class-adjusted residuals).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import optimize, special

from fairser.grouping import INTERSECTION_SEP, UNKNOWN, sensitive_values, value_names
from fairser.metrics.classification import METRICS, encode_labels
from fairser.metrics.fairness import metric_gap_from_confusion
from fairser.metrics.resampling import cluster_confusion, permutation_confusion, permutation_p_value

__all__ = [
    "POWER_COLUMNS",
    "MinimumDetectableGap",
    "PowerDesign",
    "SpeakersNeeded",
    "design_from_predictions",
    "design_mdg",
    "design_power",
    "minimum_detectable_gap",
    "planned_design",
    "population_gap",
    "speakers_needed",
]

#: Columns of :func:`minimum_detectable_gap`'s table, after the domain columns.
POWER_COLUMNS: tuple[str, ...] = (
    "metric",
    "mdg",
    "mdg_se",
    "power",
    "alpha",
    "speakers_per_group",
    "utterances_per_speaker",
    "accuracy",
    "spread",
    "target_gap",
    "power_at_target",
    "speakers_needed",
    "n_sim",
    "n_perm",
    "reason",
)

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(48)  # E[f(Z)], Z ~ N(0, 1), by Gauss-Hermite
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()
_MAX_SHIFT = 16.0  # logits: a planted offset beyond this is "not detectable" (accuracies ~ 0 vs ~ 1)
_CHUNK_CELLS = 4_000_000  # floats per chunk of permuted confusion matrices (memory bound)


# ----------------------------------------------------------------------------------------------- design


@dataclass(frozen=True, eq=False)
class PowerDesign:
    """One domain's test set as the power simulation sees it (the generative model of the module docstring).

    Attributes
    ----------
    utterances : int array (K,)
        Test utterances per speaker.
    group : int array (K,)
        Value index of each speaker (``0 .. n_groups - 1``).
    class_prior : array (C,)
        Distribution of the true class ``pi``.
    recall : array (C,)
        Mean probability that an utterance of class ``c`` is predicted correctly (over speakers).
    errors : array (C, C)
        Where a wrong prediction of class ``c`` goes (row ``c``; zero diagonal; rows sum to 1).
    spread : float
        Between-speaker SD of speaker-level accuracy (probability scale), the model's ``tau`` translated.
    group_names : tuple of str
        Names of the values (for messages).
    labels : tuple of str
        Class names.
    """

    utterances: np.ndarray
    group: np.ndarray
    class_prior: np.ndarray
    recall: np.ndarray
    errors: np.ndarray
    spread: float
    group_names: tuple[str, ...] = ("male", "female")
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        k, c = len(self.utterances), len(self.class_prior)
        if len(self.group) != k:
            raise ValueError(f"group has {len(self.group)} entries for {k} speakers")
        if np.shape(self.recall) != (c,) or np.shape(self.errors) != (c, c):
            raise ValueError(f"recall must be ({c},) and errors ({c}, {c})")
        if c < 2:
            raise ValueError(f"need at least 2 classes; got {c}")
        if k and (np.min(self.utterances) < 1):
            raise ValueError("every speaker needs at least one utterance")
        if not 0 <= self.spread:
            raise ValueError(f"spread must be >= 0; got {self.spread}")
        if self.n_groups < 2 or np.bincount(self.group, minlength=self.n_groups).min() < 1:
            raise ValueError("need at least one speaker in each of at least two groups")

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    @property
    def n_classes(self) -> int:
        return len(self.class_prior)

    @property
    def speakers_per_group(self) -> np.ndarray:
        return np.bincount(self.group, minlength=self.n_groups)

    @property
    def accuracy(self) -> float:
        """Expected accuracy ``sum_c pi_c recall_c``."""
        return float(np.dot(self.class_prior, self.recall))

    def with_speakers(
        self, speakers_per_group: int, *, utterances_per_speaker: int | None = None
    ) -> PowerDesign:
        """The same model with ``speakers_per_group`` speakers per value, each with ``utterances_per_speaker``
        utterances (default: the rounded mean of this design)."""
        n = utterances_per_speaker or max(1, int(round(float(np.mean(self.utterances)))))
        g = np.repeat(np.arange(self.n_groups), speakers_per_group)
        return replace(self, utterances=np.full(g.size, n, dtype=np.int64), group=g)


def planned_design(
    *,
    speakers_per_group: int,
    utterances_per_speaker: int,
    spread: float,
    accuracy: float,
    n_classes: int,
    n_groups: int = 2,
) -> PowerDesign:
    """A planned test set: equal speakers per value, equal utterances per speaker, balanced classes, every
    class recalled with probability ``accuracy``, errors spread evenly over the other classes, and speakers'
    accuracies with SD ``spread`` around ``accuracy``."""
    if not (isinstance(speakers_per_group, int | np.integer) and speakers_per_group >= 1):
        raise ValueError(f"speakers per group must be an integer >= 1; got {speakers_per_group!r}")
    if not (isinstance(utterances_per_speaker, int | np.integer) and utterances_per_speaker >= 1):
        raise ValueError(f"utterances per speaker must be an integer >= 1; got {utterances_per_speaker!r}")
    if not (isinstance(n_classes, int | np.integer) and n_classes >= 2):
        raise ValueError(f"the number of classes must be an integer >= 2; got {n_classes!r}")
    if not 0 < accuracy < 1:
        raise ValueError(f"accuracy must be in (0, 1); got {accuracy!r}")
    _check_spread(spread, accuracy)
    c = int(n_classes)
    errors = (1.0 - np.eye(c)) / (c - 1)
    g = np.repeat(np.arange(n_groups), speakers_per_group)
    return PowerDesign(
        utterances=np.full(g.size, int(utterances_per_speaker), dtype=np.int64),
        group=g,
        class_prior=np.full(c, 1.0 / c),
        recall=np.full(c, float(accuracy)),
        errors=errors,
        spread=float(spread),
        group_names=("male", "female") if n_groups == 2 else tuple(f"value {i + 1}" for i in range(n_groups)),
        labels=tuple(f"class {i + 1}" for i in range(c)),
    )


def _check_spread(spread: float, accuracy: float) -> None:
    limit = math.sqrt(accuracy * (1 - accuracy))
    if not 0 <= spread < 0.98 * limit:
        raise ValueError(
            f"spread (SD of speaker-level accuracy) must be in [0, {0.98 * limit:.3f}) at accuracy "
            f"{accuracy:.3f} (an SD near sqrt(a(1-a)) = {limit:.3f} means every speaker is right on all or none); "
            f"got {spread!r}"
        )


# ----------------------------------------------------------------------------------------------- model


def _mean_expit(mu: np.ndarray, tau: float) -> np.ndarray:
    """``E[expit(mu + tau Z)]``, Z ~ N(0, 1), elementwise over ``mu``."""
    return special.expit(np.asarray(mu, dtype=float)[..., None] + tau * _NODES) @ _WEIGHTS


def _intercept(target: float, tau: float) -> float:
    """``mu`` with ``E[expit(mu + tau Z)] = target``."""
    target = min(max(target, 1e-6), 1 - 1e-6)
    return float(optimize.brentq(lambda m: float(_mean_expit(np.array(m), tau)) - target, -60.0, 60.0))


def _tau(spread: float, accuracy: float) -> float:
    """Logit-scale SD ``tau`` whose speakers' accuracies ``expit(mu + tau Z)`` (mean ``accuracy``) have SD
    ``spread``."""
    if spread <= 0:
        return 0.0
    _check_spread(spread, accuracy)

    def sd(tau: float) -> float:
        p = special.expit(_intercept(accuracy, tau) + tau * _NODES)
        mean = p @ _WEIGHTS
        return math.sqrt(max(float((p * p) @ _WEIGHTS - mean * mean), 0.0))

    return float(optimize.brentq(lambda t: sd(t) - spread, 1e-9, 40.0))


@dataclass(frozen=True)
class _Model:
    mu: np.ndarray  # (C,) class intercepts
    tau: float
    cdf: np.ndarray  # (C, C) cumulative error distribution per true class
    prior_cdf: np.ndarray  # (C,)


def _model(design: PowerDesign) -> _Model:
    tau = _tau(design.spread, design.accuracy)
    recall = np.clip(design.recall, 1e-4, 1 - 1e-4)
    mu = np.array([_intercept(float(r), tau) for r in recall])
    cdf = np.cumsum(design.errors, axis=1)
    cdf[:, -1] = 1.0
    prior_cdf = np.cumsum(design.class_prior)
    prior_cdf[-1] = 1.0
    return _Model(mu=mu, tau=tau, cdf=cdf, prior_cdf=prior_cdf)


def _offsets(shift: float, n_groups: int) -> np.ndarray:
    off = np.zeros(n_groups)
    off[0], off[-1] = shift / 2, -shift / 2
    return off


def _metric_fn(metric: str) -> Callable[[np.ndarray], np.ndarray]:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {list(METRICS)}")
    return METRICS[metric]


def population_gap(design: PowerDesign, *, shift: float, metric: str = "weighted_f1") -> float:
    """The gap of ``metric`` between the groups' expected confusion matrices when the first value's
    log-odds of a correct prediction are ``shift / 2`` above the mean and the last value's ``shift / 2``
    below (the planted gap, in the metric's units)."""
    model, fn = _model(design), _metric_fn(metric)
    return _population_gap(design, model, shift, fn)


def _population_gap(design: PowerDesign, model: _Model, shift: float, fn) -> float:
    q = _mean_expit(model.mu[None, :] + _offsets(shift, design.n_groups)[:, None], model.tau)  # (G, C)
    pi = design.class_prior
    cm = pi[None, :, None] * (1 - q)[:, :, None] * design.errors[None]  # (G, C, C)
    idx = np.arange(design.n_classes)
    cm[:, idx, idx] = pi[None, :] * q
    return float(metric_gap_from_confusion(cm, metric=fn))


def _shift_for_gap(design: PowerDesign, model: _Model, gap: float, fn) -> float | None:
    """The shift whose population gap is ``gap`` (``None`` if no shift up to the cap gives it)."""
    if gap <= 0:
        return 0.0
    if _population_gap(design, model, _MAX_SHIFT, fn) < gap:
        return None
    return float(optimize.brentq(lambda s: _population_gap(design, model, s, fn) - gap, 0.0, _MAX_SHIFT))


# ----------------------------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class _Draws:
    """Common random numbers: everything random in a simulated data set except whether a prediction is right."""

    speaker: np.ndarray  # (N,) speaker of each utterance
    z: np.ndarray  # (S, K) speaker skills
    y: np.ndarray  # (S, N) true classes
    u: np.ndarray  # (S, N) uniforms deciding correctness
    wrong: np.ndarray  # (S, N) the class a wrong prediction goes to
    perm_seed: np.random.SeedSequence


def _draws(design: PowerDesign, model: _Model, *, n_sim: int, seed) -> _Draws:
    data_seed, perm_seed = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(data_seed)
    speaker = np.repeat(np.arange(len(design.utterances)), design.utterances)
    n = speaker.size
    z = rng.standard_normal((n_sim, len(design.utterances)))
    y = np.searchsorted(model.prior_cdf, rng.random((n_sim, n)), side="right")
    y = np.minimum(y, design.n_classes - 1)
    u = rng.random((n_sim, n))
    e = rng.random((n_sim, n))
    wrong = np.zeros((n_sim, n), dtype=np.int64)
    for c in range(design.n_classes):  # inverse CDF of the error row of each utterance's class
        rows = y == c
        wrong[rows] = np.searchsorted(model.cdf[c], e[rows], side="right")
    wrong = np.minimum(wrong, design.n_classes - 1)
    return _Draws(speaker=speaker, z=z, y=y, u=u, wrong=wrong, perm_seed=perm_seed)


def _unit_cm(design: PowerDesign, model: _Model, draws: _Draws, *, shift: float) -> np.ndarray:
    """Per-speaker confusion matrices (S, K, C, C) of the simulated data sets with the planted ``shift``."""
    n_sim, k = draws.z.shape
    c = design.n_classes
    off = _offsets(shift, design.n_groups)[design.group]  # (K,)
    eta = model.mu[draws.y] + (model.tau * draws.z + off)[:, draws.speaker]
    pred = np.where(draws.u < special.expit(eta), draws.y, draws.wrong)
    cell = ((np.arange(n_sim)[:, None] * k + draws.speaker) * c + draws.y) * c + pred
    return np.bincount(cell.ravel(), minlength=n_sim * k * c * c).reshape(n_sim, k, c, c).astype(float)


def _group_cm(design: PowerDesign, unit_cm: np.ndarray) -> np.ndarray:
    onehot = (design.group[None, :] == np.arange(design.n_groups)[:, None]).astype(float)  # (G, K)
    return np.einsum("gk,skij->sgij", onehot, unit_cm)


def _detected(
    design: PowerDesign, model: _Model, draws: _Draws, *, shift: float, fn, alpha: float, n_perm: int
) -> np.ndarray:
    """Whether each simulated data set's permutation test gives ``p < alpha`` (bool array (S,)): the gap's
    test exactly as :func:`~fairser.metrics.evaluate_predictions` runs it, all data sets at once."""
    unit_cm = _unit_cm(design, model, draws, shift=shift)
    n_sim, c, g = unit_cm.shape[0], design.n_classes, design.n_groups
    observed = metric_gap_from_confusion(_group_cm(design, unit_cm), metric=fn)  # (S,)
    rng = np.random.default_rng(draws.perm_seed)  # the same permutations for every shift
    chunk = max(1, _CHUNK_CELLS // (n_perm * g * (unit_cm.shape[1] + c * c)))  # one-hot labels and products
    p = np.empty(n_sim)
    for start in range(0, n_sim, chunk):
        part = slice(start, start + chunk)
        perm = permutation_confusion(unit_cm[part], design.group, n_groups=g, n_perm=n_perm, rng=rng)
        p[part] = permutation_p_value(observed[part], metric_gap_from_confusion(perm, metric=fn), axis=-1)
    return np.nan_to_num(p, nan=1.0) < alpha


def _min_p(design: PowerDesign) -> float:
    """Smallest p-value the permutation test of a gap can give on this design (exact test): one over the
    number of distinct assignments of speakers to values, doubled for two equal groups (swapping them
    gives the same absolute gap)."""
    sizes = design.speakers_per_group
    log_n = special.gammaln(sizes.sum() + 1) - special.gammaln(sizes + 1).sum()
    mirror = 2 if len(sizes) == 2 and sizes[0] == sizes[1] else 1
    return float(min(1.0, mirror * math.exp(-log_n)))


@dataclass(frozen=True)
class MinimumDetectableGap:
    """Result of :func:`design_mdg` (gaps in the metric's units, e.g. 0.15 = 15 W-F1 points).

    ``mdg`` is ``NaN`` with a ``reason`` when no planted gap reaches the power; ``shift`` is the planted
    logit offset; ``mdg_se`` its Monte-Carlo standard error; ``achieved`` the simulated power at ``mdg``.
    """

    mdg: float
    mdg_se: float
    shift: float
    achieved: float
    metric: str
    power: float
    alpha: float
    n_sim: int
    n_perm: int
    reason: str = ""


def _check_sim(power: float | None, alpha: float, n_sim: int, n_perm: int) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    if power is not None and not alpha < power < 1:
        raise ValueError(f"power must be in (alpha, 1); got {power!r}")
    for name, value, low in (("n_sim", n_sim, 20), ("n_perm", n_perm, 19)):
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


def design_power(
    design: PowerDesign,
    *,
    gap: float,
    metric: str = "weighted_f1",
    alpha: float = 0.05,
    n_sim: int = 1000,
    n_perm: int = 200,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Power (and its Monte-Carlo SE) of the between-speaker permutation test to find a true ``gap`` of
    ``metric`` (metric units) on ``design``: the share of ``n_sim`` simulated data sets with ``p < alpha``.
    ``NaN`` when ``gap`` cannot be planted (beyond what the accuracies allow)."""
    _check_sim(None, alpha, n_sim, n_perm)
    fn, model = _metric_fn(metric), _model(design)
    shift = _shift_for_gap(design, model, gap, fn)
    if shift is None:
        return math.nan, math.nan
    draws = _draws(design, model, n_sim=n_sim, seed=seed)
    power = float(_detected(design, model, draws, shift=shift, fn=fn, alpha=alpha, n_perm=n_perm).mean())
    return power, math.sqrt(power * (1 - power) / n_sim)


def design_mdg(
    design: PowerDesign,
    *,
    metric: str = "weighted_f1",
    power: float = 0.8,
    alpha: float = 0.05,
    n_sim: int = 1000,
    n_perm: int = 200,
    seed: int | None = 0,
) -> MinimumDetectableGap:
    """Minimum detectable gap of ``metric`` on ``design``: the smallest true gap the between-speaker
    permutation test (``n_perm`` permutations, as :func:`~fairser.metrics.evaluate_predictions` runs it)
    finds with ``p < alpha`` in a share ``power`` of ``n_sim`` simulated test sets (method: module docstring)."""
    _check_sim(power, alpha, n_sim, n_perm)
    fn, model = _metric_fn(metric), _model(design)

    def result(mdg=math.nan, se=math.nan, shift=math.nan, achieved=math.nan, reason=""):
        return MinimumDetectableGap(mdg, se, shift, achieved, metric, power, alpha, n_sim, n_perm, reason)

    min_p = _min_p(design)
    if min_p >= alpha:
        sizes = "/".join(map(str, design.speakers_per_group))
        return result(
            reason=f"with {sizes} speakers per value the permutation test cannot reach p < {alpha:g} "
            f"(smallest possible p = {min_p:.3g}): no gap is detectable"
        )
    draws = _draws(design, model, n_sim=n_sim, seed=seed)
    cache: dict[float, float] = {}

    def pw(shift: float) -> float:
        if shift not in cache:
            hits = _detected(design, model, draws, shift=shift, fn=fn, alpha=alpha, n_perm=n_perm)
            cache[shift] = float(hits.mean())
        return cache[shift]

    # Start where a z-test would put the MDG: (z_{1-alpha/2} + z_power) null SDs of the signed gap.
    null_sd = float(np.nanstd(_signed_gaps(design, model, draws, fn)))
    z = special.ndtri(1 - alpha / 2) + special.ndtri(power)
    guess = _shift_for_gap(design, model, max(z * null_sd, 1e-3), fn)
    lo = hi = min(max(guess if guess is not None else _MAX_SHIFT / 2, 0.05), _MAX_SHIFT / 2)
    while pw(hi) < power:  # bracket the target power: pw(lo) < power <= pw(hi)
        lo, hi = hi, 1.3 * hi
        if hi > _MAX_SHIFT:
            top = _population_gap(design, model, _MAX_SHIFT, fn)
            return result(
                reason=f"not detectable with power {power:g}: even a planted {metric} gap of {top:.3f} is "
                f"found in only {pw(lo):.0%} of simulations"
            )
    while lo == hi or pw(lo) >= power:
        lo = lo / 1.3
        if lo < 1e-3:
            lo = 0.0
            break
    bracket = (lo, hi)
    for _ in range(4):  # regula falsi on the (monotone, common-random-numbers) power curve
        if hi - lo < 0.01 * hi:
            break
        mid = lo + (power - pw(lo)) / (pw(hi) - pw(lo)) * (hi - lo)
        mid = min(max(mid, lo + 0.1 * (hi - lo)), hi - 0.1 * (hi - lo))
        lo, hi = (mid, hi) if pw(mid) < power else (lo, mid)
    p_lo, p_hi = pw(lo), pw(hi)
    shift = hi if p_hi == p_lo else lo + (power - p_lo) / (p_hi - p_lo) * (hi - lo)
    mdg = _population_gap(design, model, shift, fn)
    # Monte-Carlo SE: binomial SE of the power at the MDG over the power curve's slope (first bracket).
    b_lo, b_hi = bracket
    slope = (pw(b_hi) - pw(b_lo)) / (
        _population_gap(design, model, b_hi, fn) - _population_gap(design, model, b_lo, fn)
    )
    se = math.sqrt(power * (1 - power) / n_sim) / slope if slope > 0 else math.nan
    return result(mdg=mdg, se=se, shift=shift, achieved=p_hi)


def _signed_gaps(design: PowerDesign, model: _Model, draws: _Draws, fn) -> np.ndarray:
    """``M(first value) - M(last value)`` of each simulated data set with no planted gap (no permutations)."""
    group_cm = _group_cm(design, _unit_cm(design, model, draws, shift=0.0))
    values = fn(group_cm)
    return values[:, 0] - values[:, -1]


@dataclass(frozen=True)
class SpeakersNeeded:
    """Result of :func:`speakers_needed`: ``speakers`` per value (``None`` with a ``reason`` if more than the
    maximum), the simulated ``power`` there, and ``below`` the power one step (~10%) fewer would give."""

    speakers: int | None
    power: float
    below: float
    reason: str = ""


def speakers_needed(
    design: PowerDesign,
    *,
    gap: float,
    metric: str = "weighted_f1",
    power: float = 0.8,
    alpha: float = 0.05,
    n_sim: int = 1000,
    n_perm: int = 200,
    seed: int | None = 0,
    max_speakers: int = 400,
    utterances_per_speaker: int | None = None,
) -> SpeakersNeeded:
    """Speakers per value (equal groups, ``utterances_per_speaker`` each, default this design's mean) with
    which a true ``gap`` of ``metric`` is detected with ``power``.

    The MDG of a between-speaker comparison shrinks like ``1/sqrt(speakers)``, so the search starts at
    ``m (z * sd0 / gap)^2`` (``sd0`` the simulated null SD of the signed gap on this design with ``m``
    speakers per value, ``z = z_{1-alpha/2} + z_power``) and then steps by ~10% until the simulated power
    crosses ``power``: the answer is the first step with enough power, good to about 10%.
    """
    _check_sim(power, alpha, n_sim, n_perm)
    if not gap > 0:
        raise ValueError(f"the target gap must be > 0; got {gap!r}")
    fn, model = _metric_fn(metric), _model(design)
    shift = _shift_for_gap(design, model, gap, fn)
    if shift is None:
        return SpeakersNeeded(
            None, math.nan, math.nan, f"a {metric} gap of {gap:.3f} cannot arise at this accuracy"
        )
    cache: dict[int, float] = {}

    def pw(m: int) -> float:
        if m not in cache:
            d = design.with_speakers(m, utterances_per_speaker=utterances_per_speaker)
            if _min_p(d) >= alpha:
                cache[m] = 0.0
            else:
                draws = _draws(d, model, n_sim=n_sim, seed=seed)
                hits = _detected(d, model, draws, shift=shift, fn=fn, alpha=alpha, n_perm=n_perm)
                cache[m] = float(hits.mean())
        return cache[m]

    m_now = max(2, int(design.speakers_per_group.min()))
    start = design.with_speakers(m_now, utterances_per_speaker=utterances_per_speaker)
    null_sd = float(np.nanstd(_signed_gaps(start, model, _draws(start, model, n_sim=400, seed=seed), fn)))
    z = special.ndtri(1 - alpha / 2) + special.ndtri(power)
    m = int(np.clip(math.ceil(m_now * (z * null_sd / gap) ** 2), 2, max_speakers))

    def up(m: int) -> int:
        return max(m + 1, int(math.ceil(1.1 * m)))

    def down(m: int) -> int:
        return min(m - 1, int(math.floor(m / 1.1)))

    while pw(m) < power:
        if m >= max_speakers:
            return SpeakersNeeded(
                None, pw(m), math.nan, f"more than {max_speakers} speakers per value needed"
            )
        m = min(up(m), max_speakers)
    while m > 2 and pw(down(m)) >= power:
        m = down(m)
    below = pw(down(m)) if m > 2 else math.nan
    return SpeakersNeeded(m, pw(m), below)


# ----------------------------------------------------------------------------------------------- tables


def _missing(series: pd.Series) -> np.ndarray:
    text = series.astype(str).str.strip()
    return (series.isna() | text.eq("") | text.str.lower().isin(["nan", "none", "<na>"])).to_numpy()


def design_from_predictions(
    predictions: pd.DataFrame,
    *,
    labels: Sequence[str] | None = None,
    sensitive: str | Sequence[str] = "gender",
    domain_cols: Sequence[str] = ("language", "modality"),
    speaker_col: str = "speaker",
    min_samples: int = 10,
) -> list[tuple[dict[str, str], PowerDesign | None, str]]:
    """The power design of each domain of a predictions table: ``[(domain keys, design or None, reason)]``.

    Domains, values of the attribute and clusters are those of :func:`~fairser.metrics.evaluate_predictions`
    (speakers; a row without a speaker id is its own cluster; values with fewer than ``min_samples`` rows
    take no part). From the domain's pooled confusion matrix: the class distribution, per-class recall and
    where errors go (a class without errors sends them evenly to the others). The spread is the
    method-of-moments between-speaker SD of accuracy, pooled within values: the variance over speakers of
    their mean residual ``correct - recall[class]`` around their value's mean, less its expected binomial
    part ``sum recall(1 - recall) / n_k^2``; clipped at 0.
    """
    columns = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    domain_cols = list(domain_cols)
    missing = [c for c in ["y_true", "y_pred", *columns, *domain_cols] if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions table lacks column(s) {missing}; it has {list(predictions.columns)}")
    df = predictions.reset_index(drop=True)
    if labels is None:
        labels = sorted(set(df["y_true"].astype(str)) | set(df["y_pred"].astype(str)))
    labels = [str(x) for x in labels]
    c = len(labels)
    if c < 2:
        raise ValueError(f"need at least 2 labels; got {labels}")
    true_idx = encode_labels(df["y_true"].astype(str).to_numpy(dtype=object), labels=labels, name="y_true")
    pred_idx = encode_labels(df["y_pred"].astype(str).to_numpy(dtype=object), labels=labels, name="y_pred")
    sens = value_names(df, columns)
    levels = list(sensitive_values(df, columns))
    dom = pd.DataFrame(
        {col: np.where(_missing(df[col]), UNKNOWN, df[col].astype(str).to_numpy()) for col in domain_cols},
        index=df.index,
    )
    has_spk = ~_missing(df[speaker_col]) if speaker_col in df.columns else np.zeros(len(df), dtype=bool)
    rid = df["id"].astype(str).to_numpy() if "id" in df.columns else np.arange(len(df)).astype(str)
    spk = df[speaker_col].astype(str).to_numpy() if speaker_col in df.columns else rid
    clusters = np.where(has_spk, "spk:" + spk.astype(object), "utt:" + rid.astype(object))
    keys = [tuple(r) for r in dom.itertuples(index=False, name=None)] if domain_cols else [()] * len(df)
    out = []
    for key in sorted(set(keys)):
        in_d = np.array([k == key for k in keys])
        names = dict(zip(domain_cols, key, strict=True))
        cm = np.zeros((c, c))
        np.add.at(cm, (true_idx[in_d], pred_idx[in_d]), 1.0)
        eligible = [v for v in levels if int((in_d & (sens == v)).sum()) >= min_samples]
        if in_d.sum() < min_samples or len(eligible) < 2:
            out.append(
                (
                    names,
                    None,
                    f"fewer than two values of {INTERSECTION_SEP.join(columns)} with "
                    f">= {min_samples} rows: no gap to test",
                )
            )
            continue
        support = cm.sum(axis=1)
        recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.trace(cm) / cm.sum())
        off = cm * (1 - np.eye(c))
        uniform = (1 - np.eye(c)) / (c - 1)
        errors = np.where(
            off.sum(axis=1, keepdims=True) > 0, off / np.maximum(off.sum(axis=1, keepdims=True), 1), uniform
        )
        counts, groups, resid = [], [], []
        for gi, v in enumerate(eligible):
            rows = in_d & (sens == v)
            unit_cm, _ = cluster_confusion(true_idx[rows], pred_idx[rows], clusters[rows], n_classes=c)
            n_k = unit_cm.sum(axis=(1, 2))
            correct = np.trace(unit_cm, axis1=1, axis2=2)
            expected = unit_cm.sum(axis=2) @ recall  # sum over utterances of recall[class]
            binom = unit_cm.sum(axis=2) @ (recall * (1 - recall))
            counts.append(n_k)
            groups.append(np.full(n_k.size, gi))
            resid.append(((correct - expected) / n_k, binom / n_k**2))
        n_k = np.concatenate(counts).astype(np.int64)
        group = np.concatenate(groups)
        r = np.concatenate([x for x, _ in resid])
        noise = np.concatenate([b for _, b in resid])
        dof = r.size - len(eligible)
        if dof > 0 and n_k.max() > 1:  # single-utterance clusters carry no between-speaker variance
            centred = np.concatenate([x - x.mean() for x, _ in resid])
            variance = float(centred @ centred / dof - noise.mean())
        else:
            variance = 0.0
        prior = support / support.sum()
        accuracy = float(prior @ recall)
        spread = min(math.sqrt(max(variance, 0.0)), 0.9 * math.sqrt(accuracy * (1 - accuracy)))
        design = PowerDesign(
            utterances=n_k,
            group=group,
            class_prior=prior,
            recall=recall,
            errors=errors,
            spread=spread,
            group_names=tuple(eligible),
            labels=tuple(labels),
        )
        out.append((names, design, ""))
    return out


def minimum_detectable_gap(
    predictions: pd.DataFrame,
    *,
    metric: str = "weighted_f1",
    target_gap: float | None = None,
    labels: Sequence[str] | None = None,
    sensitive: str | Sequence[str] = "gender",
    domain_cols: Sequence[str] = ("language", "modality"),
    speaker_col: str = "speaker",
    min_samples: int = 10,
    power: float = 0.8,
    alpha: float = 0.05,
    n_sim: int = 1000,
    n_perm: int = 200,
    seed: int | None = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Minimum detectable gap of ``metric`` per domain of a predictions table (one run), the design taken from
    the table (:func:`design_from_predictions`) and the test that of :func:`~fairser.metrics.evaluate_predictions`.

    With ``target_gap`` (metric units: 0.03 = 3 points) also the power to detect it with the current design
    and the speakers per value needed for it (same utterances per speaker).

    Returns
    -------
    DataFrame
        One row per domain: the domain columns, then :data:`POWER_COLUMNS` (``mdg``, ``mdg_se``,
        ``speakers_per_group`` as ``"6/6"``, ``utterances_per_speaker`` (mean), ``accuracy``, ``spread``
        (estimated SD of speaker-level accuracy), ``power_at_target``, ``speakers_needed``, ``reason``).
    """
    _check_sim(power, alpha, n_sim, n_perm)
    _metric_fn(metric)
    designs = design_from_predictions(
        predictions,
        labels=labels,
        sensitive=sensitive,
        domain_cols=domain_cols,
        speaker_col=speaker_col,
        min_samples=min_samples,
    )
    rows = []
    iterator = designs
    if progress:
        from rich.progress import track

        iterator = track(designs, description="power per domain", transient=True)
    for names, design, reason in iterator:
        row = {**names, "metric": metric, "power": power, "alpha": alpha, "n_sim": n_sim, "n_perm": n_perm}
        row.update(
            {k: math.nan for k in ("mdg", "mdg_se", "utterances_per_speaker", "accuracy", "spread")},
            speakers_per_group="",
            target_gap=math.nan if target_gap is None else float(target_gap),
            power_at_target=math.nan,
            speakers_needed=pd.NA,
            reason=reason,
        )
        if design is not None:
            res = design_mdg(
                design, metric=metric, power=power, alpha=alpha, n_sim=n_sim, n_perm=n_perm, seed=seed
            )
            row.update(
                mdg=res.mdg,
                mdg_se=res.mdg_se,
                speakers_per_group="/".join(map(str, design.speakers_per_group)),
                utterances_per_speaker=float(np.mean(design.utterances)),
                accuracy=design.accuracy,
                spread=design.spread,
                reason=res.reason,
            )
            if target_gap is not None:
                kw = dict(metric=metric, alpha=alpha, n_sim=n_sim, n_perm=n_perm, seed=seed)
                row["power_at_target"] = design_power(design, gap=target_gap, **kw)[0]
                needed = speakers_needed(design, gap=target_gap, power=power, **kw)
                row["speakers_needed"] = needed.speakers if needed.speakers is not None else pd.NA
                if needed.reason:
                    row["reason"] = "; ".join(r for r in (row["reason"], needed.reason) if r)
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*domain_cols, *POWER_COLUMNS])
    out["speakers_needed"] = out["speakers_needed"].astype("Int64")
    return out
