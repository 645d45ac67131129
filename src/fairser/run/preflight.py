"""Checks of the grid before any training: what would make every run fail, or silently mean something else.

* **Zero-row splits**: a run needs training, validation and test rows, and (within one corpus, not across
  corpora) every configured language needs training and test rows; otherwise every run trains, then fails
  (or the language silently vanishes from the table).
* **One value per training domain for a group objective** (``Objective.compares_values``: MinMaxGAP, Group
  DRO, the adversary, parity penalties, V-REx, reweighting, CFA): with one value of the sensitive attribute
  in a domain's training rows its group term is void there and it trains as ERM without a word.

Each problem is named (fold, setting, split, language, objective) with its fix, all in one
:class:`~fairser.errors.UserError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairser.config import BenchmarkConfig
from fairser.errors import UserError
from fairser.run.plan import RunSpec
from fairser.run.prepare import PreparedData, effective_groups
from fairser.run.views import run_grouper, setting_modalities

__all__ = ["check_grid"]

_REQUIRED_SPLITS = ("train", "valid", "test")


def check_grid(runs: Sequence[RunSpec], prepared: PreparedData, config: BenchmarkConfig) -> None:
    """Refuse the grid ``runs`` before training when a split it trains or tests on is empty, or a group
    objective's training split has a domain with a single value of the sensitive attribute.

    Raises one :class:`~fairser.errors.UserError` listing every problem (and its fix)."""
    from fairser.objectives import OBJECTIVES

    problems: list[str] = []
    fixes: list[str] = []
    cross = config.corpus.cross is not None
    folds = sorted({r.fold for r in runs}, key=lambda f: -1 if f is None else f)
    for fold in folds:
        data = prepared if fold is None else prepared.for_fold(fold)
        manifest = data.manifest
        at = "" if fold is None else f"fold {fold}: "
        split = manifest["split"].to_numpy()
        empty = [s for s in _REQUIRED_SPLITS if not (split == s).any()]
        for s in empty:
            problems.append(f"{at}the {s} split has no rows")
        if empty:
            fixes.append("give every split rows (manifest column `split`: train, valid, test)")
            continue
        if not cross:  # across corpora the languages of train and test may differ by design
            for lang in config.languages:
                in_lang = (manifest["language"] == lang).to_numpy()
                for s in ("train", "test"):
                    if not (in_lang & (split == s)).any():
                        problems.append(f"{at}language {lang!r} has no {s} rows")
                        fixes.append(
                            f"give language {lang!r} {s} speakers (or re-split the corpus: fairser data import "
                            f"--split speaker), or remove it from `languages`"
                        )
        group_specs = {
            r.objective.display: r.objective
            for r in runs
            if r.fold == fold
            and r.objective.name in OBJECTIVES  # (the zero-shot "objective" trains nothing)
            and OBJECTIVES[r.objective.name].compares_values
            and not effective_groups(r.objective, config).inferred
        }
        if not group_specs:
            continue
        for setting in dict.fromkeys(r.setting for r in runs if r.fold == fold):
            grouper = run_grouper(manifest, setting=setting, config=config)
            train = manifest.loc[split == "train"]
            for modality in setting_modalities(setting, config):
                meta = train.assign(modality=modality)
                domain = np.asarray(grouper.domain_ids(meta))
                value = np.asarray(grouper.value_ids(meta))
                for d, key in enumerate(grouper.domains):
                    in_d = (domain == d) & (value >= 0)
                    if not (domain == d).any():
                        continue
                    present = sorted({grouper.values[v] for v in np.unique(value[in_d])})
                    if len(present) >= 2:
                        continue
                    name = " × ".join(map(str, key))
                    what = f"only {present}" if present else "no known value"
                    problems.append(
                        f"{at}{setting}: the training rows of domain {name} have {what} of "
                        f"{'/'.join(config.sensitive)}; {', '.join(group_specs)} compare(s) the values within a "
                        "domain and would train as ERM there"
                    )
                    fixes.append(
                        "add training speakers of the other value(s) to that language, drop it from "
                        "`languages`, or use objectives without group terms there (erm, cvar, jtt, lff)"
                    )
    if problems:
        shown = "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
        raise UserError(
            f"the grid cannot be trained as configured ({len(problems)} problem(s), no run was started):\n{shown}",
            where=f"corpus {prepared.source}",
            fix="; ".join(dict.fromkeys(fixes)),
        )
