"""The job lifecycle table, edge by edge: every (old, new) pair is allowed or refused."""

from __future__ import annotations

import itertools

import pytest

from scheduler.domain.status import (
    LIVE,
    LIVE_ATTEMPT,
    TERMINAL,
    TRANSITIONS,
    AttemptStatus,
    IllegalTransition,
    JobStatus,
    Outcome,
    TerminationReason,
    check_transition,
    is_allowed,
)

S = JobStatus

# Written out again on purpose: a change to the table must change this list too.
ALLOWED: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    {
        (S.PENDING, S.STARTING),  # placed
        (S.PENDING, S.CANCELLED),  # cancelled before placement
        (S.STARTING, S.RUNNING),  # the agent confirmed
        (S.STARTING, S.STOPPING),  # cancel or preemption before confirmation
        (S.STARTING, S.SUCCEEDED),  # ended 0 before "running" was reported
        (S.STARTING, S.FAILED),  # launch failed, no retry left
        (S.STARTING, S.PENDING),  # node lost, or retry after a failed launch
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.STOPPING),
        (S.RUNNING, S.PENDING),  # node lost or retry
        (S.STOPPING, S.CANCELLED),
        (S.STOPPING, S.PENDING),  # preemption completed
        (S.STOPPING, S.FAILED),  # time limit, no retry left
        (S.STOPPING, S.SUCCEEDED),  # finished before the signal landed
    }
)
ALL_PAIRS = list(itertools.product(JobStatus, JobStatus))
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


def pair_id(pair: tuple[JobStatus, JobStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_the_table_has_a_row_for_every_status() -> None:
    assert set(TRANSITIONS) == set(JobStatus)


@pytest.mark.parametrize("pair", sorted(ALLOWED), ids=pair_id)
def test_allowed_transition(pair: tuple[JobStatus, JobStatus]) -> None:
    old, new = pair
    assert is_allowed(old, new)
    assert new in TRANSITIONS[old]
    check_transition(old, new)  # does not raise


@pytest.mark.parametrize("pair", FORBIDDEN, ids=pair_id)
def test_forbidden_transition(pair: tuple[JobStatus, JobStatus]) -> None:
    old, new = pair
    assert not is_allowed(old, new)
    with pytest.raises(IllegalTransition) as raised:
        check_transition(old, new)
    assert (raised.value.old, raised.value.new) == (old, new)
    assert str(raised.value) == f"illegal job transition {old.value} -> {new.value}"


def test_allowed_and_forbidden_cover_every_pair() -> None:
    assert len(ALLOWED) + len(FORBIDDEN) == len(JobStatus) ** 2
    assert {(o, n) for o, targets in TRANSITIONS.items() for n in targets} == ALLOWED


def test_an_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)


def test_terminal_statuses_are_exactly_those_without_an_outgoing_edge() -> None:
    assert {s for s, targets in TRANSITIONS.items() if not targets} == TERMINAL
    assert {S.SUCCEEDED, S.FAILED, S.CANCELLED} == TERMINAL


def test_live_statuses_hold_gpus_and_are_not_terminal() -> None:
    assert {S.STARTING, S.RUNNING, S.STOPPING} == LIVE
    assert not LIVE & TERMINAL
    assert S.PENDING not in LIVE


def test_every_status_is_reachable_and_every_path_can_end() -> None:
    reachable = {S.PENDING}
    frontier = [S.PENDING]
    while frontier:
        for new in TRANSITIONS[frontier.pop()]:
            if new not in reachable:
                reachable.add(new)
                frontier.append(new)
    assert reachable == set(JobStatus)
    for status in set(JobStatus) - TERMINAL:
        seen, stack = {status}, [status]
        while stack:
            for new in TRANSITIONS[stack.pop()] - seen:
                seen.add(new)
                stack.append(new)
        assert seen & TERMINAL, f"{status} can never end"


def test_live_attempt_statuses() -> None:
    assert set(AttemptStatus) - LIVE_ATTEMPT == {AttemptStatus.ENDED}


@pytest.mark.parametrize("reason", list(TerminationReason), ids=str)
def test_every_termination_reason_has_an_outcome(reason: TerminationReason) -> None:
    assert isinstance(reason.outcome, Outcome)


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        (TerminationReason.SUCCEEDED, Outcome.SUCCEED),
        (TerminationReason.FAILED, Outcome.RETRY_OR_FAIL),
        (TerminationReason.LAUNCH_FAILED, Outcome.RETRY_OR_FAIL),
        (TerminationReason.CANCELLED, Outcome.CANCEL),
        (TerminationReason.PREEMPTED, Outcome.REQUEUE),  # not a failure, keeps its place
        (TerminationReason.NODE_LOST, Outcome.REQUEUE),
        (TerminationReason.TIMEOUT, Outcome.RETRY_IF_ASKED),
    ],
    ids=str,
)
def test_termination_outcomes_follow_the_design(
    reason: TerminationReason, outcome: Outcome
) -> None:
    assert reason.outcome is outcome
