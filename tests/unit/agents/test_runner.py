"""The runner with real processes: env, cwd, logs, exit codes, stops, process groups."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from agents.runner import AttemptView, Runner
from scheduler.domain.sync import AttemptLaunch, AttemptState

from .waiting import process_gone, wait_until

PY = sys.executable


def python_launch(attempt_id: int, code: str, **fields: object) -> AttemptLaunch:
    return AttemptLaunch.model_validate(
        {
            "attempt_id": attempt_id,
            "job_id": 100 + attempt_id,
            "attempt_number": 1,
            "argv": [PY, "-c", textwrap.dedent(code)],
            **fields,
        }
    )


def run_to_exit(runner: Runner, attempt_id: int) -> AttemptView:
    def ended() -> bool:
        runner.poll()
        view = runner.get(attempt_id)
        return view is not None and not view.live

    wait_until(ended, f"attempt {attempt_id} to exit")
    view = runner.get(attempt_id)
    assert view is not None
    return view


def wait_for_log(runner: Runner, attempt_id: int, text: str) -> None:
    wait_until(lambda: text.encode() in runner.read_log(attempt_id, 0, 1 << 20), repr(text))


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path / "data")


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


PRINT_ENV = """
    import json, os
    keys = ["CORRAL_JOB_ID", "CORRAL_ATTEMPT", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
            "AGENT_ONLY", "JOB_VAR"]
    print(json.dumps({"env": {k: os.environ.get(k) for k in keys}, "cwd": os.getcwd()}))
"""


def printed(runner: Runner, attempt_id: int) -> dict[str, object]:
    run_to_exit(runner, attempt_id)
    loaded = json.loads(runner.read_log(attempt_id, 0, 1 << 20))
    assert isinstance(loaded, dict)
    return loaded


def test_env_reaches_the_process(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_ONLY", "from-the-agent")
    env = {"CORRAL_JOB_ID": "7", "CORRAL_ATTEMPT": "2", "CUDA_VISIBLE_DEVICES": "2,3"}
    runner.start(python_launch(1, PRINT_ENV, env={**env, "JOB_VAR": "x"}, gpu_indices=[2, 3]))

    out = printed(runner, 1)

    assert out["env"] == {
        **env,
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "AGENT_ONLY": "from-the-agent",
        "JOB_VAR": "x",
    }
    assert out["cwd"] == str(runner.attempt_dir(1))


@pytest.mark.parametrize(("gpu_indices", "expected"), [([1, 0], "1,0"), ([], "")])
def test_cuda_visible_devices_defaults_to_the_gpu_indices(
    runner: Runner, monkeypatch: pytest.MonkeyPatch, gpu_indices: list[int], expected: str
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # the agent's own must not leak
    runner.start(python_launch(1, PRINT_ENV, gpu_indices=gpu_indices))

    env = printed(runner, 1)["env"]

    assert isinstance(env, dict)
    assert env["CUDA_VISIBLE_DEVICES"] == expected


def test_workdir_is_the_cwd(runner: Runner, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    runner.start(python_launch(1, PRINT_ENV, workdir=str(workdir)))

    assert printed(runner, 1)["cwd"] == str(workdir)


def test_stdout_and_stderr_go_to_one_log(runner: Runner) -> None:
    code = """
        import sys
        print("out 1", flush=True)
        print("err 2", file=sys.stderr, flush=True)
        print("out 3", flush=True)
    """
    runner.start(python_launch(1, code))
    run_to_exit(runner, 1)

    assert runner.log_path(1) == runner.attempt_dir(1) / "output.log"
    assert runner.read_log(1, 0, 1000) == b"out 1\nerr 2\nout 3\n"
    assert runner.log_size(1) == 18
    assert runner.read_log(1, 6, 5) == b"err 2"
    assert runner.read_log(1, 18, 100) == b""
    report = runner.report(1, log_offset=12, max_bytes=100)
    assert (report.log_offset, report.log_data) == (12, b"out 3\n")


@pytest.mark.parametrize(
    ("code", "exit_code", "message"),
    [
        ("pass", 0, "exited with code 0"),
        ("raise SystemExit(3)", 3, "exited with code 3"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -9, "killed by SIGKILL"),
    ],
)
def test_exit_codes(runner: Runner, code: str, exit_code: int, message: str) -> None:
    started = runner.start(python_launch(1, code))
    assert started.state is AttemptState.RUNNING and started.pid is not None

    view = run_to_exit(runner, 1)

    assert (view.state, view.exit_code, view.message) == (AttemptState.EXITED, exit_code, message)
    assert not view.stopped_by_agent
    report = runner.report(1, 0)
    assert (report.state, report.exit_code, report.pid) == (
        AttemptState.EXITED,
        exit_code,
        started.pid,
    )


def test_poll_reports_each_exit_once(runner: Runner) -> None:
    runner.start(python_launch(1, "pass"))
    exits: list[int] = []

    def polled() -> bool:
        exits.extend(runner.poll())
        return bool(exits)

    wait_until(polled, "the exit")
    assert exits == [1]
    assert runner.poll() == []


HANDLES_SIGTERM = """
    import signal, sys, time
    def on_term(signum, frame):
        print("checkpointed", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    time.sleep(600)
"""


def test_sigterm_is_honoured_within_the_grace(runner: Runner) -> None:
    runner.start(python_launch(1, HANDLES_SIGTERM))
    wait_for_log(runner, 1, "ready")

    assert runner.stop(1, grace_period_s=300, reason="preempted")
    assert runner.get(1).state is AttemptState.STOPPING  # type: ignore[union-attr]
    view = run_to_exit(runner, 1)

    assert (view.exit_code, view.stopped_by_agent) == (0, True)
    assert view.message == "exited with code 0 (stopped by the agent)"
    log = runner.read_log(1, 0, 1 << 20).decode()
    assert "SIGTERM sent (preempted)" in log
    assert "checkpointed" in log
    assert "grace period over" not in log


IGNORES_SIGTERM = """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(child.pid, flush=True)
    print("ready", flush=True)
    time.sleep(600)
"""


def test_sigkill_after_the_grace_for_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    clock = FakeClock()
    runner = Runner(tmp_path / "data", clock=clock)
    runner.start(python_launch(1, IGNORES_SIGTERM))
    wait_for_log(runner, 1, "ready")
    child_pid = int(runner.read_log(1, 0, 1000).split()[0])

    assert runner.stop(1, grace_period_s=30, reason="cancelled")
    clock.now_s += 29
    assert runner.poll() == []
    assert runner.get(1).state is AttemptState.STOPPING  # type: ignore[union-attr]
    assert not process_gone(child_pid)
    clock.now_s += 1
    view = run_to_exit(runner, 1)

    assert (view.exit_code, view.stopped_by_agent) == (-signal.SIGKILL, True)
    assert view.message == "killed by SIGKILL after its 30 s grace period (stopped by the agent)"
    assert "grace period over; SIGKILL sent" in runner.read_log(1, 0, 1 << 20).decode()
    wait_until(lambda: process_gone(child_pid), "the child to be killed")


def test_a_shorter_grace_brings_the_sigkill_forward(tmp_path: Path) -> None:
    clock = FakeClock()
    runner = Runner(tmp_path / "data", clock=clock)
    runner.start(python_launch(1, IGNORES_SIGTERM))
    wait_for_log(runner, 1, "ready")

    assert runner.stop(1, grace_period_s=300)
    assert not runner.stop(1, grace_period_s=5)  # no second SIGTERM
    clock.now_s += 5

    assert run_to_exit(runner, 1).exit_code == -signal.SIGKILL
    assert runner.read_log(1, 0, 1 << 20).count(b"SIGTERM sent") == 1


def test_children_left_behind_by_the_leader_are_killed(runner: Runner) -> None:
    code = """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(child.pid, flush=True)
    """
    runner.start(python_launch(1, code))
    view = run_to_exit(runner, 1)
    child_pid = int(runner.read_log(1, 0, 1000).split()[0])

    assert view.exit_code == 0
    wait_until(lambda: process_gone(child_pid), "the orphaned child to be killed")


@pytest.mark.parametrize(
    ("argv", "workdir", "expected"),
    [
        (["/no/such/command"], None, "No such file or directory: '/no/such/command'"),
        ([PY, "-c", "pass"], "/no/such/workdir", "/no/such/workdir"),
        ([], None, "empty argv"),
    ],
)
def test_launch_failures(
    runner: Runner, argv: list[str], workdir: str | None, expected: str
) -> None:
    launch = AttemptLaunch(
        attempt_id=1, job_id=1, attempt_number=1, argv=argv, workdir=workdir, gpu_indices=[0]
    )

    view = runner.start(launch)

    assert view.state is AttemptState.LAUNCH_FAILED
    assert view.message.startswith("launch failed: ") and expected in view.message
    assert (view.pid, view.exit_code) == (None, None)
    assert view.message in runner.read_log(1, 0, 1 << 20).decode()
    assert runner.busy_gpus() == {}
    assert runner.poll() == []
    assert not runner.stop(1, 10)


def test_a_command_that_is_not_executable_fails_to_launch(runner: Runner, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    if os.access(script, os.X_OK):  # root may execute anything with an x bit; this has none
        pytest.skip("this user can execute a file without an x bit")

    view = runner.start(AttemptLaunch(attempt_id=1, job_id=1, attempt_number=1, argv=[str(script)]))

    assert view.state is AttemptState.LAUNCH_FAILED
    assert "Permission denied" in view.message


def test_busy_gpus_and_forget(runner: Runner) -> None:
    runner.start(python_launch(1, "import time; time.sleep(600)", gpu_indices=[0, 1]))
    runner.start(python_launch(2, "pass", gpu_indices=[2]))
    run_to_exit(runner, 2)

    assert runner.busy_gpus() == {0: 1, 1: 1}
    runner.forget(1)  # live: kept
    runner.forget(2)
    assert runner.attempt_ids() == [1]
    assert runner.log_path(2).exists()  # files stay
    runner.stop(1, 0)
    run_to_exit(runner, 1)
    assert runner.busy_gpus() == {}


def test_starting_a_held_attempt_again_does_nothing(runner: Runner) -> None:
    first = runner.start(python_launch(1, "import time; time.sleep(600)"))
    again = runner.start(python_launch(1, "import time; time.sleep(600)"))

    assert again.pid == first.pid
    runner.stop(1, 0)
    run_to_exit(runner, 1)


HAS_CHECKPOINT_DIR = """
    import os
    print(os.path.isdir(os.environ["CORRAL_CHECKPOINT_DIR"]))
"""


def test_the_checkpoint_dir_exists_before_the_start(runner: Runner, tmp_path: Path) -> None:
    checkpoints = tmp_path / "shared" / "checkpoints" / "7"
    umask = os.umask(0o022)
    try:
        runner.start(
            python_launch(1, HAS_CHECKPOINT_DIR, env={"CORRAL_CHECKPOINT_DIR": str(checkpoints)})
        )
    finally:
        os.umask(umask)

    assert run_to_exit(runner, 1).exit_code == 0
    assert runner.read_log(1, 0, 100) == b"True\n"
    assert stat.S_IMODE(checkpoints.stat().st_mode) == 0o755


def test_an_existing_checkpoint_dir_is_left_as_it_is(runner: Runner, tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir(mode=0o700)
    (checkpoints / "step-100.pt").write_bytes(b"weights")
    runner.start(
        python_launch(1, HAS_CHECKPOINT_DIR, env={"CORRAL_CHECKPOINT_DIR": str(checkpoints)})
    )

    assert run_to_exit(runner, 1).exit_code == 0
    assert stat.S_IMODE(checkpoints.stat().st_mode) == 0o700
    assert (checkpoints / "step-100.pt").read_bytes() == b"weights"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("under-a-file/7", "cannot create the checkpoint dir {tmp}/under-a-file/7: "),
        ("relative", "CORRAL_CHECKPOINT_DIR must be an absolute path, not 'relative'"),
    ],
)
def test_a_checkpoint_dir_that_cannot_be_created_fails_the_launch(
    runner: Runner, tmp_path: Path, where: str, expected: str
) -> None:
    (tmp_path / "under-a-file").write_text("a file, not a directory")
    path = where if where == "relative" else str(tmp_path / where)
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()"

    view = runner.start(python_launch(1, code, env={"CORRAL_CHECKPOINT_DIR": path}))

    assert view.state is AttemptState.LAUNCH_FAILED and view.pid is None
    assert view.message.startswith("launch failed: " + expected.format(tmp=tmp_path))
    assert view.message in runner.read_log(1, 0, 1 << 20).decode()
    assert not marker.exists()
    assert not runner.record_path(1).exists()


# A stand-in for agents.raysupervisor: it notes SIGTERM instead of dying, and has a
# child in a process group of its own (as Ray's workers are).
FAKE_SUPERVISOR = """
    import signal, subprocess, sys, time
    child = subprocess.Popen(["sleep", "600"], process_group=0)
    signal.signal(signal.SIGTERM, lambda *_: print("leader got SIGTERM", flush=True))
    print(child.pid, flush=True)
    time.sleep(600)
"""


def test_a_ray_attempt_is_led_by_the_supervisor(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []

    def fake_argv(launch: AttemptLaunch, state_file: Path) -> list[str]:
        seen.append([*launch.argv, str(state_file)])
        return [PY, "-c", textwrap.dedent(FAKE_SUPERVISOR)]

    monkeypatch.setattr("agents.runner.supervisor_argv", fake_argv)
    clock = FakeClock()
    runner = Runner(runner.attempt_dir(0).parent.parent, clock=clock)
    runner.start(python_launch(1, "pass", ray=True, node_rank=1, num_nodes=2))
    wait_until(lambda: runner.read_log(1, 0, 1 << 20).count(b"\n") >= 2, "the child's pid")
    note, pid_line = runner.read_log(1, 0, 1 << 20).decode().splitlines()[:2]
    assert "per-job Ray cluster" in note
    child = int(pid_line)

    assert seen and seen[0][-1] == str(runner.attempt_dir(1) / "ray.json")
    assert runner.stop(1, grace_period_s=10)
    wait_for_log(runner, 1, "leader got SIGTERM")
    assert not process_gone(child)  # the SIGTERM went to the supervisor alone

    clock.now_s += 11
    runner.poll()  # the grace is over: SIGKILL to the whole session
    view = run_to_exit(runner, 1)
    assert view.exit_code == -signal.SIGKILL and view.stopped_by_agent
    wait_until(lambda: process_gone(child), "the other group's process to be killed")
