"""Runs attempts on this node as process groups: start, stop, reap, and their logs.

The runner owns one record per attempt it holds, from ``start`` until ``forget``.
Invariants:
- every attempt runs in its own session, whose id (and its process group's) is its
  leader's pid; a signal to the attempt goes to the group and to every other process
  of the session (``orphans.signal_attempt``), so it reaches everything it spawned,
  even processes that moved to groups of their own (Ray's workers do);
- when the leader exits, the rest of its session gets SIGKILL *before* the leader is
  reaped (until then the zombie leader keeps the id from being reused), so an
  attempt never leaves stray children behind;
- a stop sends SIGTERM once and SIGKILL when its grace deadline passes, preceded by
  a notice signal and its ``notice_s`` when the stop carries one; a time-limit notice
  goes out once, on time (``agents.notice``); nothing here blocks: ``poll()`` reaps
  exits and enforces deadlines, the caller calls it often;
- a ``ray: true`` attempt is led by ``agents.raysupervisor`` (the launch's argv after
  ``--``): its SIGTERM goes to the leader alone, which asks the workload to
  checkpoint before it stops Ray; the SIGKILL after the grace reaches the session;
- the log ``DATA_DIR/attempts/<id>/output.log`` (stdout and stderr of the attempt,
  written by the process itself, plus ``[corral-agent]`` notes) is only ever
  appended to, so a byte offset into it stays valid, even across agent restarts;
- ``CORRAL_CHECKPOINT_DIR`` of the launch exists before the process starts (created
  ``mkdir -p``, mode 0o755); when it cannot be created the attempt fails to launch.

Surviving the agent (see ``agents.orphans``): every started attempt has a
``ProcessRecord`` in ``attempts/<id>/process.json``, written atomically right after the
start and removed once its leader is reaped; a start whose record cannot be written
is killed and fails to launch. (An agent that dies in the microseconds between the
fork and the write leaves its group unrecorded.) ``stop_orphans()``, called once
before the first start, stops the groups a previous agent life left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agents.notice import Notice, send_notice, time_limit_notice
from agents.orphans import (
    ATTEMPT_ENV,
    JOB_ID_ENV,
    WARNING_OUTCOMES,
    Orphan,
    live_groups,
    read_record,
    record_process,
    signal_attempt,
    stop_groups,
    write_record,
)
from agents.raysupervisor import RAY_STATE_FILE, remove_leftovers, supervisor_argv
from scheduler.domain.sync import MAX_LOG_CHUNK_BYTES, AttemptLaunch, AttemptReport, AttemptState

log = logging.getLogger("corral.agent.runner")

ATTEMPTS_DIR = "attempts"
LOG_FILE = "output.log"
RECORD_FILE = "process.json"
CHECKPOINT_DIR_ENV = "CORRAL_CHECKPOINT_DIR"
CHECKPOINT_DIR_MODE = 0o755
MAX_MESSAGE_LEN = 2000
LIVE_STATES = frozenset({AttemptState.RUNNING, AttemptState.STOPPING})


@dataclass
class _Attempt:
    attempt_id: int
    gpu_indices: tuple[int, ...]
    grace_period_s: float
    state: AttemptState
    popen: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    stopped_by_agent: bool = False
    message: str = ""
    kill_at: float | None = None  # clock time to SIGKILL the group (STOPPING only)
    killed: bool = False  # SIGKILL sent after the grace period
    ray: bool = False  # led by agents.raysupervisor: SIGTERM goes to the leader only
    term_at: float | None = None  # clock time to SIGTERM (a stop in its notice window)
    limit_notice: tuple[float, Notice] | None = None  # the time-limit notice, not sent yet


@dataclass(frozen=True)
class AttemptView:
    """A read-only copy of what the runner knows about one attempt."""

    attempt_id: int
    state: AttemptState
    pid: int | None
    exit_code: int | None  # set once EXITED; negative: killed by that signal
    stopped_by_agent: bool
    message: str
    gpu_indices: tuple[int, ...]
    grace_period_s: float

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def _leader_exited(pid: int) -> bool:
    """Whether the leader has exited, leaving it unreaped (a zombie) if so."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True  # already reaped by someone else
    return info is not None


def _kill_leftovers(leaders: list[int]) -> None:
    """SIGKILL what the attempts led by ``leaders`` (exited, not reaped) left running.

    ``signal_attempt`` for many at once: each group gets the signal, then one scan of
    /proc finds the rest of their sessions (a scan per exit would cost a busy node more
    than the exits themselves)."""
    if not leaders:
        return
    for leader in leaders:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, signal.SIGKILL)
    groups = live_groups()  # by group and by session; the zombie leaders are not in it
    for leader in leaders:
        for pid in groups.get(leader, ()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _exit_message(attempt: _Attempt, exit_code: int) -> str:
    if exit_code >= 0:
        text = f"exited with code {exit_code}"
    else:
        try:
            text = f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            text = f"killed by signal {-exit_code}"
    if attempt.killed:
        text += f" after its {attempt.grace_period_s:g} s grace period"
    return text + (" (stopped by the agent)" if attempt.stopped_by_agent else "")


def _launch_env(launch: AttemptLaunch) -> dict[str, str]:
    """The agent's env, ``CORRAL_JOB_ID``/``CORRAL_ATTEMPT`` by default, the launch's env."""
    env = {
        **os.environ,
        JOB_ID_ENV: str(launch.job_id),
        ATTEMPT_ENV: str(launch.attempt_number),
        **launch.env,
    }
    if "CUDA_VISIBLE_DEVICES" not in launch.env:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, launch.gpu_indices))
    # NVML numbers GPUs in PCI bus order; make CUDA number them the same way.
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return env


def _make_checkpoint_dir(launch_env: Mapping[str, str]) -> None:
    """Create the launch's ``CORRAL_CHECKPOINT_DIR`` if it names one; raise with why not."""
    raw = launch_env.get(CHECKPOINT_DIR_ENV)
    if not raw:
        return
    path = Path(raw)
    if not path.is_absolute():
        raise ValueError(f"{CHECKPOINT_DIR_ENV} must be an absolute path, not {raw!r}")
    try:
        path.mkdir(mode=CHECKPOINT_DIR_MODE, parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot create the checkpoint dir {raw}: {err}") from err


class Runner:
    """The attempts this node runs. Not thread-safe: call it from one thread."""

    def __init__(self, data_dir: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._data_dir = data_dir
        self._clock = clock
        self._attempts: dict[int, _Attempt] = {}

    def attempt_dir(self, attempt_id: int) -> Path:
        return self._data_dir / ATTEMPTS_DIR / str(attempt_id)

    def log_path(self, attempt_id: int) -> Path:
        return self.attempt_dir(attempt_id) / LOG_FILE

    def record_path(self, attempt_id: int) -> Path:
        return self.attempt_dir(attempt_id) / RECORD_FILE

    def start(self, launch: AttemptLaunch) -> AttemptView:
        """Start ``launch`` (no-op if held): RUNNING, or LAUNCH_FAILED with a message."""
        held = self.get(launch.attempt_id)
        if held is not None:
            return held
        attempt = _Attempt(
            attempt_id=launch.attempt_id,
            gpu_indices=tuple(launch.gpu_indices),
            grace_period_s=float(launch.grace_period_s),
            state=AttemptState.RUNNING,
            ray=launch.ray,
        )
        self._attempts[launch.attempt_id] = attempt
        try:
            env = _launch_env(launch)
            popen = self._spawn(launch, env)
            self._record(launch.attempt_id, popen, env)
            attempt.popen = popen
            attempt.limit_notice = time_limit_notice(launch, self._clock())
        except (OSError, ValueError) as err:
            attempt.state = AttemptState.LAUNCH_FAILED
            attempt.message = f"launch failed: {err}"[:MAX_MESSAGE_LEN]
            self._note(launch.attempt_id, attempt.message)
        return self._view(attempt)

    def _spawn(self, launch: AttemptLaunch, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the leader in a new session, writing into the log; raises OSError."""
        attempt_dir = self.attempt_dir(launch.attempt_id)
        attempt_dir.mkdir(parents=True, exist_ok=True)
        if not launch.argv:
            raise ValueError("empty argv")
        _make_checkpoint_dir(launch.env)
        argv = launch.argv
        if launch.ray:
            argv = supervisor_argv(launch, attempt_dir / RAY_STATE_FILE)
            self._note(launch.attempt_id, "runs in a per-job Ray cluster (agents.raysupervisor)")
        with open(self.log_path(launch.attempt_id), "ab") as log_file:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=launch.workdir or attempt_dir,
                env=env,
                start_new_session=True,
            )

    def _record(self, attempt_id: int, popen: subprocess.Popen[bytes], env: dict[str, str]) -> None:
        """Write the attempt's ``ProcessRecord``; else kill and reap ``popen``, raise OSError."""
        try:
            write_record(self.record_path(attempt_id), record_process(popen.pid, env))
        except OSError as err:
            signal_attempt(popen.pid, signal.SIGKILL)
            popen.wait()
            raise OSError(f"cannot record its process: {err}") from err

    def stop(
        self, attempt_id: int, grace_period_s: float, reason: str = "", notice: Notice | None = None
    ) -> bool:
        """Stop a RUNNING attempt: SIGTERM to it, SIGKILL after the grace period.

        With a ``notice`` (never to a Ray attempt: ``agents.notice``) its signal goes
        first and the SIGTERM ``notice.notice_s`` later, unless the attempt exited.
        Returns True when this call began the stop. Stopping a STOPPING attempt again
        only brings its next signal forward: a SIGTERM still to come (at once without
        a notice), else the SIGKILL if the new grace is shorter.
        """
        attempt = self._attempts.get(attempt_id)
        if attempt is None or attempt.popen is None or attempt.state not in LIVE_STATES:
            return False
        notice = None if attempt.ray else notice
        why = f" ({reason})" if reason else ""
        if attempt.state is AttemptState.STOPPING:
            self._hasten(attempt, grace_period_s, notice, why)
            return False
        attempt.state, attempt.stopped_by_agent = AttemptState.STOPPING, True
        attempt.limit_notice = None
        if notice is None:
            self._terminate(attempt, grace_period_s, why)
            return True
        attempt.term_at, attempt.grace_period_s = self._clock() + notice.notice_s, grace_period_s
        self._note(attempt_id, f"{notice.name} sent{why}; SIGTERM in {notice.notice_s:g} s")
        send_notice(attempt.popen.pid, notice)
        return True

    def _hasten(
        self, attempt: _Attempt, grace_period_s: float, notice: Notice | None, why: str
    ) -> None:
        """A STOPPING attempt stopped again: its next signal comes no later than it would
        for this stop."""
        now = self._clock()
        if attempt.term_at is None:  # SIGTERM sent; SIGKILL due, unless sent too
            kill_at = now + max(grace_period_s, 0.0)
            if attempt.kill_at is not None and kill_at < attempt.kill_at:
                attempt.kill_at, attempt.grace_period_s = kill_at, grace_period_s
            return
        grace_s = min(attempt.grace_period_s, grace_period_s)
        if notice is None:
            self._terminate(attempt, grace_s, why)
        elif now + notice.notice_s < attempt.term_at:
            attempt.term_at, attempt.grace_period_s = now + notice.notice_s, grace_s

    def _terminate(self, attempt: _Attempt, grace_period_s: float, why: str) -> None:
        """SIGTERM a stopping attempt and set its SIGKILL deadline."""
        assert attempt.popen is not None
        attempt.term_at = None
        attempt.kill_at = self._clock() + max(grace_period_s, 0.0)
        attempt.grace_period_s = grace_period_s
        self._note(attempt.attempt_id, f"SIGTERM sent{why}; SIGKILL in {grace_period_s:g} s")
        if attempt.ray:  # the supervisor relays the stop, then stops Ray itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(attempt.popen.pid, signal.SIGTERM)
        else:
            signal_attempt(attempt.popen.pid, signal.SIGTERM)

    def poll(self) -> list[int]:
        """Reap exited attempts, send the others what is due; the ids that just EXITED."""
        live = [
            (attempt, attempt.popen)
            for attempt in self._attempts.values()
            if attempt.popen is not None and attempt.state in LIVE_STATES
        ]
        ended = [(attempt, popen) for attempt, popen in live if _leader_exited(popen.pid)]
        _kill_leftovers([popen.pid for _, popen in ended])  # before the reaps
        for attempt, popen in ended:
            exit_code = popen.wait()
            self._drop_record(attempt.attempt_id)
            if attempt.ray:
                remove_leftovers(self.attempt_dir(attempt.attempt_id) / RAY_STATE_FILE)
            attempt.state, attempt.exit_code = AttemptState.EXITED, exit_code
            attempt.message = _exit_message(attempt, exit_code)
            attempt.kill_at = attempt.term_at = attempt.limit_notice = None
        for attempt, _ in live:
            if attempt.state in LIVE_STATES:
                self._send_due(attempt)
        return [attempt.attempt_id for attempt, _ in ended]

    def _send_due(self, attempt: _Attempt) -> None:
        """Send a live attempt what is due: the SIGTERM after a stop's notice, the
        SIGKILL after the grace period, or the time-limit notice."""
        assert attempt.popen is not None
        now, pid = self._clock(), attempt.popen.pid
        if attempt.term_at is not None and now >= attempt.term_at:
            self._terminate(attempt, attempt.grace_period_s, " (the notice is over)")
        elif attempt.kill_at is not None and now >= attempt.kill_at:
            attempt.kill_at, attempt.killed = None, True
            self._note(attempt.attempt_id, "grace period over; SIGKILL sent")
            signal_attempt(pid, signal.SIGKILL)
        elif attempt.limit_notice is not None and now >= attempt.limit_notice[0]:
            notice = attempt.limit_notice[1]
            attempt.limit_notice = None
            self._note(attempt.attempt_id, f"{notice.name} sent: the time limit is near")
            send_notice(pid, notice)

    def get(self, attempt_id: int) -> AttemptView | None:
        attempt = self._attempts.get(attempt_id)
        return None if attempt is None else self._view(attempt)

    def attempt_ids(self) -> list[int]:
        """Every attempt held, live or ended, in start order."""
        return list(self._attempts)

    def views(self) -> list[AttemptView]:
        """A view of every attempt held, in start order."""
        return [self._view(attempt) for attempt in self._attempts.values()]

    def busy_gpus(self) -> dict[int, int]:
        """GPU index -> attempt id, for the attempts whose processes are alive."""
        return {
            index: attempt.attempt_id
            for attempt in self._attempts.values()
            if attempt.state in LIVE_STATES
            for index in attempt.gpu_indices
        }

    def forget(self, attempt_id: int) -> None:
        """Drop an ended attempt (its files stay on disk); a live one is kept."""
        attempt = self._attempts.get(attempt_id)
        if attempt is not None and attempt.state not in LIVE_STATES:
            del self._attempts[attempt_id]

    def report(
        self, attempt_id: int, log_offset: int, max_bytes: int = MAX_LOG_CHUNK_BYTES
    ) -> AttemptReport:
        """The attempt's state with its log from ``log_offset`` (at most ``max_bytes``)."""
        view = self.get(attempt_id)
        if view is None:
            raise KeyError(attempt_id)
        return AttemptReport(
            attempt_id=attempt_id,
            state=view.state,
            pid=view.pid,
            exit_code=view.exit_code,
            stopped_by_agent=view.stopped_by_agent,
            message=view.message,
            log_offset=log_offset,
            log_data=self.read_log(attempt_id, log_offset, max_bytes),
        )

    def read_log(self, attempt_id: int, offset: int, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of the log from byte ``offset``; b"" past its end or if none."""
        try:
            with open(self.log_path(attempt_id), "rb") as log_file:
                log_file.seek(offset)
                return log_file.read(max_bytes)
        except FileNotFoundError:
            return b""

    def log_size(self, attempt_id: int) -> int:
        """The log's size in bytes; 0 if there is none yet."""
        try:
            return self.log_path(attempt_id).stat().st_size
        except FileNotFoundError:
            return 0

    # --- what a previous agent life left ----------------------------------------------

    def stop_orphans(self, grace_s: float) -> list[Orphan]:
        """Stop the attempts a previous agent life left running here; what was found.

        Call once, before the first ``start`` (a start overwrites its record). Each
        record found is handled, logged in one line (here and in the attempt's log) and
        removed. The attempts are not held afterwards: the server ends them as lost.
        """
        records = {i: read_record(self.record_path(i)) for i in self._recorded_ids()}
        orphans = stop_groups(records, grace_s)
        for orphan in orphans:
            text = orphan.describe(grace_s)
            level = logging.WARNING if orphan.outcome in WARNING_OUTCOMES else logging.INFO
            log.log(level, "attempt %d was left by a previous agent: %s", orphan.attempt_id, text)
            self._note(orphan.attempt_id, f"the agent restarted and found this attempt: {text}")
            self._drop_record(orphan.attempt_id)
        return orphans

    def _recorded_ids(self) -> list[int]:
        """The attempt ids with a process record on disk."""
        try:
            entries = list(os.scandir(self._data_dir / ATTEMPTS_DIR))
        except FileNotFoundError:
            return []
        return [
            int(entry.name)
            for entry in entries
            if entry.name.isdigit() and (Path(entry.path) / RECORD_FILE).exists()
        ]

    def _drop_record(self, attempt_id: int) -> None:
        path = self.record_path(attempt_id)
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            log.warning("cannot remove %s: %s", path, err)

    # --- logs -----------------------------------------------------------------------

    def _note(self, attempt_id: int, text: str) -> None:
        """Append an agent line to the attempt's log (best effort)."""
        path = self.log_path(attempt_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as log_file:
                log_file.write(f"[corral-agent] {text}\n".encode())
        except OSError as err:
            log.warning("cannot write to %s: %s", path, err)

    def _view(self, attempt: _Attempt) -> AttemptView:
        return AttemptView(
            attempt_id=attempt.attempt_id,
            state=attempt.state,
            pid=None if attempt.popen is None else attempt.popen.pid,
            exit_code=attempt.exit_code,
            stopped_by_agent=attempt.stopped_by_agent,
            message=attempt.message,
            gpu_indices=attempt.gpu_indices,
            grace_period_s=attempt.grace_period_s,
        )
