"""Worker processes that exit when the process that started them dies, even by SIGKILL (the OOM killer).

A pool worker blocked on its task queue never notices its parent is gone: the queue's pipe stays open in
the worker itself. Left alone, a SIGKILL-ed ``fairser benchmark`` leaves the forkserver, the resource tracker
and its workers behind, blocked forever and holding their memory. Two guards, set in every pool's
initializer (:func:`die_with_parent`):

* On Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (through ``ctypes``): the kernel kills the process when its
  parent dies. Pool workers of the forkserver are the forkserver's children, so the forkserver gets the same
  tie by preloading :mod:`fairser.forkserver_lifeline`; the chain main → forkserver → workers then falls
  together, and the resource tracker, whose pipe was held open only by them, exits on its own.
* Everywhere, a daemon watchdog thread checks every ``poll`` seconds that the ``owner`` process (the
  benchmark's main process) still runs, and ends the worker with ``os._exit`` when it does not (the guard
  where ``prctl`` does not exist, and for a death the kernel tie misses).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

__all__ = ["die_with_parent", "set_parent_death_signal"]

_PR_SET_PDEATHSIG = 1
_EXIT_ORPHANED = 137  # as if killed by SIGKILL, like the parent


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the Linux kernel to send ``sig`` to this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a SIGKILL-ed parent not yet reaped is one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def die_with_parent(*, parent: int | None = None, owner: int | None = None, poll: float = 0.5) -> None:
    """Tie this (worker) process's life to its parent's and to ``owner``'s.

    ``parent``: the pid the parent should have (a worker forked by the caller passes ``os.getpid()`` of the
    caller): if the parent died before the tie was set, exit now. ``owner``: a process whose death ends this
    one too (the benchmark's main process, for workers of a forkserver); watched by a daemon thread every
    ``poll`` seconds. Call it first thing in a pool's initializer.
    """
    set_parent_death_signal()
    if parent is not None and os.getppid() != parent:  # the parent died before the tie existed
        os._exit(_EXIT_ORPHANED)
    watched = owner if owner is not None else parent
    if watched is None or watched == os.getpid():
        return

    def watch() -> None:
        event = threading.Event()
        while not event.wait(poll):
            if not _running(watched):
                os._exit(_EXIT_ORPHANED)

    threading.Thread(target=watch, name="fairser-lifeline", daemon=True).start()
