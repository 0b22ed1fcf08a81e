"""Replies before writes: on PostgreSQL a sync whose reports' write takes longer than
``report_wait_s`` is answered with the desired state as read, and the write goes on
behind it; the agent reports the same until the server's desired state shows it, so a
write that fails loses nothing. Log bytes are never acknowledged unwritten, and SQLite's
group commit always answers after its commit."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from scheduler.domain.sync import SyncReply
from scheduler.services import agents
from tests.factories import exited, node_facts, report
from tests.integration.api.harness import SYNC, Api, sync_body

NODE = node_facts("n1", 2)
GATE_S = 30.0  # a held write's longest wait: a test that forgets its gate still ends


def answer_before_writes(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies wait for no write (as ``corral server --report-wait-s 0``)."""
    monkeypatch.setattr(api.rt, "settings", replace(api.rt.settings, report_wait_s=0.0))


def hold_writes(
    monkeypatch: pytest.MonkeyPatch, gate: threading.Event, fail: bool = False
) -> list[int]:
    """Reports' writes wait for ``gate`` (then raise if ``fail``); the node ids written."""
    real, calls = agents.apply_reports, []

    def held(session: Any, req: Any, node_id: int, *args: Any) -> Any:
        calls.append(node_id)
        assert gate.wait(GATE_S), "the test never opened the gate"
        if fail:
            raise RuntimeError("the database went away")
        return real(session, req, node_id, *args)

    monkeypatch.setattr(agents, "apply_reports", held)
    return calls


def post(api: Api, *reports: Any) -> SyncReply:
    """A sync that does not wait for what goes on behind its reply (``Api.sync`` does)."""
    return SyncReply.model_validate(api.ok("POST", SYNC, json=sync_body(NODE, *reports)))


def status(api: Api, job_id: int) -> str:
    return str(api.job(job_id)["status"])


def later(action: Callable[[], None], delay_s: float) -> threading.Timer:
    timer = threading.Timer(delay_s, action)
    timer.start()
    return timer


def test_an_end_is_answered_as_read_while_its_write_goes_on(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    launch = api.running_on(NODE)
    gate = threading.Event()
    if api.rt.db.is_sqlite:
        gate.set()  # the group commit: its reply waits for the write whatever the setting
    writes = hold_writes(monkeypatch, gate)
    answer_before_writes(api, monkeypatch)
    written_before = sum(api.rt.metrics.report_write.totals()[0])

    reply = post(api, exited(launch.attempt_id, 0))

    listed = [run.attempt_id for run in reply.run]
    if api.rt.db.is_sqlite:
        assert listed == [] and status(api, launch.job_id) == "succeeded"
        return
    assert listed == [launch.attempt_id]  # as read: the end is not written yet
    assert status(api, launch.job_id) == "running" and len(writes) == 1
    gate.set()
    assert agents.wait_written(api.rt, GATE_S)
    assert status(api, launch.job_id) == "succeeded"
    assert sum(api.rt.metrics.report_write.totals()[0]) == written_before + 1
    assert api.sync(NODE, exited(launch.attempt_id, 0)).run == []  # the agent may forget it


def test_a_write_that_fails_behind_its_reply_is_reported_again(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if api.rt.db.is_sqlite:
        pytest.skip("SQLite answers a sync after its commit, a failed one with its error")
    launch = api.running_on(NODE)
    gate = threading.Event()
    hold_writes(monkeypatch, gate, fail=True)
    answer_before_writes(api, monkeypatch)

    with caplog.at_level(logging.WARNING, logger="corral.agents"):
        reply = post(api, exited(launch.attempt_id, 0))
        gate.set()
        assert agents.wait_written(api.rt, GATE_S)
    assert [run.attempt_id for run in reply.run] == [launch.attempt_id]
    assert "could not write the reports of node n1" in caplog.text
    assert status(api, launch.job_id) == "running"  # nothing of the failed write holds

    monkeypatch.undo()  # the database is back; the agent reports the end again
    assert api.sync(NODE, exited(launch.attempt_id, 0)).run == []
    assert status(api, launch.job_id) == "succeeded"


def test_a_node_has_one_write_running_and_its_newest_sync_waiting(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    if api.rt.db.is_sqlite:
        pytest.skip("SQLite writes every sync's reports in its group commit")
    api.sync(NODE)
    api.submit()
    api.cycle()
    (launch,) = api.sync(NODE).run
    gate = threading.Event()
    writes = hold_writes(monkeypatch, gate)
    answer_before_writes(api, monkeypatch)

    post(api, report(launch.attempt_id))  # its write runs, held at the gate
    post(api, report(launch.attempt_id))  # read before that commit: the same again
    post(api, exited(launch.attempt_id, 0))  # replaces the waiting one
    gate.set()
    assert agents.wait_written(api.rt, GATE_S)

    assert len(writes) == 2 and len(set(writes)) == 1  # n1's, and not three
    assert status(api, launch.job_id) == "succeeded"
    assert api.sync(NODE, exited(launch.attempt_id, 0)).run == []


def test_log_bytes_are_acknowledged_only_once_written(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    launch = api.running_on(NODE)
    gate = threading.Event()
    hold_writes(monkeypatch, gate)
    answer_before_writes(api, monkeypatch)
    timer = later(gate.set, 0.3)  # the reply must wait this long for the write

    reply = post(api, exited(launch.attempt_id, 0, log=(0, b"epoch 1 done\n")))
    timer.join()

    assert reply.log_acks == {launch.attempt_id: len(b"epoch 1 done\n")}
    assert reply.run == [] and status(api, launch.job_id) == "succeeded"


def test_an_end_reported_again_once_written_writes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    launch = api.running_on(NODE)
    api.sync(NODE, exited(launch.attempt_id, 0))  # written
    gate = threading.Event()
    gate.set()
    writes = hold_writes(monkeypatch, gate)

    for _ in range(2):  # the agent's next syncs, until it forgets the attempt
        assert post(api, exited(launch.attempt_id, 0)).run == []
    assert writes == [] and agents.wait_written(api.rt, GATE_S)
    assert status(api, launch.job_id) == "succeeded"
