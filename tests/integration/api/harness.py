"""Drive a corral server over HTTP in one process: the app, its Runtime and fake agents.

``Api`` wraps a ``TestClient`` on ``create_app(rt, run_loops_in_app=False)``: nothing
runs by itself, so a test calls ``cycle()`` where the server's loop would run a
scheduling pass, and ``sync()`` where an agent would sync (``wait_s=0`` unless the
test is about the long poll). ``counts()`` reads the rows a refused request must not
change, straight from the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from scheduler.cycle import CycleReport, run_cycle
from scheduler.domain.sync import (
    AttemptLaunch,
    AttemptReport,
    GpuSample,
    NodeFacts,
    SyncReply,
    SyncRequest,
)
from scheduler.runtime import Runtime
from scheduler.services.agents import flush_readings, wait_written
from scheduler.store.models import (
    AllocationRow,
    AttemptRow,
    JobEventRow,
    JobRow,
    NodeRow,
    QueueRow,
)
from tests.factories import job_spec, report

JOBS = "/api/v1/jobs"
QUEUES = "/api/v1/queues"
NODES = "/api/v1/nodes"
SYNC = "/api/v1/agent/sync"

COUNTED = {
    "jobs": JobRow,
    "job_events": JobEventRow,
    "queues": QueueRow,
    "attempts": AttemptRow,
    "allocations": AllocationRow,
    "nodes": NodeRow,
}


def spec_body(gpus: int = 1, nodes: int = 1, **fields: Any) -> dict[str, Any]:
    """A valid JobSpec as JSON (``tests.factories.job_spec`` defaults)."""
    return job_spec(gpus, nodes, **fields).model_dump(mode="json", exclude_unset=True)


def sync_body(
    facts: NodeFacts,
    *reports: AttemptReport,
    wait_s: float = 0.0,
    gpu_samples: Iterable[GpuSample] = (),
) -> dict[str, Any]:
    req = SyncRequest(
        node=facts, attempts=list(reports), gpu_samples=list(gpu_samples), wait_s=wait_s
    )
    return req.model_dump(mode="json")


@dataclass
class Api:
    app: FastAPI
    http: TestClient
    rt: Runtime
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def ok(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """The JSON reply of a request that must succeed with ``expect``."""
        response = self.request(method, path, **kwargs)
        assert response.status_code == expect, (method, path, response.text)
        return response.json()

    def submit(self, gpus: int = 1, nodes: int = 1, **fields: Any) -> dict[str, Any]:
        """Submit a job (factory defaults); the 201 reply."""
        return self.ok("POST", JOBS, 201, json=spec_body(gpus, nodes, **fields))

    def job(self, job_id: int) -> dict[str, Any]:
        return self.ok("GET", f"{JOBS}/{job_id}")

    def sync(
        self,
        facts: NodeFacts,
        *reports: AttemptReport,
        wait_s: float = 0.0,
        gpu_samples: Iterable[GpuSample] = (),
    ) -> SyncReply:
        """Sync as an agent; what a quick sync leaves to write (last seen, readings) is
        written before this returns, as the server's flusher would within a second, and
        so are reports whose write went on behind the reply."""
        body = sync_body(facts, *reports, wait_s=wait_s, gpu_samples=gpu_samples)
        reply = SyncReply.model_validate(self.ok("POST", SYNC, json=body))
        wait_written(self.rt)
        flush_readings(self.rt)
        return reply

    def cycle(self) -> CycleReport:
        return run_cycle(self.rt)

    def running_on(self, facts: NodeFacts) -> AttemptLaunch:
        """A new job placed on ``facts``' node, its part reported running by the agent."""
        self.sync(facts)
        self.submit()
        self.cycle()
        (launch,) = self.sync(facts).run
        self.sync(facts, report(launch.attempt_id))
        return launch

    def counts(self) -> dict[str, int]:
        with self.rt.db.read() as session:
            return {
                name: int(session.scalar(select(func.count()).select_from(row)) or 0)
                for name, row in COUNTED.items()
            }
