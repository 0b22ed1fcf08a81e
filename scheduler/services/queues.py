"""Queue use cases: list, show, create, update.

A queue's fair share "now" is what the scheduling policy would compute in a cycle
taken now: ``make_context`` on a snapshot built by the store, with the server's policy
parameters. The same function, so ``corral queues`` never disagrees with the cycle.
"""

from __future__ import annotations

from scheduler.domain.spec import QueuePatch, QueueSpec
from scheduler.domain.views import QueueInfo, QueueList
from scheduler.policy.context import make_context
from scheduler.runtime import Runtime
from scheduler.store import queues as store_queues
from scheduler.store.models import utcnow
from scheduler.store.snapshot import build_snapshot


def _infos(rt: Runtime, name: str | None = None) -> list[QueueInfo]:
    """Every queue (or the one named, NotFound if none) with its figures now."""
    now = utcnow()
    with rt.db.read() as session:
        if name is not None:
            store_queues.get_queue(session, name)
        ctx = make_context(build_snapshot(session, now), rt.settings.params)
        return store_queues.queue_infos(
            session,
            None if name is None else [name],
            fair_shares={queue: state.fair_share for queue, state in ctx.queues.items()},
            now=now,
            half_life_s=rt.settings.params.usage_half_life_s,
        )


def list_queues(rt: Runtime) -> QueueList:
    return QueueList(queues=_infos(rt))


def get_queue(rt: Runtime, name: str) -> QueueInfo:
    return _infos(rt, name)[0]


def create_queue(rt: Runtime, spec: QueueSpec) -> QueueInfo:
    with rt.db.write() as session:
        store_queues.create_queue(session, spec, utcnow())
    rt.notifier.wake(schedule=True)  # a new org's children may now be served differently
    return get_queue(rt, spec.name)


def update_queue(rt: Runtime, name: str, patch: QueuePatch) -> QueueInfo:
    with rt.db.write() as session:
        store_queues.update_queue(session, name, patch)
    rt.notifier.wake(schedule=True)
    return get_queue(rt, name)
