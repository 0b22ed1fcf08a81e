"""Bad input is a 4xx that names the field and the reason, and changes nothing.

One table: each row is a request a client could send and what the server must answer.
Each runs against the same small world (a node, a finished job, a pending job) and
the whole visible state (row counts and every list endpoint) must be the same after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.factories import node_facts
from tests.integration.api.harness import JOBS, NODES, QUEUES, SYNC, Api, sync_body

ANY = object()  # the field is not checked
REPR_NOISE = ("Traceback", " object at 0x", "Error(", "[type=", "input_value", "{'", "['", "\\n")
BIG = 2**63  # past a 64-bit column on either backend
INT4 = 2**31  # past a 32-bit INTEGER column (PostgreSQL)
NODE = "n1"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # may name {done} (a cancelled job) and {pending} (a pending job)
    status: int
    code: str
    field: Any
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def job(**fields: Any) -> dict[str, Any]:
    return {"command": ["python", "train.py"], **fields}


def node(**fields: Any) -> dict[str, Any]:
    return {"name": "n2", "hostname": "n2.example", "cpus": 8, "memory_total_mib": 1024, **fields}


def gpu(**fields: Any) -> dict[str, Any]:
    facts = {"index": 0, "uuid": "GPU-x", "name": "NVIDIA L4", "gpu_type": "L4"}
    return {**facts, "memory_total_mib": 24_000, **fields}


def agent_sync(**fields: Any) -> dict[str, Any]:
    return {**sync_body(node_facts(NODE, 4)), **fields}


def report(**fields: Any) -> dict[str, Any]:
    return {"attempt_id": 1, "state": "running", **fields}


INVALID = "invalid_request"


def spec(name: str, field: Any, body: Any, code: str = INVALID, **kw: Any) -> Case:
    """A submitted job spec that must be refused with 422."""
    return Case(name, "POST", JOBS, 422, code, field, json=body, **kw)


def sync_case(name: str, field: str, body: Any, **kw: Any) -> Case:
    """An agent sync that must be refused with 422."""
    return Case(name, "POST", SYNC, 422, INVALID, field, json=body, **kw)


def query(name: str, path: str, field: str, **params: Any) -> Case:
    """A GET whose query must be refused with 422."""
    return Case(name, "GET", path, 422, INVALID, field, params=params)


PENDING_LOGS = f"{JOBS}/{{pending}}/logs"
JSON = {"Content-Type": "application/json"}
CASES = [
    # -- job specs ------------------------------------------------------------
    spec("spec-unknown-field", "gpus", job(gpus=2)),
    spec("spec-unknown-nested-field", "resources.gpu", job(resources={"gpu": 1})),
    spec("spec-negative-gpus", "resources.gpus", job(resources={"gpus": -1})),
    spec("spec-zero-nodes", "resources.nodes", job(resources={"nodes": 0})),
    spec("spec-multi-node-without-gpus", ANY, job(resources={"gpus": 0, "nodes": 2})),
    spec("spec-bad-size", "resources.gpu_memory_mib", job(resources={"gpu_memory_mib": "lots"})),
    spec("spec-bad-duration", "time_limit_s", job(time_limit_s="5 parsecs")),
    spec("spec-reserved-env-corral", "env", job(env={"CORRAL_JOB_ID": "7"})),
    spec("spec-reserved-env-cuda", "env", job(env={"CUDA_VISIBLE_DEVICES": "0,1"})),
    spec("spec-bad-env-name", "env", job(env={"1X": "y"})),
    spec("spec-no-command", "command", {}),
    spec("spec-empty-command", "command", job(command=[])),
    spec("spec-blank-argv0", "command", job(command=[""])),
    spec("spec-blank-command", "command", job(command="  ")),
    spec("spec-relative-workdir", "workdir", job(workdir="data/run")),
    spec("spec-priority-too-high", "priority", job(priority=1001)),
    spec("spec-malformed-json", None, None, content=b'{"command": ["python"', headers=JSON),
    spec("spec-body-is-a-list", None, [job()]),
    spec("spec-body-is-a-string", None, "python train.py"),
    spec("spec-empty-idempotency-key", "idempotency-key", job(), headers={"Idempotency-Key": ""}),
    spec("spec-unknown-queue", "queue", job(queue="nope"), "unknown_queue"),
    spec("spec-too-many-gpus", "resources", job(resources={"gpus": 8}), "unsatisfiable"),
    spec("spec-absent-gpu-type", "resources", job(resources={"gpu_type": "H100"}), "unsatisfiable"),
    spec("spec-too-many-nodes", "resources", job(resources={"nodes": 2}), "unsatisfiable"),
    # -- job ids and queries ------------------------------------------------------
    Case("show-missing", "GET", f"{JOBS}/999", 404, "not_found", "job_id"),
    Case("cancel-missing", "POST", f"{JOBS}/999/cancel", 404, "not_found", "job_id"),
    Case("logs-missing", "GET", f"{JOBS}/999/logs", 404, "not_found", "job_id"),
    Case("logs-no-such-attempt", "GET", PENDING_LOGS, 404, "not_found", "attempt",
         params={"attempt": 7}),
    Case("cancel-finished", "POST", f"{JOBS}/{{done}}/cancel", 409, "job_finished", "job_id"),
    query("show-id-not-an-integer", f"{JOBS}/abc", "job_id"),
    query("show-id-zero", f"{JOBS}/0", "job_id"),
    query("show-id-past-int4", f"{JOBS}/{INT4}", "job_id"),
    query("show-id-huge", f"{JOBS}/{10**30}", "job_id"),
    Case("cancel-id-past-int4", "POST", f"{JOBS}/{INT4}/cancel", 422, INVALID, "job_id"),
    Case("cancel-id-not-an-integer", "POST", f"{JOBS}/1.5/cancel", 422, INVALID, "job_id"),
    query("list-bad-status", JOBS, "status", status="done"),
    query("list-one-bad-status", JOBS, "status", status="pending,bogus"),
    query("list-limit-zero", JOBS, "limit", limit=0),
    query("list-limit-huge", JOBS, "limit", limit=100_000),
    query("list-limit-not-a-number", JOBS, "limit", limit="x"),
    query("list-before-id-zero", JOBS, "before_id", before_id=0),
    query("list-before-id-huge", JOBS, "before_id", before_id=2**40),
    query("logs-negative-offset", PENDING_LOGS, "offset", offset=-1),
    query("logs-zero-limit", PENDING_LOGS, "limit_bytes", limit_bytes=0),
    # -- queues ---------------------------------------------------------------
    Case("queue-cap-below-guarantee", "POST", QUEUES, 422, INVALID, ANY,
         json={"name": "team-a", "guaranteed_gpus": 4, "max_gpus": 2}),
    Case("queue-duplicate", "POST", QUEUES, 409, "conflict", "name", json={"name": "default"}),
    Case("queue-bad-name", "POST", QUEUES, 422, INVALID, "name", json={"name": "-team"}),
    Case("queue-zero-weight", "POST", QUEUES, 422, INVALID, "weight",
         json={"name": "a", "weight": 0}),
    Case("queue-unknown-field", "POST", QUEUES, 422, INVALID, "cap", json={"name": "a", "cap": 1}),
    Case("queue-huge-guarantee", "POST", QUEUES, 422, INVALID, "guaranteed_gpus",
         json={"name": "a", "guaranteed_gpus": BIG}),
    Case("queue-guarantee-past-int4", "POST", QUEUES, 422, INVALID, "guaranteed_gpus",
         json={"name": "a", "guaranteed_gpus": INT4}),
    Case("patch-unknown-queue", "PATCH", f"{QUEUES}/nope", 404, "not_found", "name", json={}),
    Case("patch-cap-below-guarantee", "PATCH", f"{QUEUES}/default", 422, INVALID, ANY,
         json={"guaranteed_gpus": 4, "max_gpus": 2}),
    Case("patch-negative-weight", "PATCH", f"{QUEUES}/default", 422, INVALID, "weight",
         json={"weight": -1}),
    Case("patch-rename", "PATCH", f"{QUEUES}/default", 422, INVALID, "name",
         json={"name": "other"}),
    Case("patch-body-is-a-list", "PATCH", f"{QUEUES}/default", 422, INVALID, None, json=[]),
    Case("show-unknown-queue", "GET", f"{QUEUES}/nope", 404, "not_found", "name"),
    # -- nodes ----------------------------------------------------------------
    Case("drain-unknown-node", "POST", f"{NODES}/nope/drain", 404, "not_found", "name"),
    Case("drain-unknown-node-with-body", "POST", f"{NODES}/nope/drain", 404, "not_found", "name",
         json={"reason": "maintenance"}),
    Case("undrain-unknown-node", "POST", f"{NODES}/nope/undrain", 404, "not_found", "name"),
    Case("show-unknown-node", "GET", f"{NODES}/nope", 404, "not_found", "name"),
    Case("drain-empty-reason", "POST", f"{NODES}/{NODE}/drain", 422, INVALID, "reason",
         json={"reason": ""}),
    Case("drain-unknown-field", "POST", f"{NODES}/{NODE}/drain", 422, INVALID, "why",
         json={"why": "x"}),
    # -- agent sync -----------------------------------------------------------
    sync_case("sync-bad-node-name", "node.name", agent_sync(node=node(name="-n2"))),
    sync_case("sync-node-name-with-slash", "node.name", agent_sync(node=node(name="rack/n2"))),
    sync_case("sync-negative-gpu-index", "node.gpus.0.index",
              agent_sync(node=node(gpus=[gpu(index=-1)]))),
    sync_case("sync-duplicate-gpu-index", "node.gpus",
              agent_sync(node=node(gpus=[gpu(), gpu(uuid="GPU-y")]))),
    sync_case("sync-duplicate-gpu-uuid", "node.gpus",
              agent_sync(node=node(gpus=[gpu(), gpu(index=1)]))),
    sync_case("sync-no-node", "node", {"attempts": []}),
    sync_case("sync-wait-too-long", "wait_s", agent_sync(wait_s=31)),
    sync_case("sync-attempt-id-zero", "attempts.0.attempt_id",
              agent_sync(attempts=[report(attempt_id=0)])),
    sync_case("sync-unknown-attempt-state", "attempts.0.state",
              agent_sync(attempts=[report(state="sleeping")])),
    sync_case("sync-log-not-base64", "attempts.0.log_data",
              agent_sync(attempts=[report(log_data="not base64!")])),
    sync_case("sync-huge-gpu-memory", "node.gpus.0.memory_total_mib",
              agent_sync(node=node(gpus=[gpu(memory_total_mib=BIG)]))),
    sync_case("sync-cpus-past-int4", "node.cpus", agent_sync(node=node(cpus=INT4))),
    # -- NUL characters (PostgreSQL text refuses them; no argv or path holds one) ----
    spec("nul-in-argv", "command", job(command=["python", "a\x00b"])),
    spec("nul-in-shell-command", "command", job(command="echo \x00")),
    spec("nul-in-env-value", "env", job(env={"SEED": "1\x00"})),
    spec("nul-in-workdir", "workdir", job(workdir="/data\x00")),
    spec("nul-in-gpu-type", "resources.gpu_type", job(resources={"gpu_type": "A\x00"})),
    Case("nul-in-type-quota", "POST", QUEUES, 422, INVALID, "type_quotas.0.gpu_type",
         json={"name": "a", "type_quotas": [{"gpu_type": "L4\x00"}]}),
    spec("nul-in-idempotency-key", "idempotency-key", job(), headers={"Idempotency-Key": "k\x00"}),
    Case("nul-in-drain-reason", "POST", f"{NODES}/{NODE}/drain", 422, INVALID, "reason",
         json={"reason": "disk\x00"}),
    Case("nul-in-node-path", "GET", f"{NODES}/n%00", 422, INVALID, "name"),
    Case("nul-in-drain-path", "POST", f"{NODES}/n%00/drain", 422, INVALID, "name"),
    Case("nul-in-undrain-path", "POST", f"{NODES}/n%00/undrain", 422, INVALID, "name"),
    Case("nul-in-queue-path", "GET", f"{QUEUES}/q%00", 422, INVALID, "name"),
    Case("nul-in-patch-path", "PATCH", f"{QUEUES}/q%00", 422, INVALID, "name", json={}),
    query("nul-in-queue-filter", JOBS, "queue", queue="default\x00"),
    Case("nul-in-name-filter", "GET", JOBS, 422, INVALID, "name", params={"name": "x\x00"}),
    sync_case("nul-in-hostname", "node.hostname", agent_sync(node=node(hostname="h\x00"))),
    sync_case("nul-in-gpu-uuid", "node.gpus.0.uuid",
              agent_sync(node=node(gpus=[gpu(uuid="\x00")]))),
    sync_case("nul-in-attempt-message", "attempts.0.message",
              agent_sync(attempts=[report(message="oom\x00")])),
    # -- bodies that are not UTF-8 text ---------------------------------------
    spec("spec-not-utf8", None, None, content=b'{"command": "\xff"}', headers=JSON),
    Case("queue-not-utf8", "POST", QUEUES, 422, INVALID, None, content=b"\xff", headers=JSON),
    Case("patch-not-utf8", "PATCH", f"{QUEUES}/default", 422, INVALID, None, content=b"\xfe",
         headers=JSON),
    Case("drain-not-utf8", "POST", f"{NODES}/{NODE}/drain", 422, INVALID, None,
         content=b"\xc3", headers=JSON),
    sync_case("sync-not-utf8", None, None, content=b"\x80\x81", headers=JSON),
]  # fmt: skip


def _world(api: Api) -> dict[str, int]:
    """Node n1 (4 GPUs), a job cancelled while pending, and a pending job."""
    api.sync(node_facts(NODE, 4))
    done = api.submit()["id"]
    api.ok("POST", f"{JOBS}/{done}/cancel")
    pending = api.submit(name="waiting")["id"]
    return {"done": done, "pending": pending}


def visible_state(api: Api) -> dict[str, Any]:
    """Row counts and what every list endpoint shows."""
    return {
        "rows": api.counts(),
        "jobs": api.ok("GET", JOBS),
        "queues": api.ok("GET", QUEUES),
        "nodes": api.ok("GET", NODES),
    }


def assert_readable(message: str) -> None:
    """One line a person can read: no traceback, no Python or pydantic reprs."""
    assert message, "empty message"
    assert message == message.strip() and "\n" not in message, message
    assert len(message) <= 300, message
    assert not any(noise in message for noise in REPR_NOISE), message


def _check(api: Api, case: Case, ids: dict[str, int]) -> None:
    before = visible_state(api)
    response = api.request(
        case.method,
        case.path.format(**ids),
        json=case.json,
        content=case.content,
        params=case.params,
        headers=case.headers,
    )
    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert error["code"] == case.code, error
    if case.field is not ANY:
        assert error["field"] == case.field, error
    assert_readable(error["message"])
    assert visible_state(api) == before, "the refused request changed something"


def test_bad_input_is_a_4xx_with_field_and_reason_and_changes_nothing(api: Api) -> None:
    """Every row of the table, one world (the rows refuse, so they cannot disturb it)."""
    ids = _world(api)
    failures = []
    for case in CASES:
        try:
            _check(api, case, ids)
        except AssertionError as err:
            failures.append(f"{case.id}: {err}")
    assert not failures, "\n".join(failures)


def test_a_field_name_with_a_line_break_is_quoted_on_one_line(api: Api) -> None:
    """The CLI prints the server's message as one ``error:`` line; a key sent with a
    line break in it must not split that line."""
    response = api.post(JOBS, json={**job(), "a\nb": 1})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == repr("a\nb")
    assert "\n" not in error["message"] and error["message"].startswith(repr("a\nb"))
