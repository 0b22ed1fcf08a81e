"""End to end: preemption that loses nothing, with a real server and agents.

A small training-like job (standard library only) counts ``TARGET_STEPS`` steps,
checkpoints every ``CHECKPOINT_EVERY`` steps, on the notice signal and on SIGTERM
(then exits 0), resumes from its newest checkpoint, logs every step it executes with
its attempt number and keeps ``progress.json`` for the server. Two ways to lose its
node for a while:
- preempted by a queue below its guarantee: the attempt gets the notice, then SIGTERM,
  checkpoints, exits; the next attempt resumes right after that checkpoint;
- its agent SIGKILLed (the machine "dies", its processes too): after the node timeout
  the job resumes elsewhere from its last periodic checkpoint.
Either way it ends with the step count of an uninterrupted run, repeating at most one
checkpoint interval, and no two attempts of a job overlap in the server's database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from scheduler.client import CorralClient, is_terminal
from scheduler.domain.spec import JobSpec, QueueSpec
from scheduler.domain.views import AttemptView, JobView
from scheduler.localcluster import LocalCluster
from scheduler.store.db import sqlite_url
from tests.checks import assert_no_attempt_overlap

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
TARGET_STEPS = 60
CHECKPOINT_EVERY = 10
DEADLINE_S = 90.0
POLL_S = 0.1
SERVER_ARGS = (
    "--node-timeout-s", "3",
    "--min-runtime", "0s",
    "--retry-backoff-s", "0.5",
    "--cycle-interval-s", "1",
)  # fmt: skip

TRAINER = textwrap.dedent(
    f"""
    import json, os, signal, sys, time

    TARGET, EVERY, STEP_S = {TARGET_STEPS}, {CHECKPOINT_EVERY}, 0.1
    ckpt = os.environ["CORRAL_CHECKPOINT_DIR"]
    attempt = int(os.environ["CORRAL_ATTEMPT"])
    flags = {{"stop": False, "notice": False}}
    signal.signal(signal.SIGTERM, lambda *_: flags.update(stop=True))
    signal.signal(signal.SIGUSR1, lambda *_: flags.update(notice=True))

    def replace(name, data):
        tmp = os.path.join(ckpt, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, os.path.join(ckpt, name))

    try:
        with open(os.path.join(ckpt, "state.json")) as f:
            step = json.load(f)["step"]
    except (OSError, ValueError, KeyError):
        step = 0
    resumed, last_ckpt, last_ckpt_at = step, None, None
    replace("pid.%d" % attempt, os.getpid())

    def progress():
        replace("progress.json", {{"attempt": attempt, "step": step, "resumed_from_step": resumed,
                "last_checkpoint_step": last_ckpt, "last_checkpoint_at": last_ckpt_at}})

    def checkpoint():
        global last_ckpt, last_ckpt_at
        replace("state.json", {{"step": step}})
        last_ckpt, last_ckpt_at = step, time.time()
        progress()

    steps_log = os.open(os.path.join(ckpt, "steps.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    progress()
    print("attempt %d resumes at step %d" % (attempt, step), flush=True)
    while step < TARGET:
        if flags["stop"]:
            checkpoint()
            print("stopped: checkpoint at step %d" % step, flush=True)
            sys.exit(0)
        if flags["notice"]:
            flags["notice"] = False
            checkpoint()
            print("notice: checkpoint at step %d" % step, flush=True)
        time.sleep(STEP_S)
        step += 1
        os.write(steps_log, b"%d %d\\n" % (attempt, step))  # one write: never torn
        if step % EVERY == 0:
            checkpoint()
        else:
            progress()
    checkpoint()
    print("done at step %d" % step, flush=True)
    """
)


def wait_for(check: Callable[[], T | None], what: str, timeout_s: float = DEADLINE_S) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def running_cluster(data_dir: Path, nodes: list[str]) -> Iterator[LocalCluster]:
    local = LocalCluster(data_dir, server_args=SERVER_ARGS)
    with local:
        local.start_server()
        for name in nodes:
            local.start_agent(name, "sim:2")
        local.wait_for_nodes(nodes)
        yield local


def training_spec(script: Path, queue: str = "default") -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": "train",
            "queue": queue,
            "command": [sys.executable, str(script)],
            "resources": {"gpus": 2},
            "preemptible": True,
            "grace_period_s": 20,
            "signal": "USR1@1",
        }
    )


def checkpoint_dir(cluster: LocalCluster, job_id: int) -> Path:
    return cluster.data_dir / "server" / "checkpoints" / str(job_id)


def checkpointed_step(ckpt: Path) -> int:
    try:
        return int(json.loads((ckpt / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def executed_steps(ckpt: Path) -> dict[int, list[int]]:
    """Attempt number -> the steps it executed, in order (from steps.log)."""
    path = ckpt / "steps.log"
    steps: dict[int, list[int]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        attempt, step = map(int, line.split())
        steps.setdefault(attempt, []).append(step)
    return steps


def finished(client: CorralClient, job_id: int, what: str) -> JobView:
    def ended() -> JobView | None:
        job = client.get_job(job_id)
        return job if is_terminal(job.status) else None

    return wait_for(ended, what)


def assert_resumed_to_the_end(ckpt: Path, resumed_at: int, second: AttemptView) -> int:
    """Attempt 2 resumed right after step ``resumed_at`` and reached the target like an
    uninterrupted run; the steps executed twice."""
    steps = executed_steps(ckpt)
    first, again = steps[1], steps[2]
    assert first == list(range(1, len(first) + 1))
    assert again == list(range(resumed_at + 1, TARGET_STEPS + 1))  # first step > 0
    assert second.resumed_from_step == resumed_at  # what its progress file told the server
    assert second.step == TARGET_STEPS
    assert checkpointed_step(ckpt) == TARGET_STEPS
    return len(first) + len(again) - TARGET_STEPS


def test_a_job_preempted_for_a_queue_below_its_guarantee_resumes_where_it_stopped(
    tmp_path: Path,
) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    with running_cluster(tmp_path / "cluster", ["node-a"]) as cluster, cluster.client() as client:
        client.create_queue(QueueSpec(name="research"))
        client.create_queue(QueueSpec(name="prod", guaranteed_gpus=2))
        train = client.submit(training_spec(script, "research"))
        ckpt = checkpoint_dir(cluster, train.id)
        wait_for(lambda: checkpointed_step(ckpt) >= 2 * CHECKPOINT_EVERY, "two checkpoints")
        urgent = JobSpec.model_validate(
            {"queue": "prod", "priority": 10, "command": "echo urgent", "resources": {"gpus": 2}}
        )
        prod = finished(client, client.submit(urgent).id, "the prod job to end")
        job = finished(client, train.id, "the training job to end")

    assert prod.status == "succeeded"
    assert job.status == "succeeded" and job.attempts is not None
    first, second = job.attempts
    assert first.reason == "preempted" and job.retries_used == 0
    assert job.submitted_at == train.submitted_at  # requeued, keeping its place
    assert prod.attempts is not None and first.ended_at is not None
    assert prod.attempts[0].created_at >= first.ended_at  # it got the GPUs once they were free
    # Attempt 1 checkpointed on the notice and on SIGTERM; the server saw the last one.
    assert first.last_checkpoint_step == first.step
    assert first.last_checkpoint_step is not None
    repeated = assert_resumed_to_the_end(ckpt, first.last_checkpoint_step, second)
    assert repeated == 0  # it checkpointed on SIGTERM: no step ran twice
    assert_no_attempt_overlap(sqlite_url(cluster.data_dir / "server"))


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def gone(pid: int) -> bool:
    """No such process, or only its zombie."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_job_whose_agent_dies_resumes_elsewhere_from_its_last_checkpoint(
    tmp_path: Path,
) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    nodes = ["node-a", "node-b"]
    orphans: list[int] = []
    try:
        with running_cluster(tmp_path / "cluster", nodes) as cluster, cluster.client() as client:
            train = client.submit(training_spec(script))
            ckpt = checkpoint_dir(cluster, train.id)
            mid_interval = 2 * CHECKPOINT_EVERY + CHECKPOINT_EVERY // 2
            wait_for(lambda: len(executed_steps(ckpt).get(1, [])) >= mid_interval, "more steps")
            pid_file = ckpt / "pid.1"
            text = wait_for(lambda: pid_file.read_text() if pid_file.exists() else None, "its pid")
            orphans.append(int(text))
            running = client.get_job(train.id)
            assert running.attempts is not None
            node = running.attempts[0].nodes[0]
            cluster.agents[node].kill()  # the machine dies: its agent ...
            leader = orphans.pop()
            kill_group(leader)  # ... and the job's processes
            wait_for(lambda: gone(leader), "the job's process to die")
            last_checkpoint = checkpointed_step(ckpt)
            job = finished(client, train.id, "the training job to end")
    finally:
        for leader in orphans:  # the test failed before the kill
            kill_group(leader)

    assert job.status == "succeeded" and job.attempts is not None
    first, second = job.attempts
    assert first.reason == "node_lost" and job.retries_used == 0
    assert second.nodes != [node]
    repeated = assert_resumed_to_the_end(ckpt, last_checkpoint, second)
    # Lost: the steps between its last checkpoint and the kill, under one interval.
    assert repeated == len(executed_steps(ckpt)[1]) - last_checkpoint
    assert repeated <= CHECKPOINT_EVERY
    assert_no_attempt_overlap(sqlite_url(cluster.data_dir / "server"))
