"""The job lifecycle as data: statuses, the transition table and termination reasons.

Invariant: a job's status only ever changes along an edge of ``TRANSITIONS``; the
store applies each edge with a compare-and-set and writes a job event for it.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"  # waiting for a placement (new, requeued, or backing off)
    STARTING = "starting"  # GPUs allocated, an attempt sent to its agent(s), not yet confirmed
    RUNNING = "running"  # the agent reported the attempt's process running
    STOPPING = "stopping"  # a stop (cancel, preemption, time limit) was asked; waiting for exit
    SUCCEEDED = "succeeded"  # the last attempt exited 0
    FAILED = "failed"  # the last attempt failed and no retry is left
    CANCELLED = "cancelled"  # a user cancelled the job; final


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)
LIVE: frozenset[JobStatus] = frozenset({JobStatus.STARTING, JobStatus.RUNNING, JobStatus.STOPPING})

S = JobStatus
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.PENDING: frozenset(
        {
            S.STARTING,  # a cycle placed the job and created an attempt
            S.CANCELLED,  # cancelled before it was ever placed
        }
    ),
    S.STARTING: frozenset(
        {
            S.RUNNING,  # the agent confirmed the process started
            S.STOPPING,  # cancelled or preempted before the agent confirmed
            S.SUCCEEDED,  # the process ended 0 before "running" was ever reported
            S.FAILED,  # launch failed or the process failed, no retry left
            S.PENDING,  # node lost, or a retry after a failed launch
        }
    ),
    S.RUNNING: frozenset(
        {
            S.SUCCEEDED,  # exited 0
            S.FAILED,  # exited non-zero (or timed out), no retry left
            S.STOPPING,  # cancel, preemption or time limit asked the agent to stop it
            S.PENDING,  # node lost (requeue keeping its place) or a retry after failure
        }
    ),
    S.STOPPING: frozenset(
        {
            S.CANCELLED,  # the stop for a cancel completed
            S.PENDING,  # a preemption completed (requeued, keeping its place), or a retry
            S.FAILED,  # a time-limit stop (or a gang's failure) completed, no retry left
            S.SUCCEEDED,  # the process finished on its own (exit 0) before the signal landed
        }
    ),
    S.SUCCEEDED: frozenset(),  # terminal
    S.FAILED: frozenset(),  # terminal
    S.CANCELLED: frozenset(),  # terminal
}


class IllegalTransition(ValueError):
    """A change of status that the transition table forbids: a bug, never a race."""

    def __init__(self, old: JobStatus, new: JobStatus) -> None:
        super().__init__(f"illegal job transition {old.value} -> {new.value}")
        self.old = old
        self.new = new


def is_allowed(old: JobStatus, new: JobStatus) -> bool:
    return new in TRANSITIONS[old]


def check_transition(old: JobStatus, new: JobStatus) -> None:
    if not is_allowed(old, new):
        raise IllegalTransition(old, new)


class AttemptStatus(StrEnum):
    STARTING = "starting"  # allocated and sent to the agent(s)
    RUNNING = "running"  # the agent reported the process running
    STOPPING = "stopping"  # asked to stop; SIGTERM, grace, SIGKILL on the agent
    ENDED = "ended"  # over; see its TerminationReason and exit code


LIVE_ATTEMPT: frozenset[AttemptStatus] = frozenset(
    {AttemptStatus.STARTING, AttemptStatus.RUNNING, AttemptStatus.STOPPING}
)


class Outcome(StrEnum):
    """What happens to the job after an attempt ends for a given reason."""

    SUCCEED = "succeed"  # the job is done
    RETRY_OR_FAIL = "retry_or_fail"  # a retry if max_retries allows, else failed
    REQUEUE = "requeue"  # back to pending keeping its place; not counted as a retry
    CANCEL = "cancel"  # final
    RETRY_IF_ASKED = "retry_if_asked"  # failed, unless the spec asks to retry it (and may)


class TerminationReason(StrEnum):
    SUCCEEDED = "succeeded"  # exit code 0
    FAILED = "failed"  # non-zero exit code or killed by a signal we did not send
    LAUNCH_FAILED = "launch_failed"  # the agent could not start the command
    CANCELLED = "cancelled"  # stopped at a user's request
    PREEMPTED = "preempted"  # stopped so that others could run
    NODE_LOST = "node_lost"  # the node stopped syncing past its timeout
    TIMEOUT = "timeout"  # ran past its time limit

    @property
    def outcome(self) -> Outcome:
        return _OUTCOMES[self]


_OUTCOMES: dict[TerminationReason, Outcome] = {
    TerminationReason.SUCCEEDED: Outcome.SUCCEED,
    TerminationReason.FAILED: Outcome.RETRY_OR_FAIL,
    TerminationReason.LAUNCH_FAILED: Outcome.RETRY_OR_FAIL,
    TerminationReason.CANCELLED: Outcome.CANCEL,
    TerminationReason.PREEMPTED: Outcome.REQUEUE,
    TerminationReason.NODE_LOST: Outcome.REQUEUE,
    TerminationReason.TIMEOUT: Outcome.RETRY_IF_ASKED,  # retry_on_timeout
}


class NodeState(StrEnum):
    UP = "up"  # syncing and accepting placements
    DRAINED = "drained"  # syncing; running attempts go on, no new placements
    LOST = "lost"  # missed syncs past the timeout; its attempts ended as node_lost


class PartState(StrEnum):
    """The part of an attempt on one node, as its agent last reported it."""

    PENDING = "pending"  # sent to the agent, not yet reported running
    RUNNING = "running"  # its process group is alive
    EXITED = "exited"  # exited (or failed to launch); GPUs released
    LOST = "lost"  # its node was lost; GPUs released after the node timeout
