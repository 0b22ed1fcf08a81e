"""What follows an attempt's end: the job's next status, as a pure decision table.

``next_step`` turns the reason an attempt ended (and the facts around it) into the
job's next status, whether it counts as a retry, the backoff before it may start
again, and one sentence for the job's event. In order:

- ``succeeded`` -> succeeded; ``cancelled`` -> cancelled (final, even mid-backoff);
- ``preempted`` / ``node_lost`` -> pending now, keeping its submit time, not counted;
- ``timeout`` -> failed, unless the spec asks ``retry_on_timeout``: then pending now
  (no backoff: it ran its whole limit), counted, while ``max_retries`` allows;
- ``failed`` / ``launch_failed`` -> failed when the exit code is not one the spec
  retries (``retry_on_exit_codes``), when no retry is left, or when the job failed the
  same way on ``same_failure_nodes`` different nodes (its own fault: another node will
  not help); else pending after a backoff of 10 s, 20 s, 40 s, ... capped (counted).

Worked example (``max_retries: 3``, codes unrestricted): exit 3 on n1 -> retry 1 in
10 s; exit 3 on n1 again -> retry 2 in 20 s; preempted -> requeued, still 2 used;
exit 3 on n2 -> failed: "it failed the same way (exit code 3) on n1 and n2".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.domain.spec import JobSpec
from scheduler.domain.status import JobStatus, Outcome, TerminationReason

R = TerminationReason


@dataclass(frozen=True)
class RetrySettings:
    """The server's rules after failures: backoff, giving up, draining a bad node."""

    backoff_base_s: float = 10.0  # first retry after this, then doubled each time
    backoff_max_s: float = 600.0
    same_failure_nodes: int = 2  # the same failure on this many distinct nodes: stop retrying
    drain_after_failures: int = 3  # failed parts in a row on one node (0: never drain) ...
    drain_after_jobs: int = 2  # ... of at least this many different jobs

    def delay_s(self, retries_used: int) -> float:
        """Delay before retry number ``retries_used + 1``: 10, 20, 40, ... capped."""
        exponent = min(retries_used, 62)  # 2**63 s is far past any cap
        return float(min(self.backoff_max_s, self.backoff_base_s * (2**exponent)))


@dataclass(frozen=True)
class Failure:
    """How one earlier attempt of the job failed: its signature and the nodes it failed on."""

    signature: str  # "exit code 3" or "launch failed"
    nodes: frozenset[str]


@dataclass(frozen=True)
class Ended:
    """The facts ``next_step`` decides on."""

    number: int  # the attempt's number
    reason: TerminationReason
    exit_code: int | None
    failed_on: frozenset[str]  # nodes whose part failed (for failed / launch_failed)
    retries_used: int
    earlier_failures: Sequence[Failure] = ()  # the job's earlier failed attempts


@dataclass(frozen=True)
class NextStep:
    status: JobStatus  # PENDING (requeue or retry) or a terminal status
    counts: bool = False  # uses one of max_retries
    delay_s: float = 0.0  # not before now + this
    message: str = ""


def signature(reason: TerminationReason, exit_code: int | None) -> str:
    if reason is R.LAUNCH_FAILED:
        return "launch failed"
    return f"exit code {exit_code}"


def next_step(spec: JobSpec, ended: Ended, settings: RetrySettings) -> NextStep:
    """What becomes of the job after attempt ``ended.number`` ended (see the module doc)."""
    detail = f"attempt {ended.number} ended: {ended.reason.value}"
    if ended.exit_code not in (None, 0):
        detail += f" (exit code {ended.exit_code})"
    outcome = ended.reason.outcome
    if outcome is Outcome.SUCCEED:
        return NextStep(JobStatus.SUCCEEDED, message=detail)
    if outcome is Outcome.CANCEL:
        return NextStep(JobStatus.CANCELLED, message=f"{detail}; cancelled for good")
    if outcome is Outcome.REQUEUE:
        return NextStep(
            JobStatus.PENDING,
            message=f"{detail}; requeued keeping its place (not counted as a retry)",
        )
    if outcome is Outcome.RETRY_IF_ASKED:
        return _after_timeout(spec, ended, detail)
    return _after_failure(spec, ended, settings, detail)


def _after_timeout(spec: JobSpec, ended: Ended, detail: str) -> NextStep:
    if not spec.retry_on_timeout:
        return NextStep(JobStatus.FAILED, message=f"{detail}; not retried (retry_on_timeout off)")
    if ended.retries_used >= spec.max_retries:
        return NextStep(JobStatus.FAILED, message=f"{detail}; {_budget_spent(spec)}")
    number = ended.retries_used + 1
    return NextStep(
        JobStatus.PENDING,
        counts=True,
        message=f"{detail}; retry {number} of {spec.max_retries} now (retry_on_timeout)",
    )


def _after_failure(spec: JobSpec, ended: Ended, settings: RetrySettings, detail: str) -> NextStep:
    if spec.max_retries == 0:
        return NextStep(JobStatus.FAILED, message=detail)
    if not spec.retries_exit_code(ended.exit_code):
        what = signature(ended.reason, ended.exit_code)
        return NextStep(
            JobStatus.FAILED,
            message=f"{detail}; not retried: {what} is not in retry_on_exit_codes "
            f"{spec.retry_on_exit_codes}",
        )
    if ended.retries_used >= spec.max_retries:
        return NextStep(JobStatus.FAILED, message=f"{detail}; {_budget_spent(spec)}")
    nodes = same_failure_nodes(ended)
    if len(nodes) >= max(2, settings.same_failure_nodes):
        what = signature(ended.reason, ended.exit_code)
        return NextStep(
            JobStatus.FAILED,
            message=f"{detail}; not retried: it failed the same way ({what}) on "
            f"{_names(nodes)}, so another node will not help",
        )
    delay_s = settings.delay_s(ended.retries_used)
    number = ended.retries_used + 1
    return NextStep(
        JobStatus.PENDING,
        counts=True,
        delay_s=delay_s,
        message=f"{detail}; retry {number} of {spec.max_retries} in {delay_s:.0f}s",
    )


def same_failure_nodes(ended: Ended) -> list[str]:
    """The distinct nodes on which the job failed exactly as it just did, sorted; empty
    when no earlier attempt failed that way (one gang attempt alone proves nothing)."""
    mine = signature(ended.reason, ended.exit_code)
    earlier = [f.nodes for f in ended.earlier_failures if f.signature == mine]
    if not earlier:
        return []
    return sorted(set(ended.failed_on).union(*earlier))


def _budget_spent(spec: JobSpec) -> str:
    return f"no retry left ({spec.max_retries} of {spec.max_retries} used)"


def _names(nodes: Sequence[str]) -> str:
    if len(nodes) <= 1:
        return "".join(nodes)
    return ", ".join(nodes[:-1]) + " and " + nodes[-1]
