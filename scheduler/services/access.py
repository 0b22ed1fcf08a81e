"""Who may do what: the checks that need more than a role (a job's owner, a queue's
members, an agent's node). The role checks are route dependencies (``api/deps.py``).

A ``user`` acts on its own jobs only: a job is its own when ``submitted_by`` is its
name. A job that does not exist passes here, so that the use case answers its 404.
"""

from __future__ import annotations

from collections.abc import Iterable

from scheduler.domain.auth import STAFF, Role
from scheduler.domain.errors import Forbidden
from scheduler.runtime import Runtime
from scheduler.services.bootstrap import Principal
from scheduler.store.users import array_submitters, job_submitter


def is_staff(who: Principal) -> bool:
    return who.role in STAFF


def check_submit(who: Principal, queues: Iterable[str], field: str = "queue") -> None:
    """A user submits only to queues it is a member of."""
    if is_staff(who):
        return
    for queue in queues:
        if queue not in who.queues:
            raise Forbidden(
                f"{who.name} is not a member of queue {queue!r}; ask an admin "
                "(corral users update NAME --queue QUEUE)",
                field=field,
            )


def check_job(rt: Runtime, who: Principal, job_id: int) -> None:
    """Staff may act on any job; a user on the jobs it submitted."""
    if is_staff(who):
        return
    with rt.db.read() as session:
        found, submitter = job_submitter(session, job_id)
    if found and submitter != who.name:
        raise Forbidden(f"job {job_id} is not yours: a user sees only its own jobs", field="job_id")


def check_array(rt: Runtime, who: Principal, array_id: int) -> None:
    if is_staff(who):
        return
    with rt.db.read() as session:
        submitters = array_submitters(session, array_id)
    if submitters - {who.name}:
        raise Forbidden(f"array {array_id} is not yours", field="array_id")


def check_sync(who: Principal, node: str) -> None:
    """An agent token syncs as its own node only (an admin token as any)."""
    if who.role == Role.AGENT and who.node != node:
        raise Forbidden(
            f"this agent token is bound to node {who.node!r}, not {node!r}", field="node.name"
        )


def own_jobs_filter(who: Principal) -> str | None:
    """The submitter a job listing is restricted to: the user itself, or None for staff."""
    return None if is_staff(who) else who.name
