"""The agent's side of preemption against a fake server: progress in the reports, and a
stop that gives notice first."""

from __future__ import annotations

import json
from pathlib import Path

from agents.daemon import EXIT_OK
from agents.progress import PROGRESS_FILE
from scheduler.domain.sync import AttemptState, AttemptStop, ProgressReport

from .test_daemon import async_test, gated, python_launch, report_of, start_agent
from .waiting import eventually

# Keeps a progress file like workloads.progress: a checkpoint at step 5, then one more
# on SIGTERM (step 7), and exits 0.
CHECKPOINTER = """
import json, os, signal, sys, time
ckpt = os.environ["CORRAL_CHECKPOINT_DIR"]
def progress(step):
    tmp = os.path.join(ckpt, ".progress.tmp")
    with open(tmp, "w") as f:
        json.dump({"attempt": int(os.environ["CORRAL_ATTEMPT"]), "step": step,
                   "last_checkpoint_step": step, "last_checkpoint_at": 1764345600.0 + step,
                   "resumed_from_step": 0}, f)
    os.replace(tmp, os.path.join(ckpt, "progress.json"))
def on_term(signum, frame):
    progress(7)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
progress(5)
print("checkpointed", flush=True)
while True:
    time.sleep(0.01)
"""


def checkpointed(step: int) -> ProgressReport:
    return ProgressReport(
        step=step,
        last_checkpoint_step=step,
        last_checkpoint_at=1764345600.0 + step,
        resumed_from_step=0,
    )


@async_test
async def test_reports_carry_the_progress_file_and_the_end_its_last_checkpoint(
    tmp_path: Path,
) -> None:
    h = start_agent(tmp_path)
    env = {"CORRAL_CHECKPOINT_DIR": str(tmp_path / "ckpt")}
    h.server.want(python_launch(1, CHECKPOINTER, env=env, grace_period_s=5))
    await eventually(lambda: "checkpointed" in h.server.log_text(1), "the first checkpoint")
    req = await h.server.request_where(lambda r: (rep := report_of(r, 1)) is not None
                                       and rep.progress is not None)  # fmt: skip
    report = report_of(req, 1)
    assert report is not None and report.progress == checkpointed(5)

    h.server.ask_stop(1, "preempted", grace_period_s=5)
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the end report")
    end = h.server.reports[1]
    assert (end.exit_code, end.stopped_by_agent) == (0, True)
    assert end.progress == checkpointed(7)  # taken on SIGTERM, read after the exit
    assert await h.stop() == EXIT_OK


@async_test
async def test_an_earlier_attempts_progress_file_is_not_reported(tmp_path: Path) -> None:
    h = start_agent(tmp_path)
    ckpt, gate = tmp_path / "ckpt", tmp_path / "gate"
    ckpt.mkdir()
    (ckpt / PROGRESS_FILE).write_text(json.dumps({"attempt": 1, "step": 40}))
    write_own = (
        "open(os.environ['CORRAL_CHECKPOINT_DIR'] + '/progress.json', 'w')"
        '.write(\'{"attempt": 2, "step": 41}\')'
    )
    code = gated(gate, "print('up', flush=True)", write_own + "\ntime.sleep(300)")
    launch = python_launch(1, code, env={"CORRAL_CHECKPOINT_DIR": str(ckpt)}, grace_period_s=1)
    h.server.want(launch.model_copy(update={"attempt_number": 2}))
    await eventually(lambda: "up" in h.server.log_text(1), "the attempt to run")
    req = await h.server.request_where(lambda r: report_of(r, 1) is not None)
    report = report_of(req, 1)
    assert report is not None and report.progress is None
    gate.touch()
    await h.server.request_where(
        lambda r: (rep := report_of(r, 1)) is not None and rep.progress == ProgressReport(step=41)
    )
    assert await h.stop() == EXIT_OK


NOTICED = """
import os, signal, sys, time
def on_notice(signum, frame):
    print("notice", flush=True)
    while not os.path.exists({gate!r}):
        time.sleep(0.01)
    sys.exit(0)
signal.signal(signal.SIGUSR1, on_notice)
print("ready", flush=True)
while True:
    time.sleep(0.01)
"""


@async_test
async def test_a_preemption_notice_comes_first_and_the_exit_is_the_agents_doing(
    tmp_path: Path,
) -> None:
    h = start_agent(tmp_path)
    gate = tmp_path / "gate"
    h.server.want(python_launch(1, NOTICED.replace("{gate!r}", repr(str(gate)))))
    await eventually(lambda: "ready" in h.server.log_text(1), "the attempt to run")
    h.server.run.pop(1)
    h.server.stop[1] = AttemptStop(
        attempt_id=1, reason="preempted", grace_period_s=5, notice_signal="USR1", notice_s=60
    )
    h.server.poke()
    await eventually(lambda: "notice" in h.server.log_text(1), "the notice")
    await eventually(lambda: h.server.state(1) is AttemptState.STOPPING, "a stopping report")
    gate.touch()  # the job checkpointed and exits 0 within its notice
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the end report")
    end = h.server.reports[1]
    assert (end.exit_code, end.stopped_by_agent) == (0, True)
    assert "SIGTERM sent" not in h.server.log_text(1)
    assert await h.stop() == EXIT_OK
