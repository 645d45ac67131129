"""Preloaded by the benchmark's forkserver (``set_forkserver_preload``): ties the forkserver's life to the
process that started it (:func:`fairser.lifeline.set_parent_death_signal`), so a SIGKILL-ed benchmark does
not leave it behind. Importing it anywhere but in a forkserver does nothing."""

from __future__ import annotations

import sys

from fairser.lifeline import set_parent_death_signal

if sys.argv[:1] == ["-c"] and "multiprocessing.forkserver" in sys.modules:  # (only inside a forkserver)
    set_parent_death_signal()
