"""Notice signals: a heads-up to a job before it is stopped (Slurm's ``--signal USR1@60``).

A job that asks for one (``AttemptLaunch.notice_signal``/``notice_s``) gets it twice
over, both times from the runner (``agents.runner``):
- before its time limit: once, ``time_limit_s - notice_s`` after its process started.
  The agent does not stop it at the limit: the server sends a ``timeout`` stop then;
- before a preemption: a stop that carries a notice (``AttemptStop.notice_signal``)
  sends it first, waits ``notice_s`` (or until the attempt exits), then goes on as
  any stop: SIGTERM, the grace period, SIGKILL. The stop began with the notice: an
  exit from then on, even code 0 in the notice window, was caused by the agent.

A notice goes to the leader's process group only, not to the rest of the session as
a stop's signals do: it is meant for the workload, and a process that moved to a
group of its own may not handle it (a USR1 not handled ends a process). A Ray
attempt gets no notice: its leader, ``agents.raysupervisor``, does not relay one (it
would die of it), so its stop goes straight to the SIGTERM, which the supervisor
turns into a checkpoint request to the workload.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass

from scheduler.domain.sync import AttemptLaunch

log = logging.getLogger("corral.agent.notice")


@dataclass(frozen=True)
class Notice:
    """A signal to send ``notice_s`` before what it announces."""

    signum: int
    notice_s: float

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


def resolve_signal(name: str) -> int:
    """``USR1`` or ``SIGUSR1`` -> its number here; ``"40"`` -> 40; ValueError if unknown."""
    text = name.strip().upper()
    if text.isdigit():
        number = int(text)
        if not 0 < number < signal.NSIG:
            raise ValueError(f"no signal number {number} on this node")
        return number
    try:
        return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        raise ValueError(f"no signal named {name!r} on this node") from None


def notice_of(name: str | None, notice_s: float) -> Notice | None:
    """The notice a launch or a stop asks for: None without a signal, or with one this
    node does not know (logged: the stop then goes on without a notice)."""
    if not name:
        return None
    try:
        return Notice(resolve_signal(name), max(float(notice_s), 0.0))
    except ValueError as err:
        if name not in _unknown:  # a stop is repeated by every sync: warn once
            _unknown.add(name)
            log.warning("ignoring a notice signal: %s", err)
        return None


_unknown: set[str] = set()  # signal names this node did not know


def time_limit_notice(launch: AttemptLaunch, started_at: float) -> tuple[float, Notice] | None:
    """When (on the clock of ``started_at``) to send the time-limit notice, and which;
    None when the launch has no time limit, no notice, or runs in a Ray cluster."""
    if launch.time_limit_s is None or launch.ray:
        return None
    notice = notice_of(launch.notice_signal, launch.notice_s)
    if notice is None:
        return None
    return started_at + max(launch.time_limit_s - notice.notice_s, 0.0), notice


def send_notice(leader: int, notice: Notice) -> None:
    """Signal the process group ``leader`` (a verified attempt leader); gone: skipped."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, notice.signum)
