"""The agent daemon: three small loops in one asyncio loop.

0. once, before the first sync: stop what a previous life of the agent left running
   (``Runner.stop_orphans``, grace ``orphan_grace_s``). Those attempts are then not
   reported, so the server ends them as lost and requeues their jobs; they are never
   running twice, once left over and once started again.
1. sync: post the node's actual state (with what each attempt's progress file says,
   ``agents.progress``), apply the desired state in the reply by the rules of
   ``scheduler.domain.sync`` (start, stop, after its notice signal if it has one,
   ``agents.notice``; stop the unlisted, forget).
2. watch: every ``WATCH_INTERVAL_S`` and on SIGCHLD, reap exits and enforce stop
   deadlines, tell the GPU backend what runs, and wake the sync when an attempt or its
   log changed; stop every attempt when the server has been out of reach too long
   (``agents.fencing``).
3. sample: every ``sample_interval_s``, GPU and host samples for the next sync.

Besides the runner's records the daemon owns, per held attempt, the log bytes the
server acknowledged (the next chunk starts there) and the (state, exit code) the
server last received. Invariants: an attempt id is started at most once per agent
life; an attempt is forgotten only once it has ended, the server received its end,
lists it neither in ``run`` nor in ``stop`` and acknowledged its whole log.

When to sync. A request goes when there is news: the first after start or after a
failure, an attempt whose state the server has not received, log bytes it lacks. The
start of attempts alone waits for the next watch pass (``START_REPORT_DELAY_S``), so
that the end of a quick one goes in the same request; log news alone goes at most once
per ``log_flush_interval_s`` unless a backlog is draining. A request with log news (or
the first one) has ``wait_s=0``: its reply carries the acks, and a busy log would
otherwise keep cancelling its own acks. Any other request is a long poll
(``wait_s=long_poll_s``, shortened to fit the node timeout: ``agents.fencing``) that
any local change cancels; the server applies the states it carries at once and answers
when the node has something to do, so a node that reports ends and gets new work
makes one request for both. A cancelled request is repeated by the next one (the
server takes a report twice as once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pydantic

from agents.fencing import Fence
from agents.gpu import GpuBackend, GpuBackendError, select_backend
from agents.host import HostProbe, node_facts
from agents.link import AuthError, Link, LinkError, SyncLink
from agents.notice import Notice, notice_of
from agents.progress import ProgressFiles
from agents.runner import AttemptView, Runner
from scheduler.domain.sync import (
    MAX_LOG_CHUNK_BYTES,
    MAX_WAIT_S,
    AttemptLaunch,
    AttemptState,
    GpuSample,
    HostSample,
    NodeFacts,
    SyncReply,
    SyncRequest,
)

log = logging.getLogger("corral.agent")

EXIT_OK = 0
EXIT_CONFIG = 2  # a bad --gpus spec, or NVML missing under --gpus nvml
EXIT_AUTH = 77  # the server refused the token (sysexits EX_NOPERM)
WATCH_INTERVAL_S = 0.1
WAKE_COALESCE_S = 0.01  # after a SIGCHLD, how long the watch waits for other exits
START_REPORT_DELAY_S = 1.5 * WATCH_INTERVAL_S  # a start's news waits for one watch pass
RETRY_MIN_S = 0.2
FINAL_SYNC_TIMEOUT_S = 5.0
SHUTDOWN_MARGIN_S = 5.0  # waited past the longest grace period for SIGKILLed groups


@dataclass(frozen=True)
class AgentConfig:
    server: str  # base URL, e.g. http://head:8080
    token: str
    name: str  # the node's name, as the server knows it
    gpus: str  # a GPU spec: auto, nvml, none, sim:N, sim:NxTYPE
    data_dir: Path  # attempts/<id>/ (cwd by default, output.log) lives here
    long_poll_s: float = 20.0
    sample_interval_s: float = 5.0
    log_flush_interval_s: float = 0.5
    retry_max_s: float = 5.0
    http_timeout_s: float = 10.0  # added to the long poll for each request
    orphan_grace_s: float = 5.0  # SIGTERM to SIGKILL for what a previous agent life left
    ca: str | None = None  # a PEM CA bundle to verify an https server with

    def __post_init__(self) -> None:
        if not 0 <= self.long_poll_s <= MAX_WAIT_S:
            raise ValueError(f"long_poll_s must be in 0..{MAX_WAIT_S:g}")
        for field in ("sample_interval_s", "log_flush_interval_s", "retry_max_s"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be > 0")
        if self.orphan_grace_s < 0:
            raise ValueError("orphan_grace_s must be >= 0")
        try:
            NodeFacts(name=self.name, hostname="-", cpus=1, memory_total_mib=0)
        except pydantic.ValidationError:
            raise ValueError(
                f"bad node name {self.name!r}: 1-128 of letters, digits, '.', '_', '-',"
                " starting with a letter or digit"
            ) from None


class Agent:
    """One node's agent; ``run()`` until ``request_stop()`` or a fatal link error."""

    def __init__(
        self,
        config: AgentConfig,
        backend: GpuBackend,
        link: SyncLink,
        runner: Runner | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._backend = backend
        self._link = link
        self._runner = runner or Runner(config.data_dir)
        self._clock = clock
        self._host = HostProbe()
        self._node = node_facts(config.name, backend.facts())
        self._gpu_samples: list[GpuSample] = []
        self._host_sample: HostSample | None = None
        self._acked: dict[int, int] = {}  # attempt id -> log bytes the server holds
        self._delivered: dict[int, tuple[AttemptState, int | None]] = {}
        self._log_seen: dict[int, int] = {}  # attempt id -> log size the watch saw
        self._forgotten: dict[int, bool] = {}  # ended here; value: a re-launch was logged
        self._wake = asyncio.Event()
        self._child_exited = asyncio.Event()  # set on SIGCHLD (when handling signals)
        self._stop_requested = asyncio.Event()
        self._exit_code = EXIT_OK
        self._fresh = True  # the next sync is short: the first one, or after a failure
        self._log_backlog = False
        self._last_short_at = -math.inf
        self._last_start_at = -math.inf
        self._retry_s = RETRY_MIN_S
        self._down_since: float | None = None
        self._node_state: str | None = None
        self._progress = ProgressFiles()
        self._fence = Fence(clock)

    def request_stop(self) -> None:
        """Begin the shutdown: stop every attempt, report them once, return EXIT_OK."""
        self._stop_requested.set()

    async def run(self, handle_signals: bool = False) -> int:
        """Run the loops until stopped, then stop every attempt; the exit code."""
        loop = asyncio.get_running_loop()
        stop_signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        for sig in stop_signals:
            loop.add_signal_handler(sig, self.request_stop)
        if handle_signals:  # an attempt's exit starts a watch pass at once
            loop.add_signal_handler(signal.SIGCHLD, self._child_exited.set)
        node, server = self._node, self._config.server
        log.info("agent %s up: %d GPUs, server %s", node.name, len(node.gpus), server)
        loops: list[asyncio.Task[None]] = []
        try:
            # Before the first sync, and failing closed: an agent that could not stop
            # what its previous life left must not let the server start it again.
            await asyncio.to_thread(self._runner.stop_orphans, self._config.orphan_grace_s)
            loops = self._start_loops()
            await self._stop_requested.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._stop_all()
            if self._exit_code == EXIT_OK:
                await self._final_sync()
            await self._link.aclose()
            self._backend.close()
            for sig in stop_signals:
                loop.remove_signal_handler(sig)
            if handle_signals:
                loop.remove_signal_handler(signal.SIGCHLD)
        log.info("agent %s stopped", self._node.name)
        return self._exit_code

    def _start_loops(self) -> list[asyncio.Task[None]]:
        sample_s = self._config.sample_interval_s
        return [
            asyncio.create_task(self._sync_loop()),
            asyncio.create_task(
                self._every("watch", WATCH_INTERVAL_S, self._watch_once, self._child_exited)
            ),
            asyncio.create_task(self._every("sample", sample_s, self._sample_once)),
        ]

    async def _every(
        self,
        name: str,
        interval_s: float,
        body: Callable[[], Awaitable[None]],
        wake: asyncio.Event | None = None,
    ) -> None:
        """Run ``body`` every ``interval_s``, or soon after ``wake`` is set; a failure is
        logged and the loop goes on."""
        while True:
            if wake is not None:
                wake.clear()
            try:
                await body()
            except Exception:
                log.exception("the %s loop failed; it goes on", name)
            if wake is None:
                await asyncio.sleep(interval_s)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval_s)
            if wake.is_set():  # the other exits of the moment come in the same pass
                await asyncio.sleep(WAKE_COALESCE_S)

    # --- watch and sample -------------------------------------------------------------

    async def _watch_once(self) -> None:
        exited = self._runner.poll()
        for attempt_id in exited:
            self._log_exit(attempt_id)
        self._backend.observe(self._runner.busy_gpus())
        if self._log_grew() or exited:
            self._wake.set()
        self._fence.check(self._runner)

    def _log_exit(self, attempt_id: int) -> None:
        self._progress.final(attempt_id)  # a checkpoint taken on the way out counts
        view = self._runner.get(attempt_id)
        log.info("attempt %d %s", attempt_id, view.message if view else "exited")

    def _log_grew(self) -> bool:
        grew = False
        for attempt_id in self._runner.attempt_ids():
            size = self._runner.log_size(attempt_id)
            if size > self._log_seen.get(attempt_id, 0):
                self._log_seen[attempt_id] = size
                grew = True
        return grew

    async def _sample_once(self) -> None:
        self._gpu_samples = await asyncio.to_thread(self._backend.sample)
        self._host_sample = self._host.sample()

    # --- sync ---------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        while not self._stop_requested.is_set():
            try:
                await self._sync_once()
            except Exception:
                log.exception("sync failed unexpectedly; retrying")
                await asyncio.sleep(self._config.retry_max_s)

    async def _sync_once(self) -> None:
        self._wake.clear()
        pause_s = self._pause_s()
        if pause_s > 0:
            await self._wait_wake(pause_s)
            return
        short = self._fresh or self._log_backlog or self._has_log_news()
        long_poll_s = self._fence.long_poll_s(self._config.long_poll_s, self._runner.views())
        req = self._request(wait_s=0.0 if short else long_poll_s)
        sent_at = self._clock()
        if short:
            self._last_short_at = sent_at
        try:
            reply = await (self._link.sync(req) if short else self._long_poll(req))
        except AuthError as err:
            log.error("stopping: the server refused this agent's token (%s)", err)
            self._exit_code = EXIT_AUTH
            self._stop_requested.set()
            return
        except LinkError as err:
            self._link_down(err)
            await asyncio.sleep(self._retry_s * random.uniform(0.5, 1.0))
            self._retry_s = min(self._retry_s * 2, self._config.retry_max_s)
            return
        self._link_up()
        if reply is not None:
            held = {view.attempt_id for view in self._runner.views()}
            # A held poll that brings new work proves the server alive when it answered;
            # counting from the send would fence a fresh attempt at once.
            fresh = any(launch.attempt_id not in held for launch in reply.run)
            self._fence.synced(self._clock() if fresh else sent_at, reply.node_timeout_s)
            self._received(req, reply)
            self._apply(reply)

    def _pause_s(self) -> float:
        """How long to hold a sync whose only news may wait (0: go now): attempts that
        just started, until the next watch pass; log bytes, until the flush interval."""
        if self._fresh or self._log_backlog:
            return 0.0
        news = self._state_news()
        if news:
            started = all(
                view.state is AttemptState.RUNNING and view.attempt_id not in self._delivered
                for view in news
            )
            if not started:
                return 0.0  # an end, a stop, a failed launch: at once
            return self._last_start_at + START_REPORT_DELAY_S - self._clock()
        if not self._has_log_news():
            return 0.0
        return self._last_short_at + self._config.log_flush_interval_s - self._clock()

    def _state_news(self) -> list[AttemptView]:
        """The attempts whose (state, exit code) the server has not received."""
        return [
            view
            for view in self._runner.views()
            if self._delivered.get(view.attempt_id) != (view.state, view.exit_code)
        ]

    def _has_log_news(self) -> bool:
        return any(
            self._runner.log_size(attempt_id) > self._acked.get(attempt_id, 0)
            for attempt_id in self._runner.attempt_ids()
        )

    async def _wait_wake(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)

    def _request(self, wait_s: float) -> SyncRequest:
        reports = []
        for attempt_id in self._runner.attempt_ids():
            acked = self._acked.get(attempt_id, 0)
            report = self._runner.report(attempt_id, acked, MAX_LOG_CHUNK_BYTES)
            report.progress = self._progress.read(attempt_id)
            reports.append(report)
        return SyncRequest(
            node=self._node,
            host=self._host_sample,
            gpu_samples=self._gpu_samples,
            attempts=reports,
            wait_s=wait_s,
        )

    async def _long_poll(self, req: SyncRequest) -> SyncReply | None:
        """The reply, or None when a local change came first (the request is cancelled)."""
        sync = asyncio.ensure_future(self._link.sync(req))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sync, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if not sync.done():
                sync.cancel()
        return sync.result() if sync.done() and not sync.cancelled() else None

    def _link_down(self, err: LinkError) -> None:
        self._fresh = True
        if self._down_since is None:
            self._down_since = self._clock()
            log.warning("server unreachable, attempts keep running, retrying: %s", err)

    def _link_up(self) -> None:
        self._fresh = False
        self._retry_s = RETRY_MIN_S
        if self._down_since is not None:
            log.info("server reachable again after %.1f s", self._clock() - self._down_since)
            self._down_since = None

    def _received(self, req: SyncRequest, reply: SyncReply) -> None:
        """Record what the server now holds: the reported states and the log acks."""
        for report in req.attempts:
            self._delivered[report.attempt_id] = (report.state, report.exit_code)
        for attempt_id, acked in reply.log_acks.items():
            if self._runner.get(attempt_id) is not None:
                self._acked[attempt_id] = acked
        self._log_backlog = any(
            len(r.log_data) == MAX_LOG_CHUNK_BYTES
            and self._acked.get(r.attempt_id, 0) > r.log_offset
            for r in req.attempts
        )
        if reply.node_state != self._node_state:
            log.info("node %s is %s", self._node.name, reply.node_state)
            self._node_state = reply.node_state

    # --- applying the desired state ---------------------------------------------------

    def _apply(self, reply: SyncReply) -> None:
        """Make the held attempts match the reply (rules: ``scheduler.domain.sync``)."""
        stops = {stop.attempt_id for stop in reply.stop}
        wanted = {launch.attempt_id for launch in reply.run}
        for stop in reply.stop:
            notice = notice_of(stop.notice_signal, stop.notice_s)
            self._stop(stop.attempt_id, stop.grace_period_s, stop.reason, notice)
        for launch in reply.run:
            if launch.attempt_id not in stops:
                self._start(launch)
        for view in self._runner.views():
            if view.attempt_id not in wanted and view.attempt_id not in stops:
                self._release(view)

    def _start(self, launch: AttemptLaunch) -> None:
        """Start an attempt not held; never one that already ended here."""
        attempt_id = launch.attempt_id
        if self._runner.get(attempt_id) is not None or self._stop_requested.is_set():
            return
        if attempt_id in self._forgotten:
            if not self._forgotten[attempt_id]:
                log.warning("attempt %d already ended on this node; not restarting it", attempt_id)
                self._forgotten[attempt_id] = True
            return
        if launch.ray:
            rank, nodes = launch.node_rank, launch.num_nodes
            log.info(
                "attempt %d runs in a per-job Ray cluster: node %d of %d",
                attempt_id,
                rank + 1,
                nodes,
            )
        view = self._runner.start(launch)
        self._last_start_at = self._clock()
        self._progress.watch(launch)
        ids = (attempt_id, launch.job_id)
        if view.state is AttemptState.LAUNCH_FAILED:
            log.warning("attempt %d (job %d) %s", *ids, view.message)
        else:
            gpus = launch.gpu_indices or "none"
            log.info("started attempt %d (job %d) on GPUs %s, pid %s", *ids, gpus, view.pid)

    def _stop(
        self, attempt_id: int, grace_period_s: float, reason: str, notice: Notice | None = None
    ) -> None:
        if self._runner.stop(attempt_id, grace_period_s, reason, notice):
            first = f"{notice.name}, {notice.notice_s:g} s before SIGTERM; " if notice else ""
            log.info(
                "stopping attempt %d (%s), %sgrace %g s", attempt_id, reason, first, grace_period_s
            )

    def _release(self, view: AttemptView) -> None:
        """An attempt the server lists nowhere: stop it if live, forget it once delivered."""
        attempt_id = view.attempt_id
        if view.live:
            self._stop(attempt_id, view.grace_period_s, "no longer wanted by the server")
            return
        delivered = self._delivered.get(attempt_id) == (view.state, view.exit_code)
        if delivered and self._acked.get(attempt_id, 0) >= self._runner.log_size(attempt_id):
            self._runner.forget(attempt_id)
            self._progress.forget(attempt_id)
            for table in (self._acked, self._delivered, self._log_seen):
                table.pop(attempt_id, None)
            self._forgotten[attempt_id] = False
            log.debug("attempt %d forgotten: the server holds its end and its log", attempt_id)

    # --- shutdown -----------------------------------------------------------------------

    async def _stop_all(self) -> None:
        """Stop every live attempt and wait for them: their grace, SIGKILL, the reap."""
        live = [view for view in self._runner.views() if view.live]
        for view in live:
            self._stop(view.attempt_id, view.grace_period_s, "the agent is shutting down")
        grace_s = max((view.grace_period_s for view in live), default=0.0)
        deadline = self._clock() + grace_s + SHUTDOWN_MARGIN_S
        while True:
            for attempt_id in self._runner.poll():
                self._log_exit(attempt_id)
            left = [view.attempt_id for view in self._runner.views() if view.live]
            if not left:
                return
            if self._clock() >= deadline:
                log.error("attempts %s did not exit even after SIGKILL", left)
                return
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def _final_sync(self) -> None:
        """Report every held attempt once more (best effort, short timeout)."""
        if not self._runner.attempt_ids():
            return
        try:
            await asyncio.wait_for(self._link.sync(self._request(0.0)), FINAL_SYNC_TIMEOUT_S)
        except (LinkError, AuthError, TimeoutError) as err:
            log.warning("could not send the final report: %s", str(err) or type(err).__name__)


def run_agent(config: AgentConfig) -> int:
    """Run the agent until SIGTERM/SIGINT (then exit 0) or a fatal error (non-zero)."""
    try:
        backend = select_backend(config.gpus, config.name)
    except (ValueError, GpuBackendError) as err:
        log.error("%s", err)
        return EXIT_CONFIG
    try:
        link = Link(config.server, config.token, timeout_s=config.http_timeout_s, ca=config.ca)
    except ValueError as err:  # an unreadable CA file
        log.error("%s", err)
        return EXIT_CONFIG
    return asyncio.run(Agent(config, backend, link).run(handle_signals=True))
