"""Queue use cases."""

from __future__ import annotations

from scheduler.domain.spec import QueuePatch, QueueSpec
from scheduler.domain.views import QueueInfo, QueueList
from scheduler.runtime import Runtime
from scheduler.store import queues as store_queues
from scheduler.store.models import utcnow


def list_queues(rt: Runtime) -> QueueList:
    with rt.db.read() as session:
        return QueueList(queues=store_queues.queue_infos(session))


def get_queue(rt: Runtime, name: str) -> QueueInfo:
    with rt.db.read() as session:
        store_queues.get_queue(session, name)
        return store_queues.queue_infos(session, [name])[0]


def create_queue(rt: Runtime, spec: QueueSpec) -> QueueInfo:
    with rt.db.write() as session:
        store_queues.create_queue(session, spec, utcnow())
        return store_queues.queue_infos(session, [spec.name])[0]


def update_queue(rt: Runtime, name: str, patch: QueuePatch) -> QueueInfo:
    with rt.db.write() as session:
        store_queues.update_queue(session, name, patch)
        info = store_queues.queue_infos(session, [name])[0]
    rt.notifier.wake(schedule=True)
    return info
