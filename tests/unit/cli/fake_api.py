"""An in-memory fake of the corral HTTP API (``docs/api.md``) for ``httpx.MockTransport``.

It keeps jobs, queues, nodes and logs as JSON dicts shaped like the views, records
every request, and can script what a job looks like on each successive GET, so the
client's polling (``wait``, ``logs -f``) runs without a clock or a server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import ValidationError

from scheduler.domain.spec import JobSpec, parse_array_indices

TOKEN = "test-token"
NOW = "2026-11-28T16:00:00Z"
Handler = Callable[[httpx.Request, re.Match[str]], httpx.Response]


def error(status: int, code: str, message: str, field_: str | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "field": field_}}
    return httpx.Response(status, json=body)


def invalid_spec(spec: Any, prefix: str = "") -> httpx.Response | None:
    """The server's 422 for a spec it refuses: the first problem, naming its field."""
    try:
        JobSpec.model_validate(spec)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        field_ = prefix + ".".join(str(part) for part in errors[0]["loc"])
        message = f"{field_}: {str(errors[0]['msg']).removeprefix('Value error, ')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        return error(422, "invalid_request", message, field_)
    return None


def job_dict(job_id: int, status: str = "pending", **extra: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": job_id,
        "name": f"job{job_id}",
        "queue": "default",
        "status": status,
        "priority": 0,
        "spec": {"command": ["python", "train.py"], "resources": {"gpus": 2, "nodes": 1}},
        "submitted_at": NOW,
        "updated_at": NOW,
        "attempts_count": 0,
    }
    job.update(extra)
    return job


def queue_dict(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "weight": 1.0, "guaranteed_gpus": 0, **extra}


def node_dict(name: str, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "name": name,
        "hostname": f"{name}.example",
        "state": "up",
        "cpus": 64,
        "memory_total_mib": 512 * 1024,
        "gpus_total": 8,
        "gpus_allocated": 2,
        "gpus_free": 6,
        "gpu_types": ["A100-80GB"],
        "last_seen_at": NOW,
    }
    node.update(extra)
    return node


def gpu_dict(index: int, **extra: Any) -> dict[str, Any]:
    return {
        "index": index,
        "uuid": f"GPU-{index:04d}",
        "name": "NVIDIA A100-SXM4-80GB",
        "gpu_type": "A100-80GB",
        "memory_total_mib": 81920,
        **extra,
    }


@dataclass
class FakeLog:
    """A log that grows by one piece per read; complete once all is out and ``ended``."""

    pieces: list[str]
    ended: bool = True
    revealed: int = 0

    def read(self, offset: int, limit: int | None) -> tuple[str, bool]:
        self.revealed = min(self.revealed + 1, len(self.pieces))
        text = "".join(self.pieces[: self.revealed]).encode()
        data = text[offset : None if limit is None else offset + limit]
        whole = self.revealed == len(self.pieces) and offset + len(data) >= len(text)
        return data.decode(), self.ended and whole


@dataclass
class FakeCorral:
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    scripts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    queues: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"default": queue_dict("default")}
    )
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[int, int], FakeLog] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    next_id: int = 1
    seen_keys: dict[str, int] = field(default_factory=dict)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add_job(self, status: str = "pending", **extra: Any) -> dict[str, Any]:
        job = job_dict(self.next_id, status, **extra)
        self.jobs[job["id"]] = job
        self.next_id += 1
        return job

    def script(self, job_id: int, *updates: dict[str, Any]) -> None:
        """On each GET of the job, apply the next update (the last one stays)."""
        self.scripts[job_id] = list(updates)

    def bodies(self, method: str, path: str) -> list[Any]:
        return [
            json.loads(r.content or b"null")
            for r in self.requests
            if r.method == method and r.url.path == path
        ]

    # -- the routes -----------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok", "version": "0.1.0", "database": "ok"})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return error(401, "unauthorized", "missing or unknown token")
        for method, pattern, handler in self.routes():
            match = re.fullmatch(pattern, path)
            if match and request.method == method:
                return handler(request, match)
        return error(404, "not_found", f"no route {request.method} {path}")

    def routes(self) -> list[tuple[str, str, Handler]]:
        api = "/api/v1"
        return [
            ("POST", f"{api}/jobs", self.submit),
            ("POST", f"{api}/jobs/array", self.submit_array),
            ("GET", f"{api}/jobs", self.list_jobs),
            ("GET", rf"{api}/jobs/(\d+)", self.get_job),
            ("POST", rf"{api}/jobs/(\d+)/cancel", self.cancel),
            ("GET", rf"{api}/jobs/(\d+)/logs", self.read_log),
            ("GET", f"{api}/queues", lambda r, m: self.ok({"queues": list(self.queues.values())})),
            ("POST", f"{api}/queues", self.create_queue),
            ("GET", rf"{api}/queues/([^/]+)", self.get_queue),
            ("PATCH", rf"{api}/queues/([^/]+)", self.update_queue),
            ("GET", f"{api}/nodes", lambda r, m: self.ok({"nodes": list(self.nodes.values())})),
            ("GET", rf"{api}/nodes/([^/]+)", self.get_node),
            ("POST", rf"{api}/nodes/([^/]+)/drain", self.drain),
            ("POST", rf"{api}/nodes/([^/]+)/undrain", self.undrain),
        ]

    @staticmethod
    def ok(body: Any, status: int = 200) -> httpx.Response:
        return httpx.Response(status, json=body)

    def submit(self, request: httpx.Request, _: re.Match[str]) -> httpx.Response:
        spec = json.loads(request.content)
        refused = invalid_spec(spec)
        if refused is not None:
            return refused
        if spec.get("queue", "default") not in self.queues:
            return error(422, "unknown_queue", f"no queue {spec['queue']!r}", "queue")
        key = request.headers.get("Idempotency-Key")
        if key in self.seen_keys:
            return self.ok(self.jobs[self.seen_keys[key]])
        name = spec.get("name") or "job"
        job = self.add_job(name=name, queue=spec.get("queue", "default"), spec=spec)
        if key:
            self.seen_keys[key] = job["id"]
        return self.ok(job, 201)

    def submit_array(self, request: httpx.Request, _: re.Match[str]) -> httpx.Response:
        body = json.loads(request.content)
        refused = invalid_spec(body["spec"], "spec.")
        if refused is not None:
            return refused
        try:
            indices = parse_array_indices(body["indices"])
        except ValueError as exc:
            return error(422, "invalid_request", str(exc), "indices")
        spec = body["spec"]
        name = spec.get("name") or "job"
        jobs = [self.add_job(name=name, array_index=index, spec=spec) for index in indices]
        ids = [job["id"] for job in jobs]
        return self.ok({"job_ids": ids, "array_id": ids[0], "created": True}, 201)

    def list_jobs(self, request: httpx.Request, _: re.Match[str]) -> httpx.Response:
        params = request.url.params
        jobs = sorted(self.jobs.values(), key=lambda j: -j["id"])
        if params.get("status"):
            jobs = [j for j in jobs if j["status"] in params["status"].split(",")]
        if params.get("before_id"):
            jobs = [j for j in jobs if j["id"] < int(params["before_id"])]
        limit = int(params.get("limit", 100))
        page = jobs[:limit]
        more = len(jobs) > limit
        return self.ok({"jobs": page, "next_before_id": page[-1]["id"] if more else None})

    def get_job(self, _: httpx.Request, match: re.Match[str]) -> httpx.Response:
        job_id = int(match.group(1))
        if job_id not in self.jobs:
            return error(404, "not_found", f"no job {job_id}")
        script = self.scripts.get(job_id)
        if script:
            self.jobs[job_id].update(script.pop(0) if len(script) > 1 else script[0])
        return self.ok(self.jobs[job_id])

    def cancel(self, _: httpx.Request, match: re.Match[str]) -> httpx.Response:
        job = self.jobs.get(int(match.group(1)))
        if job is None:
            return error(404, "not_found", f"no job {match.group(1)}")
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return error(409, "job_finished", f"job {job['id']} already ended ({job['status']})")
        job["status"] = "cancelled" if job["status"] == "pending" else "stopping"
        return self.ok(job)

    def read_log(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        job = self.jobs.get(int(match.group(1)))
        if job is None or not job["attempts_count"]:
            return error(404, "not_found", "no such attempt")
        params = request.url.params
        attempt = int(params.get("attempt", job["attempts_count"]))
        log = self.logs.get((job["id"], attempt))
        if log is None:
            return error(404, "not_found", f"job {job['id']} has no attempt {attempt}")
        offset = int(params.get("offset", 0))
        limit = int(params["limit_bytes"]) if "limit_bytes" in params else None
        data, complete = log.read(offset, limit)
        body = {
            "job_id": job["id"],
            "attempt": attempt,
            "offset": offset,
            "next_offset": offset + len(data.encode()),
            "data": data,
            "complete": complete,
        }
        return self.ok(body)

    def create_queue(self, request: httpx.Request, _: re.Match[str]) -> httpx.Response:
        spec = json.loads(request.content)
        if spec["name"] in self.queues:
            return error(409, "conflict", f"queue {spec['name']} exists already")
        self.queues[spec["name"]] = queue_dict(**spec)
        return self.ok(self.queues[spec["name"]], 201)

    def get_queue(self, _: httpx.Request, match: re.Match[str]) -> httpx.Response:
        queue = self.queues.get(match.group(1))
        return self.ok(queue) if queue else error(404, "not_found", "no such queue")

    def update_queue(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        queue = self.queues.get(match.group(1))
        if queue is None:
            return error(404, "not_found", "no such queue")
        queue.update(json.loads(request.content))
        return self.ok(queue)

    def get_node(self, _: httpx.Request, match: re.Match[str]) -> httpx.Response:
        node = self.nodes.get(match.group(1))
        return self.ok(node) if node else error(404, "not_found", f"no node {match.group(1)}")

    def drain(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        node = self.nodes[match.group(1)]
        reason = json.loads(request.content or b"{}").get("reason", "drained by an operator")
        node.update(state="drained", drain_reason=reason)
        return self.ok(node)

    def undrain(self, _: httpx.Request, match: re.Match[str]) -> httpx.Response:
        node = self.nodes[match.group(1)]
        node.update(state="up", drain_reason=None)
        return self.ok(node)
