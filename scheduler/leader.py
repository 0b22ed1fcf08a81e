"""Which server runs the loops (the scheduling cycle, liveness, limits, ...): the leader.

- SQLite: one server per database file. ``lock_sqlite_file`` holds an exclusive
  ``flock`` on ``<db>.lock`` beside it for the server's life; a second server on the
  same file stops at start with one line. The kernel drops the lock when the process
  dies, however it dies, so a crashed server never blocks its successor.
- PostgreSQL: every server serves the API; ``lead`` elects one to run the loops with
  ``Runtime.election`` (a ``LeaderLock``: an advisory lock on a dedicated connection).
  A follower tries for the lock every ``RETRY_S``; the leader checks every
  ``CHECK_S`` that its lock's session is alive and, when it is not (the database
  restarted, the connection broke, the check hung), stops its loops at once and
  becomes a follower. A write of the cycle that was already under way is fenced by
  the leader epoch (``store/leadership.py:fence``), so a deposed leader cannot
  commit placements.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from scheduler.loops.base import Loop, run_loops
from scheduler.runtime import Runtime
from scheduler.store.leadership import LeaderLock, WakeChannel

log = logging.getLogger("corral.leader")

RETRY_S = 1.0  # how often a follower tries to become leader
CHECK_S = 1.0  # how often the leader checks it still holds the lock
CHECK_TIMEOUT_S = 3.0  # a check that takes longer counts as a lost lock
LEADER = "leader"
FOLLOWER = "follower"


class AlreadyServing(RuntimeError):
    """Another server already uses this SQLite database (the message says which)."""


def lock_sqlite_file(database: Path) -> IO[str]:
    """Hold ``<database>.lock`` exclusively (keep the returned file open), or raise."""
    path = database.with_name(database.name + ".lock")
    handle = open(path, "a+")  # noqa: SIM115 - held open for the server's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyServing(
            f"another corral server (pid {holder}) is using {database}; SQLite supports "
            "one server, run several on PostgreSQL (--database-url)"
        ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@contextlib.contextmanager
def standing(rt: Runtime) -> Iterator[None]:
    """This server's place beside others for its life: the SQLite file's lock, or (on
    PostgreSQL) the election and the wake-ups shared with the other servers."""
    sqlite_path = rt.db.sqlite_path
    if rt.db.is_sqlite:
        handle = lock_sqlite_file(sqlite_path) if sqlite_path is not None else None
        try:
            yield
        finally:
            if handle is not None:
                handle.close()
        return
    origin = f"{socket.gethostname()} pid {os.getpid()}"
    rt.election = LeaderLock(rt.db.url, holder=origin)
    channel = WakeChannel(rt.db.url, origin, rt.notifier.wake_local)
    rt.notifier.publish = channel.publish
    channel.start()
    try:
        yield
    finally:
        rt.notifier.publish = None
        channel.stop()


async def lead(rt: Runtime, loops: list[Loop], stopping: asyncio.Event) -> None:
    """Run ``loops`` while this server leads, until ``stopping`` is set."""
    election = rt.election
    if election is None:
        rt.role = LEADER
        await run_loops(loops, stopping)
        return
    rt.role = FOLLOWER
    failures = 0
    try:
        while not stopping.is_set():
            try:
                epoch = await asyncio.to_thread(election.try_acquire)
                failures = 0
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot try for leadership: %s", str(exc).splitlines()[0])
                election.abandon()
                epoch = None
            if epoch is None:
                await _sleep(RETRY_S, stopping)
                continue
            await _term(rt, epoch, loops, stopping)
    finally:
        await asyncio.to_thread(election.release)


async def _term(rt: Runtime, epoch: int, loops: list[Loop], stopping: asyncio.Event) -> None:
    """One term as leader: the loops run until the lock is lost or the server stops."""
    assert rt.election is not None
    rt.role, rt.leader_epoch = LEADER, epoch
    log.info("this server leads (epoch %d): it runs the scheduling cycle and loops", epoch)
    term_over = asyncio.Event()
    task = asyncio.create_task(run_loops(loops, term_over))
    rt.notifier.wake(schedule=True)  # a first cycle at once: the last leader may have died mid-way
    try:
        while not stopping.is_set():
            await _sleep(CHECK_S, stopping)
            if stopping.is_set() or not await _still_held(rt):
                break
        if not stopping.is_set():
            log.warning("lost leadership (epoch %d): loops stop, this server follows", epoch)
    finally:
        rt.role, rt.leader_epoch = FOLLOWER, 0  # fences any write still under way
        term_over.set()
        await task


async def _still_held(rt: Runtime) -> bool:
    election = rt.election
    assert election is not None
    try:
        return await asyncio.wait_for(asyncio.to_thread(election.still_held), CHECK_TIMEOUT_S)
    except TimeoutError:
        election.abandon()
        return False


async def _sleep(seconds: float, stopping: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
