"""Self-fencing: an agent cut off from the server stops its attempts on its own.

The server declares a node lost ``node_timeout_s`` after its last sync, ends the
node's attempts and may start their jobs elsewhere at once. A partitioned agent's
processes would then run beside the new attempts. So an agent that has had no
successful sync for ``node_timeout_s`` minus the longest grace period of its live
attempts (``FENCE_MIN_S`` at least, so that a blip never costs work) stops every
attempt it holds: SIGTERM, the grace period, SIGKILL, done before the server's
timeout where the grace allows. It logs one line. The attempts are reported as
stopped by the agent once the server answers again; the server ignores the end of
a part it already declared lost, and requeues the others as preempted.

"No successful sync" counts from when the last request that got a reply was sent:
the server saw the node then or later, never earlier. So a long poll must come back
well before the fence: ``long_poll_s`` caps it at half the fence delay, and at half
the node timeout, so the server never declares a node lost while it waits on it.
Owns: the last node timeout the server gave (None, from an older server: never
fence) and when the last good sync was sent. Clock: monotonic, injected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from agents.runner import AttemptView, Runner

log = logging.getLogger("corral.agent.fencing")

FENCE_MIN_S = 5.0  # never fence sooner after the last good sync, whatever the grace
FENCE_REASON = "cut off from the server"


class Fence:
    """When to stop every attempt because the server has not been reached."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._node_timeout_s: float | None = None
        self._synced_at: float | None = None  # when the last request with a reply was sent
        self._fenced = False  # fenced in this outage already

    def synced(self, sent_at: float, node_timeout_s: float | None) -> None:
        """A request sent at ``sent_at`` got a reply carrying ``node_timeout_s``."""
        if self._synced_at is None or sent_at > self._synced_at:
            self._synced_at = sent_at
        self._node_timeout_s = node_timeout_s
        self._fenced = False

    def delay_s(self, graces_s: Iterable[float]) -> float | None:
        """How long without a sync before attempts with these grace periods are
        stopped; None: never (no node timeout known)."""
        if self._node_timeout_s is None:
            return None
        return max(self._node_timeout_s - max(graces_s, default=0.0), FENCE_MIN_S)

    def long_poll_s(self, wanted_s: float, views: Iterable[AttemptView]) -> float:
        """The long poll to ask for: ``wanted_s``, capped so that its reply (or its
        failure) comes well before the fence, and before the node timeout."""
        delay_s = self.delay_s(view.grace_period_s for view in views if view.live)
        if delay_s is None or self._node_timeout_s is None:
            return wanted_s
        return min(wanted_s, delay_s / 2, self._node_timeout_s / 2)

    def silent_s(self, views: Iterable[AttemptView]) -> float | None:
        """Seconds since the last good sync when attempts ``views`` must be fenced now;
        None when not (in time, nothing live, fenced in this outage already)."""
        graces_s = [view.grace_period_s for view in views if view.live]
        delay_s = self.delay_s(graces_s)
        if self._fenced or not graces_s or delay_s is None or self._synced_at is None:
            return None
        silent_s = self._clock() - self._synced_at
        return silent_s if silent_s >= delay_s else None

    def check(self, runner: Runner) -> list[int]:
        """Stop every live attempt of ``runner`` if it is time to; the ids stopped."""
        live = [view for view in runner.views() if view.live]
        silent_s = self.silent_s(live)
        if silent_s is None:
            return []
        self._fenced = True
        ids = [view.attempt_id for view in live]
        for view in live:
            runner.stop(view.attempt_id, view.grace_period_s, FENCE_REASON)
        log.warning(
            "no sync for %.1f s (node timeout %g s): stopping attempts %s before the server"
            " declares this node lost",
            silent_s,
            self._node_timeout_s,
            ", ".join(map(str, ids)),
        )
        return ids
