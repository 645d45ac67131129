"""Fairness audit of any model's predictions table (METHODS.md §2; ``fairser audit``).

A thin layer over :func:`fairser.metrics.evaluate_predictions` that a user with a model trained elsewhere
can point at a CSV: it checks the table and names the rows or groups that are wrong or too small
(:mod:`~fairser.audit.table`), splits a file that holds several runs (objectives, seeds) into one
evaluation per run (:mod:`~fairser.audit.runs`), evaluates each run for the sensitive attribute (one
column with any number of values, or the intersection of several, e.g. gender × age band;
:mod:`~fairser.audit.frames`), and returns an :class:`Audit` of :class:`~fairser.metrics.MetricFrame`
objects that can be written and read back (:mod:`~fairser.audit.container`) and printed
(:mod:`~fairser.audit.printing`). Every number comes from the vectorised bootstrap and permutation path of
:mod:`fairser.metrics`; nothing is recomputed here.

Numbers that cannot be computed (a group below ``min_samples``, a language with one value of the attribute,
a group with one speaker, a class absent from a group) are ``NaN`` with a reason; :meth:`Audit.undefined`
lists them all.
"""

from fairser.audit.container import AUDIT_TABLES, Audit
from fairser.audit.frames import attributes_of, audit_predictions
from fairser.audit.printing import print_audit
from fairser.audit.runs import RUN_COLUMNS, run_label, split_runs
from fairser.audit.table import AuditInputError, check_predictions, read_predictions, resolve_labels
from fairser.grouping import INTERSECTION_SEP

__all__ = [
    "AUDIT_TABLES",
    "INTERSECTION_SEP",
    "RUN_COLUMNS",
    "Audit",
    "AuditInputError",
    "attributes_of",
    "audit_predictions",
    "check_predictions",
    "print_audit",
    "read_predictions",
    "resolve_labels",
    "run_label",
    "split_runs",
]
