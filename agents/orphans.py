"""What a previous agent life left running: process records, identity, the sweep.

Attempts run in their own sessions and outlive an agent that dies (SIGKILL, OOM, a
crash). A restarted agent holds nothing, so unless it stops what is left, the server
would start those attempts again while their old processes still hold the GPUs.
The runner therefore writes a ``ProcessRecord`` for every attempt it starts, and a
new agent life stops each recorded group before its first sync (SIGTERM, a short
grace, SIGKILL). The attempts are then not reported, so the server ends them as lost
and requeues their jobs; adopting the live processes instead, so the jobs keep
running across an agent restart, is a later improvement.

Invariant: a group is signalled only right after ``identify`` found it to be the
attempt's, so a process that reuses a recorded pid is never touched. Linux only
(``/proc``). An attempt is its session: a process that moved to a process group of
its own (as Ray's workers do) is still stopped; one that left the session
(``setsid``) escapes, as it escapes a normal stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

JOB_ID_ENV = "CORRAL_JOB_ID"
ATTEMPT_ENV = "CORRAL_ATTEMPT"

ORPHAN_POLL_S = 0.05
ORPHAN_KILL_WAIT_S = 5.0  # how long a group may take to vanish after SIGKILL


@dataclass(frozen=True)
class ProcessRecord:
    """Who runs an attempt, in ``attempts/<id>/process.json`` until its leader is reaped.

    The leader is ``pgid`` (each attempt leads its own session); ``start_ticks`` (field
    22 of ``/proc/<pid>/stat``, clock ticks after boot) and ``boot_id`` tell it from a
    later process that reuses its pid. ``job_id`` and ``attempt`` are the values of
    ``CORRAL_JOB_ID`` and ``CORRAL_ATTEMPT`` in its env, inherited by its children: they
    vouch for a group whose leader has already exited.
    """

    pgid: int
    start_ticks: int
    boot_id: str
    job_id: str
    attempt: str


def record_process(pid: int, env: Mapping[str, str]) -> ProcessRecord:
    """The record of a leader this agent just started with ``env``; OSError without /proc."""
    stat = proc_stat(pid)  # a leader that exited at once is an unreaped zombie: it has one
    if stat is None:
        raise OSError(f"/proc/{pid}/stat is unreadable")
    return ProcessRecord(
        pgid=pid,
        start_ticks=stat.start_ticks,
        boot_id=boot_id(),
        job_id=env[JOB_ID_ENV],
        attempt=env[ATTEMPT_ENV],
    )


def write_record(path: Path, record: ProcessRecord) -> None:
    """Write atomically (a temp file, then a rename): a reader sees all of it or none.

    No fsync: only a crash of the machine loses the page cache, and that ends the
    recorded processes too.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    os.replace(tmp, path)


def read_record(path: Path) -> ProcessRecord | None:
    """The record at ``path``; None when it is missing, torn or malformed."""
    try:
        data = json.loads(path.read_text())
        record = ProcessRecord(
            pgid=int(data["pgid"]),
            start_ticks=int(data["start_ticks"]),
            boot_id=str(data["boot_id"]),
            job_id=str(data["job_id"]),
            attempt=str(data["attempt"]),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return record if record.pgid > 1 else None  # never signal group 0 (ours) or 1 (init)


class OrphanOutcome(StrEnum):
    GONE = "gone"  # nothing of it ran any more (or the node rebooted since)
    STOPPED = "stopped"  # its group exited within the grace after SIGTERM
    KILLED = "killed"  # its group got SIGKILL after the grace
    STUCK = "stuck"  # its group outlived even SIGKILL (a process in uninterruptible sleep)
    NOT_OURS = "not_ours"  # its pid or group belongs to other processes now: not signalled
    UNREADABLE = "unreadable"  # its record could not be read: nothing was signalled


@dataclass(frozen=True)
class Orphan:
    """What the sweep found and did about one attempt of a previous agent life."""

    attempt_id: int
    pgid: int | None  # None when the record was unreadable
    outcome: OrphanOutcome

    def describe(self, grace_s: float) -> str:
        return _TEXT[self.outcome].format(pgid=self.pgid, grace_s=grace_s)


_TEXT = {
    OrphanOutcome.GONE: "none of its processes runs any more",
    OrphanOutcome.STOPPED: "its process group {pgid} exited after SIGTERM",
    OrphanOutcome.KILLED: "its process group {pgid} got SIGKILL after a {grace_s:g} s grace",
    OrphanOutcome.STUCK: "its process group {pgid} outlived SIGKILL; its GPUs may be in use",
    OrphanOutcome.NOT_OURS: "pid {pgid} belongs to other processes now; nothing signalled",
    OrphanOutcome.UNREADABLE: "its process record is unreadable; nothing signalled",
}


WARNING_OUTCOMES = frozenset(
    {OrphanOutcome.STUCK, OrphanOutcome.NOT_OURS, OrphanOutcome.UNREADABLE}
)


@dataclass(frozen=True)
class ProcStat:
    state: str  # field 3: R, S, D, Z, ...
    pgrp: int  # field 5
    session: int  # field 6
    start_ticks: int  # field 22


def proc_stat(pid: int) -> ProcStat | None:
    """Fields of ``/proc/<pid>/stat``; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            text = stat_file.read().decode(errors="replace")
    except OSError:
        return None
    # Field 2, the command in parentheses, may hold spaces and ')'; no later field does.
    fields = text[text.rindex(")") + 2 :].split()
    return ProcStat(
        state=fields[0], pgrp=int(fields[2]), session=int(fields[3]), start_ticks=int(fields[19])
    )


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def live_groups() -> dict[int, list[int]]:
    """Id -> the live (not zombie) pids whose process group or session has that id.

    An attempt's leader leads its session and its process group, both numbered by its
    pid. Most of an attempt stays in that group; some programs move their processes
    to groups of their own (Ray's workers do) but not to another session, so the
    attempt is everything in its session. One scan of /proc.
    """
    groups: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat.state != "Z":
                groups.setdefault(stat.pgrp, []).append(int(name))
                if stat.session != stat.pgrp:
                    groups.setdefault(stat.session, []).append(int(name))
    return groups


def session_members(sid: int, outside_group: int | None = None) -> list[int]:
    """The live pids of session ``sid`` (its leader included, if alive); with
    ``outside_group``, only those not in that process group."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is None or stat.state == "Z" or stat.session != sid:
                continue
            if outside_group is None or stat.pgrp != outside_group:
                members.append(int(name))
    return members


def signal_attempt(leader: int, sig: signal.Signals) -> None:
    """Signal an attempt: the process group ``leader`` and the rest of its session.

    Each process gets the signal once. ``leader`` must be a verified attempt leader
    (its own session's): the kernel reuses no pid while a group or session of that
    number exists, so every process signalled is the attempt's. A process gone, or
    one this user may not signal, is skipped.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, sig)
    for pid in session_members(leader, outside_group=leader):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _carries(pid: int, record: ProcessRecord) -> bool:
    """Whether the env of ``pid`` names the record's job and attempt."""
    try:
        environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return False
    wanted = {f"{JOB_ID_ENV}={record.job_id}", f"{ATTEMPT_ENV}={record.attempt}"}
    return {entry.encode() for entry in wanted} <= environ


def identify(record: ProcessRecord, groups: Mapping[int, list[int]]) -> OrphanOutcome | None:
    """None when live processes of the record's group are the attempt's; else why not.

    ``groups`` is a fresh ``live_groups()``.

    The kernel does not hand out a pid while a process group of that number exists.
    So a leader with the recorded start time vouches for its whole group, and a pid
    now held by a process with another start time means the attempt's group ended
    before the pid was reused. A leaderless group is the attempt's when a member
    carries its env (children of an exited leader), and is not touched otherwise.
    """
    if record.boot_id != boot_id():
        return OrphanOutcome.GONE  # the node rebooted since
    leader = proc_stat(record.pgid)
    if leader is not None and leader.start_ticks != record.start_ticks:
        return OrphanOutcome.NOT_OURS
    members = groups.get(record.pgid, [])
    if not members:
        return OrphanOutcome.GONE
    if leader is not None or any(_carries(pid, record) for pid in members):
        return None
    return OrphanOutcome.NOT_OURS


def stop_groups(records: Mapping[int, ProcessRecord | None], grace_s: float) -> list[Orphan]:
    """Stop the attempts' groups that still run (None: an unreadable record); by id.

    The live ones get SIGTERM together and share one grace, so the sweep takes about
    ``grace_s`` however many there are.
    """
    found: dict[int, Orphan] = {}
    to_stop: dict[int, ProcessRecord] = {}
    groups = live_groups()
    for attempt_id, record in records.items():
        outcome = OrphanOutcome.UNREADABLE if record is None else identify(record, groups)
        if record is not None and outcome is None:
            to_stop[attempt_id] = record
        else:
            pgid = None if record is None else record.pgid
            found[attempt_id] = Orphan(attempt_id, pgid, outcome or OrphanOutcome.GONE)
    for attempt_id, outcome in _end_groups(to_stop, grace_s).items():
        found[attempt_id] = Orphan(attempt_id, to_stop[attempt_id].pgid, outcome)
    return [found[attempt_id] for attempt_id in sorted(found)]


def _still_running(records: dict[int, ProcessRecord], deadline: float) -> dict[int, ProcessRecord]:
    """Wait until none of the groups runs or ``deadline`` (monotonic); those still running."""
    while True:
        groups = live_groups()
        records = {key: rec for key, rec in records.items() if identify(rec, groups) is None}
        if not records or time.monotonic() >= deadline:
            return records
        time.sleep(ORPHAN_POLL_S)


def _end_groups(records: dict[int, ProcessRecord], grace_s: float) -> dict[int, OrphanOutcome]:
    """SIGTERM each group, SIGKILL those alive after ``grace_s``; each one's outcome.

    Every signal follows an ``identify`` that found the group still the attempt's.
    """
    for record in records.values():
        signal_attempt(record.pgid, signal.SIGTERM)
    overdue = _still_running(records, time.monotonic() + grace_s)
    for record in overdue.values():
        signal_attempt(record.pgid, signal.SIGKILL)
    stuck = _still_running(overdue, time.monotonic() + ORPHAN_KILL_WAIT_S)
    outcomes = dict.fromkeys(records, OrphanOutcome.STOPPED)
    outcomes.update(dict.fromkeys(overdue, OrphanOutcome.KILLED))
    outcomes.update(dict.fromkeys(stuck, OrphanOutcome.STUCK))
    return outcomes
