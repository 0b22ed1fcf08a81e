"""Self-fencing: the rule on a fake clock, then an agent cut off from a fake server."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import cast

import pytest

from agents.daemon import EXIT_OK, Agent, AgentConfig
from agents.fencing import FENCE_MIN_S, FENCE_REASON, Fence
from agents.gpu import select_backend
from agents.link import Link
from agents.runner import AttemptView, Runner
from scheduler.domain.sync import AttemptState

from .fake_server import TOKEN, FakeServer
from .test_daemon import Harness, async_test, python_launch
from .waiting import eventually, process_gone


class JumpClock:
    """Monotonic time that a test can move forward at once."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


class StepClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def live(grace_s: float, attempt_id: int = 1) -> AttemptView:
    return AttemptView(attempt_id, AttemptState.RUNNING, 1, None, False, "", (), grace_s)


def ended(grace_s: float) -> AttemptView:
    return AttemptView(2, AttemptState.EXITED, 1, 0, False, "", (), grace_s)


@pytest.mark.parametrize(
    ("node_timeout_s", "graces_s", "delay_s"),
    [
        (60.0, [10.0, 30.0], 30.0),  # the longest grace must end before the timeout
        (60.0, [], 60.0),
        (30.0, [30.0], FENCE_MIN_S),  # no time left for the grace: as soon as it is safe
        (3.0, [1.0], FENCE_MIN_S),
        (None, [1.0], None),  # a server that gives no timeout: never
    ],
)
def test_fence_delay(node_timeout_s: float | None, graces_s: list[float], delay_s: float) -> None:
    fence = Fence(StepClock())
    fence.synced(0.0, node_timeout_s)
    assert fence.delay_s(graces_s) == delay_s


def test_fences_counting_from_the_last_good_request() -> None:
    clock = StepClock()
    fence = Fence(clock)
    views = [live(10.0), ended(50.0)]  # an ended attempt's grace does not count
    assert fence.silent_s(views) is None  # never synced: nothing to count from
    fence.synced(sent_at=100.0, node_timeout_s=60.0)
    clock.now_s = 149.9
    assert fence.silent_s(views) is None
    clock.now_s = 150.0
    assert fence.silent_s(views) == 50.0
    assert fence.silent_s([ended(10.0)]) is None  # nothing live: nothing to stop
    fence.synced(sent_at=150.0, node_timeout_s=60.0)
    fence.synced(sent_at=120.0, node_timeout_s=60.0)  # a slow reply to an older request
    clock.now_s = 199.9
    assert fence.silent_s(views) is None
    clock.now_s = 200.0
    assert fence.silent_s(views) == 50.0
    fence.synced(sent_at=200.0, node_timeout_s=None)  # the server gives no timeout now
    clock.now_s = 10_000.0
    assert fence.silent_s(views) is None


class FakeRunner:
    def __init__(self, views: list[AttemptView]) -> None:
        self._views = views
        self.stops: list[tuple[int, float, str]] = []

    def views(self) -> list[AttemptView]:
        return self._views

    def stop(self, attempt_id: int, grace_period_s: float, reason: str) -> bool:
        self.stops.append((attempt_id, grace_period_s, reason))
        return True


def test_check_stops_every_live_attempt_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    clock = StepClock()
    fence = Fence(clock)
    runner = FakeRunner([live(10.0, 1), live(20.0, 3), ended(5.0)])
    fence.synced(sent_at=100.0, node_timeout_s=30.0)
    clock.now_s = 109.0
    assert fence.check(cast(Runner, runner)) == []
    clock.now_s = 110.0
    with caplog.at_level(logging.WARNING, "corral.agent.fencing"):
        assert fence.check(cast(Runner, runner)) == [1, 3]
    assert runner.stops == [(1, 10.0, FENCE_REASON), (3, 20.0, FENCE_REASON)]
    assert len(caplog.records) == 1
    assert "no sync for 10.0 s (node timeout 30 s): stopping attempts 1, 3" in caplog.text
    clock.now_s = 200.0
    assert fence.check(cast(Runner, runner)) == []  # once per outage
    fence.synced(sent_at=200.0, node_timeout_s=30.0)
    clock.now_s = 210.0
    assert fence.check(cast(Runner, runner)) == [1, 3]  # a new outage


def test_a_long_poll_returns_before_the_fence_and_the_node_timeout() -> None:
    fence = Fence(StepClock())
    assert fence.long_poll_s(20.0, [live(30.0)]) == 20.0  # no timeout known
    fence.synced(0.0, 60.0)
    assert fence.long_poll_s(20.0, []) == 20.0
    assert fence.long_poll_s(20.0, [live(30.0)]) == 15.0
    assert fence.long_poll_s(20.0, [live(60.0)]) == FENCE_MIN_S / 2
    fence.synced(0.0, 3.0)
    assert fence.long_poll_s(20.0, []) == 1.5  # else the server declares the node lost


def start_agent(tmp_path: Path, clock: JumpClock) -> Harness:
    server = FakeServer()
    config = AgentConfig(
        server="http://corral.test",
        token=TOKEN,
        name="node-1",
        gpus="sim:2",
        data_dir=tmp_path / "data",
        long_poll_s=5.0,
        sample_interval_s=0.05,
        log_flush_interval_s=0.05,
        retry_max_s=0.1,
    )
    link = Link(config.server, TOKEN, timeout_s=5.0, transport=server.transport())
    agent = Agent(config, select_backend("sim:2", config.name), link, clock=clock)
    return Harness(agent, server, asyncio.create_task(agent.run()))


SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(300)\n"


@async_test
async def test_an_agent_cut_off_stops_its_attempts_and_reports_them_later(tmp_path: Path) -> None:
    clock = JumpClock()
    h = start_agent(tmp_path, clock)
    h.server.node_timeout_s = 20.0
    h.server.want(python_launch(1, SLEEPER, grace_period_s=2))
    await eventually(lambda: "ready" in h.server.log_text(1), "the attempt to run")
    pid = h.server.reports[1].pid
    assert pid is not None

    h.server.set_down(True)
    await eventually(lambda: h.server.refused > 0, "a failed sync")
    clock.advance(20.0 - 2.0)  # the node timeout less the grace, since the last good sync
    await eventually(lambda: process_gone(pid), "the attempt to be stopped")
    assert h.server.state(1) is AttemptState.RUNNING  # the server has heard nothing yet

    h.server.set_down(False)
    await eventually(lambda: h.server.state(1) is AttemptState.EXITED, "the end report")
    report = h.server.reports[1]
    assert report.stopped_by_agent
    assert "cut off from the server" in h.server.log_text(1)
    assert await h.stop() == EXIT_OK


@async_test
async def test_long_polls_fit_the_node_timeout(tmp_path: Path) -> None:
    h = start_agent(tmp_path, JumpClock())
    h.server.node_timeout_s = 4.0
    await h.server.more_syncs(1)
    req = await h.server.request_where(lambda r: r.wait_s > 0)
    assert req.wait_s == 2.0
    assert await h.stop() == EXIT_OK
