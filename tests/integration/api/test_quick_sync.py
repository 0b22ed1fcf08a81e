"""The quick sync: a sync that changes nothing is answered from a read, its readings are
written later in a batch, and an agent's token is kept but still revocable; every server
of several answers the same (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from scheduler.api import deps
from scheduler.api.app import create_app
from scheduler.domain.status import PartState
from scheduler.domain.sync import AttemptState, GpuSample, HostSample, SyncReply, SyncRequest
from scheduler.runtime import Runtime
from scheduler.services import agents
from scheduler.settings import ServerSettings
from scheduler.store.agent_sync import desired_state, quick_sync
from scheduler.store.db import Database
from scheduler.store.models import AttemptPartRow, GpuSampleRow, HostSampleRow, NodeRow
from scheduler.store.nodes import get_node
from scheduler.store.telemetry import NodeReading, write_readings
from tests.factories import exited, node_facts, report
from tests.integration.api.harness import SYNC, Api, sync_body

NODE = node_facts("n1", 2)
V1 = "/api/v1"


@pytest.fixture
def no_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readings are written only when a test flushes them."""
    monkeypatch.setattr(agents, "FLUSH_INTERVAL_S", 3600.0)


def node_row(api: Api) -> NodeRow:
    with api.rt.db.read() as session:
        node = get_node(session, NODE.name)
        node.gpus  # loaded while the session is open  # noqa: B018
        return node


def sample_rows(api: Api) -> tuple[int, int]:
    with api.rt.db.read() as session:
        gpus = session.scalar(select(func.count()).select_from(GpuSampleRow))
        hosts = session.scalar(select(func.count()).select_from(HostSampleRow))
    return int(gpus or 0), int(hosts or 0)


def running_on_n1(api: Api) -> int:
    """A job placed on n1 whose part the agent has reported running; its attempt id."""
    return api.running_on(NODE).attempt_id


def post_sync(http: TestClient, token: str, body: dict[str, object]) -> int:
    response = http.post(SYNC, json=body, headers={"Authorization": f"Bearer {token}"})
    return response.status_code


def test_a_sync_that_changes_nothing_leaves_its_readings_for_the_flush(
    api: Api, no_timer: None
) -> None:
    attempt_id = running_on_n1(api)
    before, rows_before = node_row(api), sample_rows(api)
    samples = [GpuSample(index=i, utilization_pct=42.0, memory_used_mib=7) for i in range(2)]
    req = SyncRequest(
        node=NODE,
        attempts=[report(attempt_id)],
        gpu_samples=samples,
        host=HostSample(cpu_pct=12.0, memory_used_mib=9),
    )
    reply = SyncReply.model_validate(api.ok("POST", SYNC, json=req.model_dump(mode="json")))

    assert [launch.attempt_id for launch in reply.run] == [attempt_id]
    assert node_row(api).last_seen_at == before.last_seen_at  # nothing written yet
    agents.flush_readings(api.rt)
    after = node_row(api)
    assert after.last_seen_at > before.last_seen_at
    assert after.cpu_pct == 12.0 and after.memory_used_mib == 9
    assert [gpu.utilization_pct for gpu in after.gpus] == [42.0, 42.0]
    assert sample_rows(api) == (rows_before[0] + 2, rows_before[1] + 1)


def test_the_quick_reply_is_the_full_paths_reply(api: Api, no_timer: None) -> None:
    attempt_id = running_on_n1(api)
    api.ok("POST", f"{V1}/jobs/{api.ok('GET', f'{V1}/jobs')['jobs'][0]['id']}/cancel")
    api.submit()
    api.cycle()
    req = SyncRequest(node=NODE, attempts=[report(attempt_id)])
    quick = SyncReply.model_validate(api.ok("POST", SYNC, json=req.model_dump(mode="json")))
    s = api.rt.settings
    with api.rt.db.read() as session:
        node = get_node(session, NODE.name)
        full = desired_state(
            session, node, req, s.checkpoints, s.agent_sync_interval_s, s.node_timeout_s
        )
    assert [stop.attempt_id for stop in quick.stop] == [attempt_id]  # the cancel
    assert len(quick.run) == 1  # the next job, on the other GPU
    assert quick == full


def test_a_sync_that_changes_a_job_is_written_before_its_reply(api: Api, no_timer: None) -> None:
    attempt_id = running_on_n1(api)
    job_id = api.ok("GET", f"{V1}/jobs")["jobs"][0]["id"]
    exited = report(attempt_id, AttemptState.EXITED, exit_code=0)
    api.ok("POST", SYNC, json=sync_body(NODE, exited))  # no flush: the write path
    assert api.job(job_id)["status"] == "succeeded"


def test_a_report_of_a_known_node_writes_the_report_and_leaves_its_readings(
    api: Api, no_timer: None
) -> None:
    """On both backends (SQLite in its group commit) only the attempt report is written
    at once: the node's facts are as stored, and last seen waits for the flush."""
    attempt_id = running_on_n1(api)
    agents.flush_readings(api.rt)
    seen = node_row(api).last_seen_at
    job_id = api.ok("GET", f"{V1}/jobs")["jobs"][0]["id"]
    exited = SyncRequest(
        node=NODE,
        attempts=[report(attempt_id, AttemptState.EXITED, exit_code=0)],
        host=HostSample(cpu_pct=33.0, memory_used_mib=5),
    )
    api.ok("POST", SYNC, json=exited.model_dump(mode="json"))
    assert api.job(job_id)["status"] == "succeeded"
    assert node_row(api).last_seen_at == seen  # not yet
    agents.flush_readings(api.rt)
    after = node_row(api)
    assert after.last_seen_at > seen and after.cpu_pct == 33.0


def test_an_older_reading_never_moves_a_node_back(api: Api) -> None:
    api.sync(NODE)
    seen = node_row(api).last_seen_at
    old = NodeReading(
        node_row(api).id, seen - timedelta(seconds=5), HostSample(cpu_pct=1.0), (), False
    )
    with api.rt.db.write() as session:
        write_readings(session, [old], [])
    row = node_row(api)
    assert row.last_seen_at == seen and row.cpu_pct != 1.0


@pytest.fixture
def second(api: Api, tmp_path: Path) -> Iterator[Api]:
    """Another server on the same database (as several servers share PostgreSQL)."""
    settings = ServerSettings(data_dir=tmp_path / "second", database_url=api.rt.db.url)
    rt = Runtime(db=Database(api.rt.db.url), settings=settings)
    try:
        with TestClient(create_app(rt, run_loops_in_app=False)) as http:
            yield Api(app=http.app, http=http, rt=rt, token=api.token)  # type: ignore[arg-type]
    finally:
        rt.db.dispose()


def test_an_agent_token_revoked_on_another_server_stops_working(
    api: Api, second: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = api.ok("POST", f"{V1}/tokens", 201, json={"node": NODE.name})["token"]
    body = sync_body(NODE)
    assert post_sync(api.http, token, body) == 200  # verified once, then kept
    token_id = second.ok("GET", f"{V1}/tokens")["tokens"][-1]["id"]
    second.ok("POST", f"{V1}/tokens/{token_id}/revoke")

    monkeypatch.setattr(deps.AgentTokens, "RECHECK_S", 3600.0)
    assert post_sync(api.http, token, body) == 200  # kept until the next look
    monkeypatch.setattr(deps.AgentTokens, "RECHECK_S", 0.0)
    assert post_sync(api.http, token, body) == 401


def test_a_node_synced_through_two_servers_keeps_its_newest_time(
    api: Api, second: Api, no_timer: None
) -> None:
    api.sync(NODE)
    api.ok("POST", SYNC, json=sync_body(NODE))  # buffered on the first server ...
    second.sync(NODE)  # ... while the second writes a newer one at once
    newest = node_row(api).last_seen_at
    agents.flush_readings(api.rt)  # the first server's older reading comes late
    assert node_row(api).last_seen_at == newest


@pytest.mark.parametrize("gpus", [0, 2])
def test_a_known_node_with_or_without_gpus_is_read_in_one_go(api: Api, gpus: int) -> None:
    facts = node_facts(f"quick-{gpus}", gpus)
    api.sync(facts)  # registers it (the write path)
    s = api.rt.settings
    req = SyncRequest(node=facts)
    with api.rt.db.read() as session:
        quick = quick_sync(session, req, s.checkpoints, s.agent_sync_interval_s)
    assert quick is not None and quick.reply is not None
    assert sorted(quick.gpu_ids) == list(range(gpus))
    other = SyncRequest(node=node_facts(f"quick-{gpus}", gpus + 1))  # new facts: not quick
    with api.rt.db.read() as session:
        assert quick_sync(session, other, s.checkpoints, s.agent_sync_interval_s) is None


def statements_during(api: Api, call: Callable[[], object]) -> list[str]:
    """The SQL ``call`` sends to the database."""
    seen: list[str] = []

    def capture(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    for engine in {api.rt.db.engine.engine, api.rt.db.read_engine.engine}:
        event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        for engine in {api.rt.db.engine.engine, api.rt.db.read_engine.engine}:
            event.remove(engine, "before_cursor_execute", capture)
    return seen


def test_a_repeated_sync_of_an_unchanged_node_is_answered_from_memory(
    api: Api, no_timer: None
) -> None:
    attempt_id = running_on_n1(api)
    body = sync_body(NODE, report(attempt_id))
    api.ok("POST", SYNC, json=body)  # the start's wake-up may reach the node after this read
    first = api.ok("POST", SYNC, json=body)
    replies: list[object] = []
    sent = statements_during(api, lambda: replies.append(api.ok("POST", SYNC, json=body)))
    # (the admin token the harness syncs with is looked up on every call; an agent's is kept)
    assert not [sql for sql in sent if "nodes" in sql or "attempt_parts" in sql]
    assert sent and all("tokens" in sql or "queue" in sql or sql == "BEGIN" for sql in sent)
    assert replies == [first]
    agents.flush_readings(api.rt)  # its readings were kept all the same
    assert node_row(api).last_seen_at is not None


def test_an_end_reported_after_a_kept_read_is_written_without_reading_first(
    api: Api, no_timer: None
) -> None:
    if api.rt.db.is_sqlite:
        pytest.skip("SQLite reads a sync before its group commit")
    attempt_id = running_on_n1(api)
    body = sync_body(NODE, report(attempt_id))
    api.ok("POST", SYNC, json=body)  # the start's wake-up may reach the node after this read
    api.ok("POST", SYNC, json=body)  # kept
    end = sync_body(NODE, exited(attempt_id, 0))
    replies: list[object] = []
    sent = statements_during(api, lambda: replies.append(api.ok("POST", SYNC, json=end)))
    assert not [sql for sql in sent if "nodes.hostname" in sql]  # no read of the node first
    assert [sql for sql in sent if "FOR NO KEY UPDATE" in sql]  # its write
    assert SyncReply.model_validate(replies[0]).run == []  # after the write (report_wait_s)
    with api.rt.db.read() as session:
        part = session.scalars(select(AttemptPartRow)).one()
        assert part.state is PartState.EXITED and part.exit_code == 0


def test_a_placement_on_the_node_ends_its_memo(api: Api, no_timer: None) -> None:
    attempt_id = running_on_n1(api)
    body = sync_body(NODE, report(attempt_id))
    assert len(SyncReply.model_validate(api.ok("POST", SYNC, json=body)).run) == 1
    api.submit()
    api.cycle()  # the second GPU: the node's event fires
    reply = SyncReply.model_validate(api.ok("POST", SYNC, json=body))
    assert len(reply.run) == 2
