"""A placement reaches a waiting agent without any periodic tick: against a real server
process whose safety-net cycle runs once an hour, a submit wakes the cycle, the cycle
places the job and the placement releases the agent's held long poll (far shorter than
the hour, far longer than the wait)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from scheduler.domain.sync import SyncReply
from scheduler.localcluster import LocalCluster
from tests.factories import node_facts
from tests.integration.api.harness import JOBS, NODES, SYNC, spec_body, sync_body

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HELD_S = 25.0  # the agent's long poll; the server caps it at its own long-poll limit
NO_TICK_S = "3600"  # the periodic cycle: never within the test


@pytest.fixture
def server(upgraded_database_url: str, tmp_path: Path) -> Iterator[LocalCluster]:
    args = ("--database-url", upgraded_database_url, "--cycle-interval-s", NO_TICK_S)
    with LocalCluster(tmp_path, server_args=(*args, "--log-level", "warning")) as cluster:
        cluster.start_server()
        yield cluster


def http_client(cluster: LocalCluster) -> httpx.Client:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    return httpx.Client(base_url=cluster.url, headers=headers, timeout=HELD_S + 60)


def test_a_submit_reaches_a_held_sync_through_events_alone(server: LocalCluster) -> None:
    facts = node_facts("n1", 2)
    with http_client(server) as http, ThreadPoolExecutor(max_workers=1) as pool:
        assert http.post(SYNC, json=sync_body(facts)).status_code == 200
        seen = http.get(f"{NODES}/n1").json()["last_seen_at"]

        def held() -> tuple[SyncReply, float]:
            with http_client(server) as own:
                response = own.post(SYNC, json=sync_body(facts, wait_s=HELD_S))
                assert response.status_code == 200, response.text
                return SyncReply.model_validate(response.json()), time.monotonic()

        future = pool.submit(held)
        deadline = time.monotonic() + 60
        while http.get(f"{NODES}/n1").json()["last_seen_at"] == seen:  # it holds the reply
            assert not future.done(), f"the sync was not held: {future.result()}"
            assert time.monotonic() < deadline, "the held sync never reached the server"
            time.sleep(0.02)
        submitted = time.monotonic()
        response = http.post(JOBS, json=spec_body())
        assert response.status_code == 201, response.text
        reply, answered = future.result(timeout=HELD_S + 60)
    assert [launch.job_id for launch in reply.run] == [response.json()["id"]]
    assert answered >= submitted  # the reply came after the submit ...
    assert answered - submitted < HELD_S  # ... released by it, not by the poll's timeout
