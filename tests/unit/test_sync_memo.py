"""Quick syncs answered from memory: only the same sync, only while the node is unchanged;
reports written with the memo's read only where it can tell what the read would say."""

from __future__ import annotations

import asyncio
import time

import pytest

from scheduler.domain.status import AttemptStatus, PartState
from scheduler.domain.sync import AttemptReport, AttemptState, GpuSample, SyncReply, SyncRequest
from scheduler.services.sync_memo import SyncMemos
from scheduler.store.agent_sync import LivePart, QuickSync
from tests.factories import node_facts, report

NODE = node_facts("n1", 2)
REPLY = SyncReply(node_state="up", run=[], stop=[], log_acks={}, sync_interval_s=2.0)


def quick(reply: SyncReply | None = REPLY) -> QuickSync:
    return QuickSync(node_id=1, gpu_ids={0: 10, 1: 11}, last_sample_at=None, reply=reply)


def sync(*, healthy: bool = True, attempts: tuple[int, ...] = ()) -> SyncRequest:
    samples = [GpuSample(index=i, utilization_pct=5.0, healthy=healthy) for i in range(2)]
    return SyncRequest(node=NODE, gpu_samples=samples, attempts=[report(a) for a in attempts])


def test_the_same_sync_is_answered_while_its_node_is_unchanged() -> None:
    memos, changed = SyncMemos(keep_s=60), asyncio.Event()
    memos.keep(sync(), quick(), changed, time.monotonic())
    found = memos.answer(sync())  # new samples, the same facts and attempts
    assert found is not None and found.reply == REPLY
    changed.set()  # a placement, a stop, a drain: the node's event
    assert memos.answer(sync()) is None
    assert memos.answer(sync()) is None  # and it stays forgotten


def test_a_memo_ends_after_keep_s(monkeypatch: pytest.MonkeyPatch) -> None:
    memos = SyncMemos(keep_s=20)
    memos.keep(sync(), quick(), asyncio.Event(), time.monotonic())
    later = time.monotonic() + 21
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert memos.answer(sync()) is None


def test_a_sync_that_reports_otherwise_is_not_answered() -> None:
    memos = SyncMemos(keep_s=60)
    memos.keep(sync(), quick(), asyncio.Event(), time.monotonic())
    assert memos.answer(sync(healthy=False)) is None  # GPU health to write
    assert memos.answer(sync(attempts=(7,))) is None  # an attempt the read did not see
    other = sync().model_copy(update={"node": node_facts("n1", 3)})
    assert memos.answer(other) is None  # new facts
    assert memos.answer(sync()) is not None


def test_a_report_to_apply_is_not_answered() -> None:
    memos = SyncMemos(keep_s=60)
    memos.keep(sync(attempts=(7,)), quick(), asyncio.Event(), time.monotonic())
    exited = SyncRequest(node=NODE, attempts=[report(7, AttemptState.EXITED, exit_code=0)])
    assert memos.answer(exited) is None  # the read's parts do not hold attempt 7 running


def test_nothing_is_kept_from_a_read_the_node_changed_during() -> None:
    memos, changed = SyncMemos(keep_s=60), asyncio.Event()
    changed.set()  # fired between taking the event and the read's end
    memos.keep(sync(), quick(), changed, time.monotonic())
    assert memos.answer(sync()) is None
    memos.keep(sync(), quick(reply=None), asyncio.Event(), time.monotonic())
    assert memos.answer(sync()) is None  # a read with reports to write answers nothing


def part(attempt_id: int, state: PartState = PartState.RUNNING, log_bytes: int = 0) -> LivePart:
    return LivePart(
        attempt_id, state, 0, log_bytes, AttemptStatus.RUNNING, None, 1, attempt_id,
        f"job-{attempt_id}", "digest", None, None, "default", "n1", 1, None, None, None,
        None, "0",
    )  # fmt: skip


def kept_running(*attempts: int, log_bytes: int = 0) -> SyncMemos:
    """A memo of n1 from a sync that reported ``attempts`` running, as its read found."""
    memos = SyncMemos(keep_s=60)
    parts = tuple(part(a, log_bytes=log_bytes) for a in attempts)
    read = QuickSync(
        node_id=1, gpu_ids={0: 10, 1: 11}, last_sample_at=None, reply=REPLY, parts=parts
    )
    memos.keep(sync(attempts=attempts), read, asyncio.Event(), time.monotonic())
    return memos


def ended(attempt_id: int, log: tuple[int, bytes] = (0, b"")) -> AttemptReport:
    return report(attempt_id, AttemptState.EXITED, exit_code=0, log=log)


def test_reports_to_apply_are_written_as_the_memo_read_them() -> None:
    memos = kept_running(7, 8, log_bytes=42)
    req = SyncRequest(node=NODE, gpu_samples=sync().gpu_samples, attempts=[ended(7), report(8)])
    assert memos.answer(req) is None  # an end to write: no plain answer
    found = memos.ahead(req)
    assert found is not None and found.reply is None and found.node_id == 1
    assert found.before == REPLY.model_copy(update={"log_acks": {7: 42, 8: 42}})
    assert memos.ahead(req) is None  # the memo ended: its node is about to change


def test_reports_are_not_written_from_a_memo_that_cannot_tell() -> None:
    samples = sync().gpu_samples
    cases = {
        "a part it read is no longer reported": [ended(7)],
        "an attempt it did not read": [ended(7), report(8), report(9)],
        "log bytes, acknowledged only once written": [ended(7, (0, b"x")), report(8)],
        "nothing to apply": [report(7), report(8)],
    }
    for why, reports in cases.items():
        req = SyncRequest(node=NODE, gpu_samples=samples, attempts=reports)
        assert kept_running(7, 8).ahead(req) is None, why
    sick = sync(healthy=False).model_copy(update={"attempts": [ended(7), report(8)]})
    assert kept_running(7, 8).ahead(sick) is None  # GPU health to write: the full path
