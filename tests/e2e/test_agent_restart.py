"""End to end: an agent SIGKILLed and restarted at once never runs a job twice.

The restarted agent (same name, same data dir) stops the process its previous life
left before its first sync. It then reports nothing, so the server ends the attempt
as ``node_lost`` and requeues the job, which runs again on the same node as attempt
2. Without the sweep the first process would still hold its GPU while attempt 2 ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from scheduler.client import CorralClient, is_terminal
from scheduler.domain.spec import JobSpec, Resources
from scheduler.domain.views import JobView
from scheduler.localcluster import LocalCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
NODE = "node-a"
DEADLINE_S = 60.0
POLL_S = 0.05

# Records its pid (atomically) as <attempt>.pid, and notes an overlap if a process
# recorded by an earlier attempt is still alive when it starts.
JOB = textwrap.dedent(
    """
    import os, pathlib, sys, time

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    marker = pathlib.Path(sys.argv[1])
    attempt = os.environ["CORRAL_ATTEMPT"]
    others = [p.name for p in marker.glob("*.pid") if alive(int(p.read_text()))]
    if others:
        (marker / f"overlap-{attempt}").write_text(" ".join(others))
    tmp = marker / f"{attempt}.tmp"
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, marker / f"{attempt}.pid")
    time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped) does not."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(check: Callable[[], T | None], what: str, timeout_s: float = DEADLINE_S) -> T:
    """The first truthy value of ``check()``, polled until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


def read_pid(marker: Path, attempt: int) -> int | None:
    path = marker / f"{attempt}.pid"
    return int(path.read_text()) if path.exists() else None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path / "cluster")
    with local:
        local.start_server()
        local.start_agent(NODE, "sim:2")
        local.wait_for_nodes([NODE])
        yield local


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """Where the job's attempts record their pids; any still alive at the end is killed."""
    path = tmp_path / "marker"
    path.mkdir()
    yield path
    for pid_file in path.glob("*.pid"):
        pid = int(pid_file.read_text())
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # each attempt leads its own group


def test_a_restarted_agent_stops_the_old_process_before_the_job_runs_again(
    cluster: LocalCluster, marker: Path
) -> None:
    spec = JobSpec(
        name="restart-probe",
        command=[sys.executable, "-c", JOB, str(marker)],
        resources=Resources(gpus=1),
    )
    with cluster.client() as client:
        job_id = client.submit(spec).id
        try:
            first = wait_for(lambda: read_pid(marker, 1), "attempt 1 to record its pid")
            wait_for(lambda: client.get_job(job_id).status == "running", "the job to run")

            cluster.agents[NODE].kill()  # as a crash or the OOM killer would end it
            assert alive(first)  # it outlives its agent
            cluster.start_agent(NODE, "sim:2")  # same name, same data dir

            watch_for_the_rerun(client, job_id, marker, first)
            job = client.get_job(job_id)
        finally:
            with contextlib.suppress(Exception):
                if not is_terminal(client.get_job(job_id).status):
                    client.cancel(job_id)

    assert job.attempts is not None and len(job.attempts) == 2
    assert job.attempts[0].reason == "node_lost"
    assert (job.attempts[1].number, job.attempts[1].nodes) == (2, [NODE])
    assert not list(marker.glob("overlap-*")), "attempt 2 started while attempt 1 ran"
    assert f"attempt {job.attempts[0].id} was left by a previous agent" in agent_log(cluster)


def watch_for_the_rerun(client: CorralClient, job_id: int, marker: Path, first: int) -> None:
    """Poll until attempt 2 runs; assert at every poll that both processes never live."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        second = read_pid(marker, 2)
        both = alive(first) and second is not None and alive(second)
        assert not both, f"attempts 1 (pid {first}) and 2 (pid {second}) run at once"
        if second is not None and not alive(first) and rerunning(client.get_job(job_id)):
            return
        time.sleep(POLL_S)
    raise AssertionError(f"job {job_id} did not run again (attempt 1 alive: {alive(first)})")


def rerunning(job: JobView) -> bool:
    return job.attempts_count == 2 and job.status == "running"


def agent_log(cluster: LocalCluster) -> str:
    return cluster.agents[NODE].log_path.read_text(errors="replace")
