"""The agent sync is a long poll: held while the node has nothing to do, answered at once
when it has, and released as soon as its desired state changes (in-process server; the
same against a real server process is in test_server_process.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from scheduler.domain.sync import AttemptReport, SyncReply
from tests.factories import node_facts, report
from tests.integration.api.harness import JOBS, NODES, Api

NODE = node_facts("n1", 2)
HELD_S = 10.0  # a held sync that is released by a change returns well before this


def timed_sync(api: Api, *reports: AttemptReport, wait_s: float) -> tuple[SyncReply, float]:
    started = time.monotonic()
    reply = api.sync(NODE, *reports, wait_s=wait_s)
    return reply, time.monotonic() - started


def poll_until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def held_sync(
    api: Api, pool: ThreadPoolExecutor, *reports: AttemptReport
) -> Future[tuple[SyncReply, float]]:
    """Start a sync that waits up to HELD_S; returns once the server holds it.

    The held sync's own write (the node's ``last_seen_at``) is visible only after it read
    the node's desired state, so any change from then on must release it.
    """
    seen = api.ok("GET", f"{NODES}/{NODE.name}")["last_seen_at"]
    future = pool.submit(timed_sync, api, *reports, wait_s=HELD_S)

    def synced() -> bool:
        assert not future.done(), f"the sync was not held: {future.result()}"
        return bool(api.ok("GET", f"{NODES}/{NODE.name}")["last_seen_at"] != seen)

    poll_until(synced, "the held sync reached the server")
    return future


def test_a_sync_with_nothing_to_do_waits_out_wait_s(api: Api) -> None:
    api.sync(NODE)
    wait_s = 0.3
    reply, elapsed = timed_sync(api, wait_s=wait_s)
    assert (reply.run, reply.stop, reply.node_state) == ([], [], "up")
    assert elapsed >= wait_s  # it was held


def test_a_sync_with_work_to_do_returns_at_once(api: Api) -> None:
    api.sync(NODE)
    job_id = api.submit()["id"]
    api.cycle()
    reply, elapsed = timed_sync(api, wait_s=HELD_S)
    assert [launch.job_id for launch in reply.run] == [job_id]
    assert elapsed < HELD_S


def test_a_held_sync_returns_when_a_job_is_placed_on_its_node(api: Api) -> None:
    api.sync(NODE)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = held_sync(api, pool)
        job_id = api.submit()["id"]
        assert api.cycle().placed == 1
        reply, elapsed = future.result(timeout=HELD_S + 10)
    assert [launch.job_id for launch in reply.run] == [job_id]
    assert elapsed < HELD_S


def test_a_held_sync_returns_when_its_running_attempt_is_cancelled(api: Api) -> None:
    api.sync(NODE)
    job_id = api.submit()["id"]
    api.cycle()
    (launch,) = api.sync(NODE).run
    running = report(launch.attempt_id)
    api.sync(NODE, running)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = held_sync(api, pool, running)
        assert api.ok("POST", f"{JOBS}/{job_id}/cancel")["status"] == "stopping"
        reply, elapsed = future.result(timeout=HELD_S + 10)
    stops: list[Any] = [(s.attempt_id, s.reason) for s in reply.stop]
    assert (reply.run, stops) == ([], [(launch.attempt_id, "cancelled")])
    assert elapsed < HELD_S
