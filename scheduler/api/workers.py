"""Several server processes on one listening socket (``corral server --workers N``).

One Python process answers requests on one core at a time: its interpreter lock is
shared by the event loop, the syncs' database threads and the scheduling cycle, and
under a thousand agents a sync waits for the lock more than it works. With
PostgreSQL a server may run as N API workers and one loops worker instead. The
parent prepares the database, binds the socket and forks them (``api/serve.py``).
Each API worker serves HTTP on the shared socket with its own connections (the kernel
hands each new connection to one of them) and never runs the loops; the loops worker
serves no HTTP and stands in the leader election, running the cycle and the loops
while it leads. They wake each other through the database, as separate servers on
one PostgreSQL do, so a cycle never holds up a sync's turn on an interpreter.

The parent only watches: a worker that dies is replaced in its slot (a worker that
keeps dying at start stops the server), SIGTERM or SIGINT stops every worker
gracefully. The workers die with the parent however it dies (``PR_SET_PDEATHSIG``),
so a killed server leaves nothing holding its port or its leadership.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("corral.server")

PR_SET_PDEATHSIG = 1
QUICK_DEATH_S = 5.0  # a worker that dies this soon after its start ...
QUICK_DEATHS_MAX = 3  # ... this many times in a row stops the server


class WorkersFailed(RuntimeError):
    """The workers kept dying at start (the message says how the last one ended)."""


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), and leave at once
    if the parent is already gone (it may have died before the request was made)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _fork(work: Callable[[int], None], slot: int) -> int:
    """Start ``work(slot)`` in a child process; its pid. The child never returns."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the parent, which stops it once
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _die_with_parent(parent)
        work(slot)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("a server worker failed")
    finally:
        logging.shutdown()
        os._exit(code)


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def run_workers(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(slot)`` in ``count`` forked processes, slots 0 to count - 1, until
    SIGTERM/SIGINT; a worker that dies is replaced in its slot. Raises WorkersFailed
    when workers keep dying at start. Call it from the main thread of a process with no
    other thread (a fork copies only the calling thread)."""
    if threading.active_count() > 1:
        raise RuntimeError("server workers are forked before any thread starts")
    stopping = False
    started: dict[int, tuple[int, float]] = {}  # pid -> (slot, when it started)

    def stop(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in started:
            _signal(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(count):
            started[_fork(work, slot)] = (slot, time.monotonic())
        _watch(started, work, lambda: stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for pid in started:  # an error above: no worker outlives the server
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _watch(
    started: dict[int, tuple[int, float]],
    work: Callable[[int], None],
    stopping: Callable[[], bool],
) -> None:
    """Reap the workers; start a new one for each that dies while the server runs."""
    quick_deaths = 0
    while started:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        ended = started.pop(pid, None)
        if ended is None or stopping():
            continue
        slot, began = ended
        how = _ended(status)
        quick_deaths = quick_deaths + 1 if time.monotonic() - began < QUICK_DEATH_S else 0
        if quick_deaths >= QUICK_DEATHS_MAX:
            raise WorkersFailed(f"server workers keep failing at start (the last one: {how})")
        log.warning("server worker %d ended (%s); starting another", pid, how)
        started[_fork(work, slot)] = (slot, time.monotonic())


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
