"""Queues as orgs and leaves, type quotas, and what ``queue_infos`` says of them."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from scheduler.domain.errors import Conflict, Invalid
from scheduler.domain.spec import QueuePatch
from scheduler.store.db import Database
from scheduler.store.models import QueueTypeQuotaRow, utcnow
from scheduler.store.queues import get_queue, queue_infos, update_queue
from scheduler.store.snapshot import build_snapshot
from tests.factories import A100, add_job, add_queue, at, node_facts, place, placement, sync


def _refused(db: Database, error: type[Exception], field: str, action: object) -> str:
    with pytest.raises(error) as raised, db.write() as session:
        action(session)  # type: ignore[operator]
    assert raised.value.field == field  # type: ignore[attr-defined]
    return str(raised.value)


def test_orgs_nest_one_level_and_hold_no_jobs(db: Database) -> None:
    with db.write() as session:
        add_queue(session)
        add_queue(session, "ml", guaranteed_gpus=8)
        add_queue(session, "vision", parent="ml")
        add_queue(session, "busy")
        add_job(session, queue="busy")

    assert "does not exist" in _refused(
        db, Invalid, "parent", lambda s: add_queue(s, "x", parent="nope")
    )
    assert "one level" in _refused(
        db, Invalid, "parent", lambda s: add_queue(s, "x", parent="vision")
    )
    assert "holds no jobs" in _refused(
        db, Invalid, "parent", lambda s: add_queue(s, "x", parent="busy")
    )
    assert "cannot get a parent" in _refused(
        db, Invalid, "parent", lambda s: update_queue(s, "ml", QueuePatch(parent="busy"))
    )
    assert "takes no jobs" in _refused(db, Invalid, "queue", lambda s: add_job(s, queue="ml"))
    _refused(db, Conflict, "name", lambda s: add_queue(s, "vision"))

    with db.write() as session:
        add_job(session, queue="vision")  # a leaf of an org takes jobs
        update_queue(session, "vision", QueuePatch.model_validate({"parent": None}))
    with db.read() as session:
        assert get_queue(session, "vision").parent_id is None
    with db.write() as session:
        add_job(session, queue="ml")  # no children left: ml is a leaf again


def test_type_quotas_are_stored_replaced_and_cleared(db: Database) -> None:
    quotas = [{"gpu_type": A100, "guaranteed_gpus": 2, "max_gpus": 4}, {"gpu_type": "L4"}]
    with db.write() as session:
        add_queue(session, "ml", type_quotas=quotas)
    with db.write() as session:
        update_queue(session, "ml", QueuePatch(weight=3))  # leaves them as they are
    with db.read() as session:
        (info,) = queue_infos(session, ["ml"])
        assert [(q.gpu_type, q.guaranteed_gpus, q.max_gpus) for q in info.type_quotas] == [
            (A100, 2, 4),
            ("L4", 0, None),
        ]
        assert info.weight == 3
    replaced = [{"gpu_type": "L4", "guaranteed_gpus": 1}, {"gpu_type": A100}]
    with db.write() as session:
        update_queue(session, "ml", QueuePatch.model_validate({"type_quotas": replaced}))
    with db.read() as session:
        view = {q.name: q for q in build_snapshot(session, utcnow()).queues}["ml"]
        assert [(q.gpu_type, q.guaranteed_gpus) for q in view.type_quotas] == [(A100, 0), ("L4", 1)]
    with db.write() as session:
        update_queue(session, "ml", QueuePatch.model_validate({"type_quotas": None}))
    with db.read() as session:
        assert session.scalars(select(QueueTypeQuotaRow)).all() == []


def test_queue_infos_sum_an_orgs_queues_and_count_what_is_borrowed(db: Database) -> None:
    sync(db, node_facts("n1", gpus=8))
    with db.write() as session:
        add_queue(session, "ml", guaranteed_gpus=4)
        add_queue(session, "vision", parent="ml", guaranteed_gpus=1)
        add_queue(session, "audio", parent="ml", guaranteed_gpus=2)
        big = add_job(session, gpus=3, queue="vision").id
        small = add_job(session, gpus=2, queue="audio").id
        add_job(session, gpus=1, queue="audio")
    with db.write() as session:
        place(session, placement(big, {"n1": [0, 1, 2]}), placement(small, {"n1": [3, 4]}))
    with db.read() as session:
        infos = {q.name: q for q in queue_infos(session, fair_shares={"vision": 2.5}, now=at(0))}
    vision, audio, ml = infos["vision"], infos["audio"], infos["ml"]
    assert (vision.parent, audio.parent, ml.parent) == ("ml", "ml", None)
    assert (vision.allocated_gpus, vision.borrowed_gpus, vision.running) == (3, 2, 1)
    assert (audio.allocated_gpus, audio.borrowed_gpus, audio.pending) == (2, 0, 1)
    assert (ml.allocated_gpus, ml.borrowed_gpus, ml.running, ml.pending) == (5, 1, 2, 1)
    assert (vision.fair_share_gpus, audio.fair_share_gpus) == (2.5, 0.0)
