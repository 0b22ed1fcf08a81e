"""The agent daemon against an in-process fake server: the rules of the sync protocol."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import textwrap
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec

import pytest

from agents.daemon import EXIT_AUTH, EXIT_CONFIG, EXIT_OK, Agent, AgentConfig, run_agent
from agents.gpu import select_backend
from agents.link import Link
from agents.runner import Runner
from scheduler.domain.sync import (
    MAX_LOG_CHUNK_BYTES,
    AttemptLaunch,
    AttemptReport,
    AttemptState,
    SyncRequest,
)

from .fake_server import TOKEN, FakeServer
from .waiting import eventually, process_gone

P = ParamSpec("P")


def async_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


@dataclass
class Harness:
    agent: Agent
    server: FakeServer
    task: asyncio.Task[int]

    async def stop(self) -> int:
        self.agent.request_stop()
        return await self.task


def start_agent(tmp_path: Path, gpus: str = "sim:2xT4", token: str = TOKEN) -> Harness:
    """An agent with short intervals, talking to a new FakeServer; call inside a loop."""
    server = FakeServer()
    config = AgentConfig(
        server="http://corral.test",
        token=token,
        name="node-1",
        gpus=gpus,
        data_dir=tmp_path / "data",
        long_poll_s=5.0,
        sample_interval_s=0.05,
        log_flush_interval_s=0.05,
        retry_max_s=0.1,
    )
    link = Link(config.server, token, timeout_s=5.0, transport=server.transport())
    agent = Agent(config, select_backend(gpus, config.name), link)
    return Harness(agent, server, asyncio.create_task(agent.run()))


def python_launch(attempt_id: int, code: str, **fields: object) -> AttemptLaunch:
    return AttemptLaunch.model_validate(
        {
            "attempt_id": attempt_id,
            "job_id": 100 + attempt_id,
            "attempt_number": 1,
            "argv": [sys.executable, "-c", textwrap.dedent(code)],
            **fields,
        }
    )


def gated(gate: Path, before: str, after: str) -> str:
    """Python code: run ``before``, wait for the file ``gate``, run ``after``."""
    wait = f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)"
    return f"import os, sys, time\n{before}\n{wait}\n{after}\n"


def report_of(req: SyncRequest, attempt_id: int) -> AttemptReport | None:
    return next((r for r in req.attempts if r.attempt_id == attempt_id), None)


@async_test
async def test_starts_what_is_desired_and_reports_its_log_and_exit(tmp_path: Path) -> None:
    h = start_agent(tmp_path)
    gate1, gate2 = tmp_path / "gate1", tmp_path / "gate2"
    code = gated(gate1, "print('first', flush=True)", "print('second', flush=True)")
    code = gated(gate2, code, "sys.exit(3)")
    h.server.want(python_launch(1, code, gpu_indices=[1]))

    await eventually(lambda: "first" in h.server.log_text(1), "the first line")
    assert h.server.state(1) is AttemptState.RUNNING
    assert h.server.reports[1].pid is not None
    gate1.touch()  # the log grows while a long poll is held: the agent must cancel it
    await eventually(lambda: h.server.log_text(1) == "first\nsecond\n", "the second line")
    gate2.touch()  # the attempt exits while a long poll is held
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the exit")

    report = h.server.reports[1]
    assert (report.exit_code, report.stopped_by_agent) == (3, False)
    assert report.message == "exited with code 3"
    await h.server.request_where(lambda req: not req.attempts)  # forgotten once acked
    assert await h.stop() == EXIT_OK


@async_test
async def test_ships_a_big_log_in_acknowledged_chunks(tmp_path: Path) -> None:
    h = start_agent(tmp_path)
    size = 3 * MAX_LOG_CHUNK_BYTES + 1000
    code = f"import sys; sys.stdout.write(''.join(str(i % 10) for i in range({size})))"
    h.server.want(python_launch(1, code))

    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the exit")
    await eventually(lambda: len(h.server.log_text(1)) == size, "the whole log")

    assert h.server.log_text(1) == "".join(str(i % 10) for i in range(size))
    chunks = [r for req in h.server.requests if (r := report_of(req, 1)) and r.log_data]
    assert all(len(r.log_data) <= MAX_LOG_CHUNK_BYTES for r in chunks)
    assert len({r.log_offset for r in chunks}) >= 4
    assert await h.stop() == EXIT_OK


SLEEPS = "print('ready', flush=True)\nimport time\ntime.sleep(600)"
CHECKPOINTS_ON_SIGTERM = """
    import signal, sys, time
    def on_term(signum, frame):
        print("checkpointed", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    time.sleep(600)
"""


@async_test
async def test_stops_what_is_asked(tmp_path: Path) -> None:
    h = start_agent(tmp_path)
    h.server.want(python_launch(1, CHECKPOINTS_ON_SIGTERM))
    await eventually(lambda: "ready" in h.server.log_text(1), "the attempt to be ready")

    h.server.ask_stop(1, reason="preempted", grace_period_s=300)
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the exit")

    report = h.server.reports[1]
    assert (report.exit_code, report.stopped_by_agent) == (0, True)
    await eventually(lambda: "checkpointed" in h.server.log_text(1), "the log")
    assert "SIGTERM sent (preempted)" in h.server.log_text(1)
    assert await h.stop() == EXIT_OK


@async_test
async def test_stops_what_the_server_no_longer_lists(tmp_path: Path) -> None:
    h = start_agent(tmp_path)
    h.server.want(python_launch(1, SLEEPS))
    await eventually(lambda: "ready" in h.server.log_text(1), "the attempt to be ready")

    h.server.unwant(1)
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the exit")

    report = h.server.reports[1]
    assert (report.exit_code, report.stopped_by_agent) == (-15, True)
    assert "no longer wanted by the server" in h.server.log_text(1)
    assert await h.stop() == EXIT_OK


@async_test
async def test_forgets_an_ended_attempt_only_once_its_log_is_acknowledged(tmp_path: Path) -> None:
    h = start_agent(tmp_path)
    h.server.acking = False
    h.server.want(python_launch(1, "print('done')"))
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the exit")
    assert 1 not in h.server.run  # in neither list now

    await h.server.more_syncs(3)
    assert report_of(h.server.requests[-1], 1) is not None  # still held: log not acked
    h.server.acking = True
    await h.server.request_where(lambda req: report_of(req, 1) is None)

    assert h.server.log_text(1) == "done\n"
    assert await h.stop() == EXIT_OK


@async_test
async def test_an_ended_attempt_is_never_started_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = start_agent(tmp_path)
    h.server.end_on_exit = False  # the server keeps it in run for a while
    marker = tmp_path / "starts"
    launch = python_launch(1, f"open({str(marker)!r}, 'a').write('started\\n')")
    h.server.want(launch)
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the exit")

    await h.server.more_syncs(3)
    assert report_of(h.server.requests[-1], 1) is not None  # it keeps reporting the end
    h.server.unwant(1)
    await h.server.request_where(lambda req: report_of(req, 1) is None)
    h.server.want(launch)  # a server that got confused must not restart it either
    await h.server.more_syncs(3)

    assert marker.read_text() == "started\n"
    assert "attempt 1 already ended on this node" in caplog.text
    assert await h.stop() == EXIT_OK


@async_test
async def test_a_launch_failure_is_reported(tmp_path: Path) -> None:
    h = start_agent(tmp_path)
    h.server.want(AttemptLaunch(attempt_id=1, job_id=1, attempt_number=1, argv=["/no/such"]))

    await eventually(lambda: h.server.state(1) is AttemptState.LAUNCH_FAILED, "the failure")

    assert "No such file or directory" in h.server.reports[1].message
    await eventually(lambda: "launch failed" in h.server.log_text(1), "the log")
    assert await h.stop() == EXIT_OK


@async_test
async def test_attempts_keep_running_while_the_server_is_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.agent")
    h = start_agent(tmp_path)
    gate = tmp_path / "gate"
    h.server.want(python_launch(1, gated(gate, "print('ready', flush=True)", "sys.exit(4)")))
    await eventually(lambda: "ready" in h.server.log_text(1), "the attempt to be ready")
    pid = h.server.reports[1].pid
    assert pid is not None

    h.server.set_down(True)
    await eventually(lambda: h.server.refused >= 5, "several refused syncs")
    assert not process_gone(pid)
    gate.touch()  # it ends while the server is away
    await eventually(lambda: h.server.refused >= 10, "more refused syncs")
    h.server.set_down(False)
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the exit")

    assert (h.server.reports[1].pid, h.server.reports[1].exit_code) == (pid, 4)
    assert caplog.text.count("server unreachable") == 1
    assert caplog.text.count("server reachable again") == 1
    assert await h.stop() == EXIT_OK


@async_test
async def test_a_refused_token_stops_the_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = start_agent(tmp_path, token="wrong")

    assert await h.task == EXIT_AUTH
    assert "refused this agent's token" in caplog.text


@async_test
async def test_shutdown_stops_attempts_and_reports_them(tmp_path: Path) -> None:
    h = start_agent(tmp_path)
    h.server.want(python_launch(1, CHECKPOINTS_ON_SIGTERM))
    await eventually(lambda: "ready" in h.server.log_text(1), "the attempt to be ready")

    assert await h.stop() == EXIT_OK

    last = report_of(h.server.requests[-1], 1)
    assert last is not None
    assert (last.state, last.exit_code, last.stopped_by_agent) == (AttemptState.EXITED, 0, True)
    assert "checkpointed" in h.server.log_text(1)


@async_test
async def test_an_orphan_of_a_previous_life_is_stopped_before_the_first_sync(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="corral.agent")
    previous = Runner(tmp_path / "data")  # a life that died without stopping attempt 1
    pid = previous.start(python_launch(1, SLEEPS)).pid
    assert pid is not None
    try:
        h = start_agent(tmp_path)
        gone_at_sync: list[bool] = []
        h.server.on_request = lambda req: gone_at_sync.append(process_gone(pid))

        await h.server.more_syncs(2)

        assert gone_at_sync[0], "the orphan still ran at the first sync"
        assert all(report_of(req, 1) is None for req in h.server.requests)
        assert "attempt 1 was left by a previous agent" in caplog.text
        assert await h.stop() == EXIT_OK
    finally:
        previous.stop(1, 0)  # only signals a group if the agent failed to stop it
        await eventually(lambda: previous.poll() == [1], "the reap: this process is its parent")


@async_test
async def test_an_agent_that_cannot_sweep_orphans_never_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Runner, grace_s: float) -> list[object]:
        raise RuntimeError("no /proc")

    monkeypatch.setattr(Runner, "stop_orphans", broken)
    h = start_agent(tmp_path)

    with pytest.raises(RuntimeError, match="no /proc"):
        await asyncio.wait_for(h.task, timeout=20)
    assert h.server.requests == []


@async_test
async def test_reports_node_facts_and_samples_that_follow_what_runs(tmp_path: Path) -> None:
    h = start_agent(tmp_path, gpus="sim:2xT4")
    h.server.want(python_launch(1, SLEEPS, gpu_indices=[1]))

    def busy_on_gpu_1(req: SyncRequest) -> bool:
        samples = {s.index: s.utilization_pct or 0 for s in req.gpu_samples}
        return samples.get(1, 0) >= 85 and samples.get(0, 100) <= 2

    req = await h.server.request_where(busy_on_gpu_1)

    assert [(g.index, g.gpu_type) for g in req.node.gpus] == [(0, "T4"), (1, "T4")]
    assert req.node.name == "node-1" and req.node.cpus >= 1
    assert req.host is not None and req.host.memory_used_mib is not None
    assert await h.stop() == EXIT_OK


def test_a_bad_gpu_spec_is_a_config_error(tmp_path: Path) -> None:
    config = AgentConfig(
        server="http://corral.test", token=TOKEN, name="n", gpus="sim:0", data_dir=tmp_path
    )
    assert run_agent(config) == EXIT_CONFIG


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "bad name"}, "bad node name"),
        ({"long_poll_s": 31.0}, "long_poll_s"),
        ({"retry_max_s": 0.0}, "retry_max_s"),
        ({"orphan_grace_s": -1.0}, "orphan_grace_s"),
    ],
)
def test_config_is_checked(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {
        "server": "http://corral.test",
        "token": TOKEN,
        "name": "node-1",
        "gpus": "none",
        "data_dir": tmp_path,
    }
    with pytest.raises(ValueError, match=message):
        AgentConfig(**{**base, **fields})
