"""The retry rules as a table: what follows an attempt's end, for each reason and spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from scheduler.domain.retry import Ended, Failure, RetrySettings, next_step
from scheduler.domain.spec import JobSpec
from scheduler.domain.status import JobStatus, TerminationReason

S = JobStatus
R = TerminationReason
SETTINGS = RetrySettings(backoff_base_s=10, backoff_max_s=600)
N1 = frozenset({"n1"})
N2 = frozenset({"n2"})


def spec(**fields: Any) -> JobSpec:
    return JobSpec(command=["python", "train.py"], **fields)


def ended(
    reason: TerminationReason,
    exit_code: int | None = None,
    *,
    retries_used: int = 0,
    on: frozenset[str] = N1,
    earlier: tuple[Failure, ...] = (),
) -> Ended:
    return Ended(
        number=retries_used + len(earlier) + 1,
        reason=reason,
        exit_code=exit_code,
        failed_on=on if reason in (R.FAILED, R.LAUNCH_FAILED) else frozenset(),
        retries_used=retries_used,
        earlier_failures=earlier,
    )


@dataclass(frozen=True)
class Case:
    spec: dict[str, Any]
    ended: Ended
    status: JobStatus
    counts: bool = False
    delay_s: float = 0.0
    says: tuple[str, ...] = field(default_factory=tuple)


CASES = {
    "success": Case({}, ended(R.SUCCEEDED, 0), S.SUCCEEDED),
    "failure, no retries asked": Case({}, ended(R.FAILED, 3), S.FAILED, says=("exit code 3",)),
    "failure, first retry after 10 s": Case(
        {"max_retries": 3}, ended(R.FAILED, 3), S.PENDING, True, 10.0, ("retry 1 of 3 in 10s",)
    ),
    "failure, third retry after 40 s": Case(
        {"max_retries": 3},
        ended(R.FAILED, 3, retries_used=2),
        S.PENDING,
        True,
        40.0,
        ("retry 3 of 3 in 40s",),
    ),
    "failure, budget spent": Case(
        {"max_retries": 3},
        ended(R.FAILED, 3, retries_used=3),
        S.FAILED,
        says=("no retry left (3 of 3 used)",),
    ),
    "launch failure, retried like a failure": Case(
        {"max_retries": 1}, ended(R.LAUNCH_FAILED), S.PENDING, True, 10.0
    ),
    "listed exit code: retried": Case(
        {"max_retries": 2, "retry_on_exit_codes": [75, 137]},
        ended(R.FAILED, 75),
        S.PENDING,
        True,
        10.0,
    ),
    "killed by SIGKILL (-9) matches 137": Case(
        {"max_retries": 2, "retry_on_exit_codes": [137]}, ended(R.FAILED, -9), S.PENDING, True, 10
    ),
    "exit code not listed: failed": Case(
        {"max_retries": 2, "retry_on_exit_codes": [75]},
        ended(R.FAILED, 1),
        S.FAILED,
        says=("not retried: exit code 1 is not in retry_on_exit_codes [75]",),
    ),
    "launch failure with an exit-code list: failed": Case(
        {"max_retries": 2, "retry_on_exit_codes": [75]}, ended(R.LAUNCH_FAILED), S.FAILED
    ),
    "preempted: requeued, not counted": Case(
        {"max_retries": 0},
        ended(R.PREEMPTED, -15, retries_used=0),
        S.PENDING,
        says=("requeued keeping its place (not counted as a retry)",),
    ),
    "preempted with the budget spent: still requeued": Case(
        {"max_retries": 1}, ended(R.PREEMPTED, retries_used=1), S.PENDING
    ),
    "node lost: requeued, not counted": Case({}, ended(R.NODE_LOST), S.PENDING),
    "cancelled: final": Case(
        {"max_retries": 5}, ended(R.CANCELLED, -15), S.CANCELLED, says=("cancelled for good",)
    ),
    "timeout: failed by default": Case(
        {"max_retries": 5},
        ended(R.TIMEOUT),
        S.FAILED,
        says=("not retried (retry_on_timeout off)",),
    ),
    "timeout with retry_on_timeout: retried now, counted": Case(
        {"max_retries": 1, "retry_on_timeout": True},
        ended(R.TIMEOUT),
        S.PENDING,
        True,
        0.0,
        ("retry 1 of 1 now (retry_on_timeout)",),
    ),
    "timeout with retry_on_timeout, budget spent": Case(
        {"max_retries": 1, "retry_on_timeout": True},
        ended(R.TIMEOUT, retries_used=1),
        S.FAILED,
        says=("no retry left",),
    ),
    "the same exit code on a second node: failed": Case(
        {"max_retries": 5},
        ended(R.FAILED, 3, retries_used=1, on=N2, earlier=(Failure("exit code 3", N1),)),
        S.FAILED,
        says=("it failed the same way (exit code 3) on n1 and n2",),
    ),
    "the same exit code on the same node again: retried": Case(
        {"max_retries": 5},
        ended(R.FAILED, 3, retries_used=1, on=N1, earlier=(Failure("exit code 3", N1),)),
        S.PENDING,
        True,
        20.0,
    ),
    "another exit code on a second node: retried": Case(
        {"max_retries": 5},
        ended(R.FAILED, 4, retries_used=1, on=N2, earlier=(Failure("exit code 3", N1),)),
        S.PENDING,
        True,
        20.0,
    ),
    "launch failures on two nodes: failed": Case(
        {"max_retries": 5},
        ended(R.LAUNCH_FAILED, retries_used=1, on=N2, earlier=(Failure("launch failed", N1),)),
        S.FAILED,
        says=("(launch failed) on n1 and n2",),
    ),
    "one gang attempt failing on two nodes at once: retried": Case(
        {"max_retries": 5}, ended(R.FAILED, 1, on=N1 | N2), S.PENDING, True, 10.0
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_what_follows_an_attempts_end(case: Case) -> None:
    step = next_step(spec(**case.spec), case.ended, SETTINGS)
    assert (step.status, step.counts, step.delay_s) == (case.status, case.counts, case.delay_s)
    assert step.message.startswith(f"attempt {case.ended.number} ended: {case.ended.reason}")
    for phrase in case.says:
        assert phrase in step.message


def test_backoff_doubles_up_to_its_cap() -> None:
    settings = RetrySettings(backoff_base_s=10, backoff_max_s=100)
    assert [settings.delay_s(n) for n in range(6)] == [10, 20, 40, 80, 100, 100]
    assert settings.delay_s(10_000) == 100  # no overflow however many retries


def test_the_backoff_of_each_retry_comes_from_the_settings() -> None:
    settings = RetrySettings(backoff_base_s=1, backoff_max_s=3)
    delays = [
        next_step(spec(max_retries=5), ended(R.FAILED, 1, retries_used=n), settings).delay_s
        for n in range(4)
    ]
    assert delays == [1, 2, 3, 3]
