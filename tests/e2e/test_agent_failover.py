"""Agent failover: an agent given several servers syncs with the first that answers.

The link tests (fast, a mock transport) pin the rule: a connection error or a 503 moves
the agent to the next server within the same sync, and it stays there while that one
works; any other failure is retried on the same server. The end-to-end test runs two
servers on one PostgreSQL and agents given both URLs, the first one the leader; the
leader is SIGKILLed and the agents' jobs keep being placed and finishing through the
second server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from agents.link import Link, LinkError, server_urls
from scheduler.domain.sync import NodeFacts, SyncReply, SyncRequest
from scheduler.localcluster import LocalCluster
from scheduler.store.db import Database
from tests.checks import assert_no_attempt_overlap
from tests.e2e.test_crash_safety import gpu_overlaps, terminal_transitions
from tests.e2e.test_ha import _all_succeeded, _role, _server, _submit, pg_url  # noqa: F401
from tests.e2e.test_spine import wait_until

REQUEST = SyncRequest(node=NodeFacts(name="node-1", hostname="h", cpus=1, memory_total_mib=1))
A, B = "http://a.test:8000", "http://b.test:8000"
Handler = Callable[[httpx.Request], httpx.Response]


def _syncs(handler: Handler, count: int) -> tuple[list[SyncReply | str], list[str]]:
    """``count`` syncs through a link to A then B: each reply (or error), and the hosts hit."""
    hosts: list[str] = []

    def recording(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return handler(request)

    async def go() -> list[SyncReply | str]:
        link = Link(f"{A}/, {B}", "tok", transport=httpx.MockTransport(recording))
        results: list[SyncReply | str] = []
        try:
            for _ in range(count):
                try:
                    results.append(await link.sync(REQUEST))
                except LinkError as err:
                    results.append(str(err))
        finally:
            await link.aclose()
        return results

    return asyncio.run(go()), hosts


def _up(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"node_state": "up"})


def test_a_dead_first_server_sends_the_agent_to_the_next_and_it_stays() -> None:
    def a_refuses(request: httpx.Request) -> httpx.Response:
        if request.url.host == "a.test":
            raise httpx.ConnectError("refused")
        return _up(request)

    replies, hosts = _syncs(a_refuses, 3)
    assert replies == [SyncReply(node_state="up")] * 3
    assert hosts == ["a.test", "b.test", "b.test", "b.test"]


def test_a_503_moves_on_and_a_later_failure_comes_back_round() -> None:
    down = {"a.test"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host in down:
            return httpx.Response(503, json={"error": {"message": "database unavailable"}})
        return _up(request)

    replies, hosts = _syncs(handler, 1)
    assert (replies, hosts) == ([SyncReply(node_state="up")], ["a.test", "b.test"])

    down.add("b.test")
    replies, hosts = _syncs(handler, 1)  # every server failed: the last error is raised
    assert replies == ["sync failed with HTTP 503: database unavailable"]
    assert hosts == ["a.test", "b.test"]


def test_other_failures_stay_with_the_same_server() -> None:
    replies, hosts = _syncs(lambda _: httpx.Response(500, text="boom"), 2)
    assert replies == ["sync failed with HTTP 500: boom"] * 2
    assert hosts == ["a.test", "a.test"]


@pytest.mark.parametrize("servers", ["", "http://a:1,", " , "])
def test_a_server_list_with_an_empty_url_is_refused(servers: str) -> None:
    with pytest.raises(ValueError, match="an empty URL"):
        server_urls(servers)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.postgres
def test_agents_fail_over_when_their_server_dies(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    first, second = _server(tmp_path / "a", pg_url), _server(tmp_path / "b", pg_url)
    with first, second:
        first.start_server()
        wait_until(lambda: _role(first) == "leader", 30, "the first server to lead")
        second.start_server()
        second.token = first.token  # one database: the admin token works on both
        for name in ("node-a", "node-b"):  # the first URL is the leader's
            first.start_agent(name, "sim:2", "--server", second.url)
        first.wait_for_nodes(["node-a", "node-b"])

        before = _submit(first, 6)
        wait_until(lambda: _all_succeeded(first, before), 60, "jobs run via the first server")
        assert _agents_log_mention(first, second.url) == 0  # it stayed with the first

        first.server.kill()  # type: ignore[union-attr]
        wait_until(lambda: _role(second) == "leader", 15, "the second server to lead")
        after = _submit(second, 8)
        wait_until(lambda: _all_succeeded(second, after), 90, "jobs after the failover")
        assert _agents_log_mention(first, second.url) == 2  # each agent moved once
        with second.client() as client:
            nodes = {node.name: node.state for node in client.list_nodes().nodes}
        assert nodes == {"node-a": "up", "node-b": "up"}  # never declared lost
        assert all(proc.alive() for proc in first.agents.values())
    db = Database(pg_url)
    try:
        assert not gpu_overlaps(db)
        assert_no_attempt_overlap(db)
        transitions = terminal_transitions(db)
        assert all(transitions[job_id] == 1 for job_id in before + after)
    finally:
        db.dispose()


def _agents_log_mention(cluster: LocalCluster, url: str) -> int:
    """How many agents logged a move to ``url``."""
    return sum(
        f"trying {url}" in proc.log_path.read_text(errors="replace")
        for proc in cluster.agents.values()
    )
