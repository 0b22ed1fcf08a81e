"""Agent syncs committed as a group: one transaction, each sync in its own savepoint."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from scheduler.domain.retry import RetrySettings
from scheduler.domain.status import JobStatus
from scheduler.domain.sync import SyncReply, SyncRequest
from scheduler.runtime import Runtime
from scheduler.services import agents
from scheduler.settings import ServerSettings
from scheduler.store.attempts import Effects
from scheduler.store.db import Database
from scheduler.store.jobs import get_job
from scheduler.store.models import NodeRow
from tests.factories import count, node_facts, register, report, submit_and_place


def runtime(db: Database, tmp_path: Path) -> Runtime:
    return Runtime(db=db, settings=ServerSettings(data_dir=tmp_path, database_url=db.url))


def failing_for(name: str) -> Any:
    """``apply_sync`` that writes the node's facts, then fails for node ``name``."""
    real = agents.apply_sync

    def apply(
        session: Session, req: SyncRequest, now: datetime, retry: RetrySettings
    ) -> tuple[NodeRow, Effects]:
        node, effects = real(session, req, now, retry)
        if req.node.name == name:
            raise ValueError(f"bad report from {name}")
        return node, effects

    return apply


def test_one_bad_sync_does_not_lose_the_others(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(db, node_facts("n1"))
    job_id, attempt_id = submit_and_place(db, {"n1": [0]})
    monkeypatch.setattr(agents, "apply_sync", failing_for("n2"))
    good = SyncRequest(node=node_facts("n1"), attempts=[report(attempt_id)])
    bad = SyncRequest(node=node_facts("n2"))

    results = agents.apply_group(runtime(db, tmp_path), [good, bad])

    assert isinstance(results[0], SyncReply)
    assert [launch.attempt_id for launch in results[0].run] == [attempt_id]
    assert isinstance(results[1], ValueError)
    with db.read() as session:
        assert get_job(session, job_id).status is JobStatus.RUNNING  # n1's report holds
        assert count(session, NodeRow, NodeRow.name == "n2") == 0  # n2's writes rolled back


def test_concurrent_syncs_each_get_their_own_reply_or_error(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(db, node_facts("n1"), node_facts("n3"))
    _, attempt_id = submit_and_place(db, {"n1": [0]})
    monkeypatch.setattr(agents, "apply_sync", failing_for("n2"))
    rt = runtime(db, tmp_path)
    requests = [
        SyncRequest(node=node_facts("n1"), attempts=[report(attempt_id)]),
        SyncRequest(node=node_facts("n2")),
        SyncRequest(node=node_facts("n3")),
    ]

    async def all_at_once() -> list[Any]:
        calls = [agents.sync(rt, req) for req in requests]
        return await asyncio.gather(*calls, return_exceptions=True)

    n1, n2, n3 = asyncio.run(all_at_once())

    assert isinstance(n1, SyncReply) and [r.attempt_id for r in n1.run] == [attempt_id]
    assert isinstance(n2, ValueError)
    assert isinstance(n3, SyncReply) and n3.run == []
