"""What a previous agent life left: process records and the sweep, with real processes.

A "previous life" is a ``Runner`` that started attempts and was then dropped without
stopping them, as a SIGKILLed agent would be. Its object is kept only so that the
fixture can reap the children it started (they are this test process's children),
and kill them should a test fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agents.orphans import Orphan, OrphanOutcome, ProcessRecord, boot_id, proc_stat
from agents.runner import Runner
from scheduler.domain.sync import AttemptLaunch, AttemptState

from .waiting import process_gone, wait_until

PY = sys.executable


def launch(attempt_id: int, code: str) -> AttemptLaunch:
    return AttemptLaunch(
        attempt_id=attempt_id,
        job_id=100 + attempt_id,
        attempt_number=1,
        argv=[PY, "-c", textwrap.dedent(code)],
    )


def sleep_launch(attempt_id: int) -> AttemptLaunch:
    return AttemptLaunch(
        attempt_id=attempt_id, job_id=100 + attempt_id, attempt_number=1, argv=["sleep", "600"]
    )


def started_pid(runner: Runner, what: AttemptLaunch) -> int:
    view = runner.start(what)
    assert view.state is AttemptState.RUNNING and view.pid is not None
    return view.pid


def wait_for_log(runner: Runner, attempt_id: int, text: str) -> None:
    wait_until(lambda: text.encode() in runner.read_log(attempt_id, 0, 1 << 20), repr(text))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def previous(data_dir: Path) -> Iterator[Runner]:
    """The runner of a previous agent life; afterwards all it started is ended and reaped."""
    runner = Runner(data_dir)
    yield runner
    runner.poll()  # reaps the leaders that exited (SIGKILLing what is left of their groups)
    for view in runner.views():
        runner.stop(view.attempt_id, 0)

    def all_ended() -> bool:
        runner.poll()
        return not any(view.live for view in runner.views())

    wait_until(all_ended, "the previous life's attempts to end")


@pytest.fixture
def own_children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts itself (each leads its own group); killed at the end."""
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def own_sleeper(children: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)
    children.append(child)
    return child


def plant(runner: Runner, attempt_id: int, text: str) -> None:
    """A record as a previous life could have left it."""
    runner.attempt_dir(attempt_id).mkdir(parents=True)
    runner.record_path(attempt_id).write_text(text)


def planted_record(pid: int, **fields: object) -> str:
    stat = proc_stat(pid)
    assert stat is not None
    base = {
        "pgid": pid,
        "start_ticks": stat.start_ticks,
        "boot_id": boot_id(),
        "job_id": "7",
        "attempt": "1",
    }
    return json.dumps({**base, **fields})


def test_a_started_attempt_is_recorded_until_it_is_reaped(data_dir: Path) -> None:
    runner = Runner(data_dir)
    pid = started_pid(runner, sleep_launch(1))

    record = ProcessRecord(**json.loads(runner.record_path(1).read_text()))
    stat = proc_stat(pid)
    assert stat is not None
    assert record == ProcessRecord(pid, stat.start_ticks, boot_id(), "101", "1")
    runner.stop(1, 0)
    wait_until(lambda: runner.poll() == [1], "the reap")
    assert not runner.record_path(1).exists()


def test_a_failed_launch_leaves_no_record(data_dir: Path) -> None:
    runner = Runner(data_dir)
    view = runner.start(AttemptLaunch(attempt_id=1, job_id=1, attempt_number=1, argv=["/no"]))

    assert view.state is AttemptState.LAUNCH_FAILED
    assert not runner.record_path(1).exists()


def test_a_start_that_cannot_be_recorded_is_killed_and_fails(data_dir: Path) -> None:
    runner = Runner(data_dir)
    runner.record_path(1).mkdir(parents=True)  # a directory in the record's way
    (runner.record_path(1) / "keep").touch()
    token = "corral-test-unrecordable-start"
    what = AttemptLaunch(
        attempt_id=1,
        job_id=1,
        attempt_number=1,
        argv=[PY, "-c", "import time; time.sleep(600)", token],
    )

    view = runner.start(what)

    assert view.state is AttemptState.LAUNCH_FAILED and view.pid is None
    assert view.message.startswith("launch failed: cannot record its process")
    assert not [p for p in psutil.process_iter(["cmdline"]) if token in (p.info["cmdline"] or [])]
    assert runner.busy_gpus() == {} and runner.poll() == []


def test_a_restarted_runner_stops_what_the_previous_life_left(
    data_dir: Path, previous: Runner
) -> None:
    pid = started_pid(previous, sleep_launch(1))
    # The previous life dies here: nothing stops or reaps its attempt.

    runner = Runner(data_dir)
    orphans = runner.stop_orphans(grace_s=5.0)

    assert orphans == [Orphan(1, pid, OrphanOutcome.STOPPED)]
    assert process_gone(pid)
    assert not runner.record_path(1).exists()
    assert runner.attempt_ids() == []  # not held: the server ends it as lost
    note = "the agent restarted and found this attempt: its process group"
    assert note in runner.read_log(1, 0, 1 << 20).decode()
    again = started_pid(runner, sleep_launch(1))  # a fresh start of the same id
    assert again != pid
    runner.stop(1, 0)
    wait_until(lambda: runner.poll() == [1], "the fresh start to end")


IGNORES_SIGTERM = """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(child.pid, flush=True)
    time.sleep(600)
"""


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(
    data_dir: Path, previous: Runner
) -> None:
    pid = started_pid(previous, launch(1, IGNORES_SIGTERM))
    wait_for_log(previous, 1, "\n")
    child_pid = int(previous.read_log(1, 0, 100).split()[0])

    orphans = Runner(data_dir).stop_orphans(grace_s=0.2)

    assert orphans == [Orphan(1, pid, OrphanOutcome.KILLED)]
    assert process_gone(pid) and process_gone(child_pid)


LEADER_LEAVES_A_CHILD = """
    import subprocess, time
    child = subprocess.Popen(["sleep", "600"])
    print(child.pid, flush=True)
"""


def test_the_children_of_an_exited_leader_are_stopped(data_dir: Path, previous: Runner) -> None:
    pid = started_pid(previous, launch(1, LEADER_LEAVES_A_CHILD))
    wait_for_log(previous, 1, "\n")
    child_pid = int(previous.read_log(1, 0, 100).split()[0])
    psutil.Process(pid).wait(timeout=20)  # the leader is reaped: its pid is free
    assert not process_gone(child_pid)

    orphans = Runner(data_dir).stop_orphans(grace_s=5.0)

    assert orphans == [Orphan(1, pid, OrphanOutcome.STOPPED)]
    wait_until(lambda: process_gone(child_pid), "the child to be stopped")


def test_several_orphans_share_one_grace(data_dir: Path, previous: Runner) -> None:
    pids = [started_pid(previous, launch(i, IGNORES_SIGTERM)) for i in (1, 2, 3)]
    for attempt_id in (1, 2, 3):
        wait_for_log(previous, attempt_id, "\n")

    orphans = Runner(data_dir).stop_orphans(grace_s=0.5)

    assert [(o.attempt_id, o.outcome) for o in orphans] == [
        (1, OrphanOutcome.KILLED),
        (2, OrphanOutcome.KILLED),
        (3, OrphanOutcome.KILLED),
    ]
    assert all(process_gone(pid) for pid in pids)


def test_a_recycled_pid_is_never_signalled(
    data_dir: Path, own_children: list[subprocess.Popen[bytes]]
) -> None:
    runner = Runner(data_dir)
    stranger = own_sleeper(own_children)
    stat = proc_stat(stranger.pid)
    assert stat is not None
    plant(runner, 4, planted_record(stranger.pid, start_ticks=stat.start_ticks - 1))

    orphans = runner.stop_orphans(grace_s=0.1)

    assert orphans == [Orphan(4, stranger.pid, OrphanOutcome.NOT_OURS)]
    assert stranger.poll() is None and not process_gone(stranger.pid)
    assert not runner.record_path(4).exists()


def test_a_leaderless_group_without_the_attempts_env_is_not_signalled(data_dir: Path) -> None:
    runner = Runner(data_dir)
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 600 & echo $!"], stdout=subprocess.PIPE, start_new_session=True
    )
    assert leader.stdout is not None
    survivor = int(leader.stdout.readline())
    leader.wait()
    leader.stdout.close()
    plant(runner, 5, planted_record(survivor, pgid=leader.pid))
    try:
        orphans = runner.stop_orphans(grace_s=0.1)

        assert orphans == [Orphan(5, leader.pid, OrphanOutcome.NOT_OURS)]
        assert not process_gone(survivor)
    finally:
        psutil.Process(survivor).send_signal(signal.SIGKILL)


def test_a_record_from_before_a_reboot_is_dropped(
    data_dir: Path, own_children: list[subprocess.Popen[bytes]]
) -> None:
    runner = Runner(data_dir)
    stranger = own_sleeper(own_children)
    plant(runner, 6, planted_record(stranger.pid, boot_id="another-boot"))

    assert runner.stop_orphans(grace_s=0.1) == [Orphan(6, stranger.pid, OrphanOutcome.GONE)]
    assert stranger.poll() is None
    assert not runner.record_path(6).exists()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps({"pgid": 1234}),
        json.dumps({"pgid": 0, "start_ticks": 1, "boot_id": "", "job_id": "", "attempt": ""}),
        json.dumps({"pgid": 1, "start_ticks": 1, "boot_id": "", "job_id": "", "attempt": ""}),
    ],
)
def test_an_unreadable_record_is_dropped_and_nothing_is_signalled(
    data_dir: Path, text: str
) -> None:
    runner = Runner(data_dir)
    plant(runner, 8, text)

    assert runner.stop_orphans(grace_s=0.1) == [Orphan(8, None, OrphanOutcome.UNREADABLE)]
    assert not runner.record_path(8).exists()


def test_an_orphan_that_already_ended_is_gone(data_dir: Path, previous: Runner) -> None:
    pid = started_pid(previous, sleep_launch(1))
    psutil.Process(pid).kill()
    wait_until(lambda: process_gone(pid), "the orphan to die")  # a zombie: never reaped

    assert Runner(data_dir).stop_orphans(grace_s=5.0) == [Orphan(1, pid, OrphanOutcome.GONE)]


def test_nothing_left_means_nothing_to_do(data_dir: Path) -> None:
    assert Runner(data_dir).stop_orphans(grace_s=5.0) == []


LEAVES_ITS_GROUP = """
    import os, subprocess, time
    child = subprocess.Popen(["sleep", "600"], process_group=0)  # as Ray's workers do
    print(child.pid, flush=True)
    time.sleep(600)
"""


def test_a_process_in_a_group_of_its_own_is_stopped_with_its_attempt(
    data_dir: Path, previous: Runner
) -> None:
    pid = started_pid(previous, launch(1, LEAVES_ITS_GROUP))
    wait_for_log(previous, 1, "\n")
    child_pid = int(previous.read_log(1, 0, 100).split()[0])
    assert os.getpgid(child_pid) == child_pid  # not the attempt's group, but its session

    orphans = Runner(data_dir).stop_orphans(grace_s=5.0)

    assert orphans == [Orphan(1, pid, OrphanOutcome.STOPPED)]
    wait_until(lambda: process_gone(child_pid), "the other group's process to be stopped")
