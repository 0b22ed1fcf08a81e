"""Notice signals with real processes and a fake clock: the time-limit notice, and a
stop that gives notice before its SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from agents.notice import Notice, notice_of, resolve_signal, time_limit_notice
from agents.runner import Runner
from scheduler.domain.sync import AttemptLaunch, AttemptState

from .test_runner import FakeClock, python_launch, run_to_exit, wait_for_log
from .waiting import process_gone, wait_until

USR1 = Notice(int(signal.SIGUSR1), 10.0)

# Says which signals it gets; exits 0 on SIGTERM, or on the notice when told to.
LISTENER = """
    import os, signal, sys, time
    EXIT_ON_NOTICE = {exit_on_notice}
    def on_signal(signum, frame):
        print("got", signal.Signals(signum).name, flush=True)
        if signum == signal.SIGTERM or EXIT_ON_NOTICE:
            sys.exit(0)
    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print("ready", flush=True)
    while True:
        time.sleep(0.01)
"""
STUBBORN = """
    import signal, time
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    while True:
        time.sleep(0.01)
"""


@pytest.mark.parametrize(
    ("name", "number"),
    [("USR1", signal.SIGUSR1), ("SIGUSR2", signal.SIGUSR2), ("term", signal.SIGTERM), ("40", 40)],
)
def test_resolve_signal(name: str, number: int) -> None:
    assert resolve_signal(name) == number


@pytest.mark.parametrize("name", ["BOGUS", "SIG", "0", "999", ""])
def test_an_unknown_signal_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        resolve_signal(name)


def test_notice_of() -> None:
    assert notice_of("USR1", 60) == Notice(int(signal.SIGUSR1), 60.0)
    assert notice_of(None, 60) is None
    assert notice_of("NO_SUCH_SIGNAL", 60) is None  # the stop goes on without a notice


def launch_with(**fields: object) -> AttemptLaunch:
    return AttemptLaunch.model_validate({"attempt_id": 1, "job_id": 1, "attempt_number": 1,
                                         "argv": ["true"], **fields})  # fmt: skip


def test_time_limit_notice_is_due_notice_s_before_the_limit() -> None:
    timed = launch_with(time_limit_s=100, notice_signal="USR1", notice_s=30)
    assert time_limit_notice(timed, 1000.0) == (1070.0, Notice(int(signal.SIGUSR1), 30.0))
    assert time_limit_notice(launch_with(time_limit_s=100), 1000.0) is None
    assert time_limit_notice(launch_with(notice_signal="USR1", notice_s=30), 1000.0) is None
    ray = launch_with(time_limit_s=100, notice_signal="USR1", notice_s=30, ray=True)
    assert time_limit_notice(ray, 1000.0) is None  # its supervisor would not relay it


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def runner(tmp_path: Path, clock: FakeClock) -> Runner:
    return Runner(tmp_path / "data", clock=clock)


def log_of(runner: Runner, attempt_id: int = 1) -> str:
    return runner.read_log(attempt_id, 0, 1 << 20).decode()


def started(runner: Runner, code: str, **fields: object) -> int:
    view = runner.start(python_launch(1, code, **fields))
    assert view.state is AttemptState.RUNNING and view.pid is not None
    wait_for_log(runner, 1, "ready")
    return view.pid


def test_time_limit_notice_goes_once_on_time_and_does_not_stop(
    runner: Runner, clock: FakeClock
) -> None:
    code = LISTENER.format(exit_on_notice=False)
    started(runner, code, time_limit_s=60, notice_signal="USR1", notice_s=20)
    clock.now_s += 39.9
    runner.poll()
    assert "SIGUSR1 sent" not in log_of(runner)
    clock.now_s += 0.1
    runner.poll()
    wait_for_log(runner, 1, "got SIGUSR1")
    clock.now_s += 100  # past the limit: the server sends the stop, not the agent
    runner.poll()
    view = runner.get(1)
    assert view is not None and view.state is AttemptState.RUNNING
    assert log_of(runner).count("SIGUSR1 sent") == 1
    assert runner.stop(1, 5, "timeout")
    view = run_to_exit(runner, 1)
    assert (view.exit_code, view.stopped_by_agent) == (0, True)


def test_a_stop_with_notice_signals_then_terms_after_the_notice(
    runner: Runner, clock: FakeClock
) -> None:
    started(runner, LISTENER.format(exit_on_notice=False))
    assert runner.stop(1, 5, "preempted", USR1)
    view = runner.get(1)
    assert view is not None and (view.state, view.stopped_by_agent) == (AttemptState.STOPPING, True)
    wait_for_log(runner, 1, "got SIGUSR1")
    assert not runner.stop(1, 5, "preempted", USR1)  # the next sync repeats the stop
    clock.now_s += 9.9
    runner.poll()
    assert "SIGTERM sent" not in log_of(runner)
    clock.now_s += 0.1
    runner.poll()
    view = run_to_exit(runner, 1)
    assert (view.exit_code, view.stopped_by_agent) == (0, True)
    text = log_of(runner)
    assert text.count("got SIGUSR1") == 1 and "got SIGTERM" in text


def test_an_exit_in_the_notice_window_is_the_agents_doing(runner: Runner) -> None:
    started(runner, LISTENER.format(exit_on_notice=True))
    runner.stop(1, 5, "preempted", USR1)
    view = run_to_exit(runner, 1)
    assert (view.exit_code, view.stopped_by_agent) == (0, True)
    assert view.message == "exited with code 0 (stopped by the agent)"
    assert "SIGTERM sent" not in log_of(runner)  # nothing more was sent


def test_a_stop_without_notice_in_the_notice_window_terms_at_once(runner: Runner) -> None:
    started(runner, LISTENER.format(exit_on_notice=False))
    runner.stop(1, 5, "preempted", USR1)
    wait_for_log(runner, 1, "got SIGUSR1")
    runner.stop(1, 5, "cancelled")  # the server changed its mind: no more waiting
    view = run_to_exit(runner, 1)
    assert (view.exit_code, view.stopped_by_agent) == (0, True)
    assert "got SIGTERM" in log_of(runner)


def test_a_process_that_ignores_everything_is_killed_after_notice_and_grace(
    runner: Runner, clock: FakeClock
) -> None:
    pid = started(runner, STUBBORN)
    runner.stop(1, 5, "preempted", USR1)
    clock.now_s += 10
    runner.poll()  # the SIGTERM
    clock.now_s += 4.9
    runner.poll()
    assert "SIGKILL sent" not in log_of(runner)
    clock.now_s += 0.1
    view = run_to_exit(runner, 1)
    assert (view.exit_code, view.stopped_by_agent) == (-signal.SIGKILL, True)
    wait_until(lambda: process_gone(pid), "the process to be gone")


def test_a_stop_without_notice_works_as_before(runner: Runner) -> None:
    started(runner, LISTENER.format(exit_on_notice=False))
    assert runner.stop(1, 5, "cancelled")
    view = run_to_exit(runner, 1)
    assert (view.exit_code, view.stopped_by_agent) == (0, True)
    assert "SIGUSR1" not in log_of(runner)
