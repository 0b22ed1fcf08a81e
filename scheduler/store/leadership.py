"""Leadership among several servers on one PostgreSQL, and the wake-ups they share.

Owns three things, each on a dedicated connection outside the pool:

- ``LeaderLock``: a session-level advisory lock (``pg_try_advisory_lock``). The
  server holding it is the leader. PostgreSQL releases it when the holder's session
  ends (a crash, a lost connection), so a follower trying every second gets it within
  seconds. Each election bumps the ``leadership`` row's epoch.
- ``fence``: a leader's write transaction reads the epoch ``FOR SHARE`` and refuses to
  go on unless it is the one it was elected in. A new leader's epoch bump waits for
  that share lock, so once the bump commits no write of a deposed leader can commit.
- ``WakeChannel``: LISTEN/NOTIFY carries the notifier's wake-ups between servers: a
  placement committed by the leader wakes the long poll an agent holds on a follower,
  and a submit on a follower wakes the leader's cycle. A NOTIFY lost while a listener
  reconnects costs latency only: the listener then wakes everything it serves, and a
  long poll answers after its timeout in any case.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, create_engine, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from scheduler.store.models import LeadershipRow

log = logging.getLogger("corral.leadership")

LOCK_KEY = 0x636F7272  # "corr": one advisory lock key for the scheduler's leader
DUTY = "scheduler"
WAKE_CHANNEL = "corral_wake"
MAX_PAYLOAD_BYTES = 7000  # PostgreSQL refuses a NOTIFY payload of 8000 bytes or more
# a dead peer is noticed in seconds, not after the kernel's two-hour keepalive default
CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}

NOTIFY = text("SELECT pg_notify(:c, :p)")

Deliver = Callable[[list[str] | None, bool], None]  # node names (None: all), schedule


class NotLeader(RuntimeError):
    """This server is no longer the leader it was elected as: its write must not commit."""


def _dedicated(url: str) -> Any:
    return create_engine(url, poolclass=NullPool, connect_args=CONNECT_ARGS)


class LeaderLock:
    """The advisory lock on one dedicated connection; not thread-safe (one caller)."""

    def __init__(self, url: str, holder: str) -> None:
        self.holder = holder
        self._engine = _dedicated(url)
        self._conn: Connection | None = None

    def try_acquire(self) -> int | None:
        """The new epoch when this server just became leader, else None (raises if the
        database cannot be reached)."""
        conn = self._conn or self._connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        conn.commit()
        if not got:
            return None
        try:
            return self._bump_epoch(conn)
        except BaseException:
            self.abandon()
            raise

    def _connect(self) -> Connection:
        self._conn = self._engine.connect()
        return self._conn

    def _bump_epoch(self, conn: Connection) -> int:
        now = datetime.now(UTC)
        epoch = conn.execute(
            update(LeadershipRow)
            .where(LeadershipRow.name == DUTY)
            .values(epoch=LeadershipRow.epoch + 1, holder=self.holder, acquired_at=now)
            .returning(LeadershipRow.epoch)
        ).scalar()
        if epoch is None:  # the first election ever; the lock keeps out any other
            epoch = 1
            conn.execute(
                insert(LeadershipRow).values(
                    name=DUTY, epoch=epoch, holder=self.holder, acquired_at=now
                )
            )
        conn.commit()
        return int(epoch)

    def still_held(self) -> bool:
        """Whether the lock's session is alive and holds it; False drops the connection."""
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                    " AND granted AND pid = pg_backend_pid() AND objid = :k)"
                ),
                {"k": LOCK_KEY},
            ).scalar()
            self._conn.commit()
        except SQLAlchemyError:
            held = False
        if not held:
            self.abandon()
        return bool(held)

    def abandon(self) -> None:
        """Forget the connection (a hung call may still use it; it is not closed here)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()

    def release(self) -> None:
        """Close the session, which releases the lock (a clean shutdown)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self._engine.dispose()


def fence(session: Session, epoch: int) -> None:
    """Raise NotLeader unless ``epoch`` is still the current one (locks the row shared)."""
    current = session.scalar(
        select(LeadershipRow.epoch).where(LeadershipRow.name == DUTY).with_for_update(read=True)
    )
    if current != epoch:
        raise NotLeader(f"leadership moved on (epoch {current}, this server led epoch {epoch})")


def _payloads(origin: str, names: list[str], schedule: bool) -> list[str]:
    """JSON messages under PostgreSQL's payload limit; the names split across them."""
    chunks: list[list[str]] = [[]]
    size = 0
    for name in names:
        if size + len(name) + 4 > MAX_PAYLOAD_BYTES - 100 and chunks[-1]:
            chunks.append([])
            size = 0
        chunks[-1].append(name)
        size += len(name) + 4
    return [json.dumps({"o": origin, "n": chunk, "s": schedule}) for chunk in chunks]


class WakeChannel:
    """Publishes this server's wake-ups and delivers the other servers' (two threads).

    ``publish`` never blocks: wake-ups queue up and a thread sends them, coalesced.
    """

    def __init__(self, url: str, origin: str, deliver: Deliver) -> None:
        self.origin = origin
        self._deliver = deliver
        self._engine = _dedicated(url)
        self._queue: queue.Queue[tuple[list[str], bool]] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._publish_forever, name="wake-publish", daemon=True),
            threading.Thread(target=self._listen_forever, name="wake-listen", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._engine.dispose()

    def publish(self, names: list[str], schedule: bool) -> None:
        self._queue.put((names, schedule))

    def _next_batch(self) -> tuple[list[str], bool] | None:
        try:
            names, schedule = self._queue.get(timeout=0.5)
        except queue.Empty:
            return None
        merged = set(names)
        while True:
            try:
                more, again = self._queue.get_nowait()
            except queue.Empty:
                return sorted(merged), schedule
            merged.update(more)
            schedule = schedule or again

    def _publish_forever(self) -> None:
        conn: Connection | None = None
        while not self._stop.is_set():
            batch = self._next_batch()
            if batch is None:
                continue
            try:
                conn = conn or self._engine.connect()
                for payload in _payloads(self.origin, *batch):
                    conn.execute(NOTIFY, {"c": WAKE_CHANNEL, "p": payload})
                conn.commit()
            except SQLAlchemyError as exc:
                log.debug("could not publish a wake-up: %s", exc)
                _drop(conn)
                conn = None
        _drop(conn)

    def _listen_forever(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with self._engine.connect() as opened:
                    conn = opened.execution_options(isolation_level="AUTOCOMMIT")
                    conn.exec_driver_sql(f"LISTEN {WAKE_CHANNEL}")
                    failures = 0
                    self._deliver(None, True)  # whatever was sent while we were away
                    self._drain(conn.connection.driver_connection)
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot listen for other servers' wake-ups: %s", exc)
                self._stop.wait(1.0)

    def _drain(self, raw: Any) -> None:
        while not self._stop.is_set():
            for note in raw.notifies(timeout=1.0):
                message = json.loads(note.payload)
                if message.get("o") != self.origin:
                    self._deliver(list(message.get("n", [])), bool(message.get("s")))


def _drop(conn: Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.invalidate()
            conn.close()
