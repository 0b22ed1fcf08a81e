"""Queues (create, list, show, patch) and nodes (show with samples, drain, undrain)."""

from __future__ import annotations

from typing import Any

from scheduler.domain.sync import GpuSample, HostSample, SyncReply, SyncRequest
from tests.factories import node_facts, report
from tests.integration.api.harness import JOBS, NODES, QUEUES, SYNC, Api

A100 = node_facts("a100", 4)
L4 = node_facts("l4", 2, gpu_type="L4", memory_mib=24_576)


def queue(api: Api, name: str) -> dict[str, Any]:
    return api.ok("GET", f"{QUEUES}/{name}")


def node(api: Api, name: str) -> dict[str, Any]:
    return api.ok("GET", f"{NODES}/{name}")


QUEUE_FIELDS = ("name", "weight", "guaranteed_gpus", "borrow_limit_gpus", "max_gpus")


def limits(info: dict[str, Any]) -> dict[str, Any]:
    """The fields a queue spec sets (a view may carry more: counts, shares, usage)."""
    return {k: info[k] for k in QUEUE_FIELDS}


def test_a_queue_is_created_listed_shown_and_patched(api: Api) -> None:
    spec = {"name": "team-a", "weight": 2.5, "guaranteed_gpus": 2, "max_gpus": 6}
    created = api.ok("POST", QUEUES, 201, json=spec)
    assert limits(created) == {**spec, "borrow_limit_gpus": None}
    assert (created["pending"], created["running"], created["allocated_gpus"]) == (0, 0, 0)
    assert [q["name"] for q in api.ok("GET", QUEUES)["queues"]] == ["default", "team-a"]
    assert limits(queue(api, "team-a")) == limits(created)

    def patch(body: dict[str, Any]) -> dict[str, Any]:
        return limits(api.ok("PATCH", f"{QUEUES}/team-a", json=body))

    assert patch({"weight": 4}) == {**limits(created), "weight": 4}
    assert patch({}) == {**limits(created), "weight": 4}
    cleared = patch({"max_gpus": None})
    assert cleared == {**limits(created), "weight": 4, "max_gpus": None}
    assert limits(queue(api, "team-a")) == cleared
    assert patch({"borrow_limit_gpus": 3}) == {**cleared, "borrow_limit_gpus": 3}
    assert limits(queue(api, "default"))["max_gpus"] is None  # another queue is untouched


def test_a_queue_counts_its_jobs_and_gpus(api: Api) -> None:
    api.ok("POST", QUEUES, 201, json={"name": "team-a"})
    api.sync(A100)
    placed = api.submit(gpus=3, queue="team-a")["id"]
    api.submit(gpus=3, queue="team-a")
    api.submit(gpus=1)
    api.cycle()
    assert api.job(placed)["status"] == "starting"
    team = queue(api, "team-a")
    assert (team["pending"], team["running"], team["allocated_gpus"]) == (1, 1, 3)
    default = queue(api, "default")
    assert (default["pending"], default["running"], default["allocated_gpus"]) == (0, 1, 1)


def test_a_drained_node_gets_no_new_placement_until_undrained(api: Api) -> None:
    api.sync(A100)
    api.sync(L4)
    drained = api.ok("POST", f"{NODES}/a100/drain", json={"reason": "NVLink errors"})
    assert (drained["state"], drained["drain_reason"]) == ("drained", "NVLink errors")
    typed = api.submit(gpus=1, resources={"gpu_type": "A100-80GB"})["id"]
    four = api.submit(gpus=4)["id"]
    api.cycle()
    for job_id in (typed, four):
        job = api.job(job_id)
        assert (job["status"], job["wait_reason"]) == ("pending", "gpu_type_unavailable")
        assert job["wait_message"]
    reply = api.sync(A100)
    assert (reply.node_state, reply.run) == ("drained", [])

    undrained = api.ok("POST", f"{NODES}/a100/undrain")
    assert (undrained["state"], undrained["drain_reason"]) == ("up", None)
    assert api.cycle().placed == 1  # both fit a100 only, one after the other
    placed = [j for j in (typed, four) if api.job(j)["status"] == "starting"]
    assert len(placed) == 1 and api.job(placed[0])["nodes"] == ["a100"]
    assert [launch.job_id for launch in api.sync(A100).run] == placed


def test_a_drained_node_keeps_its_running_attempts(api: Api) -> None:
    api.sync(L4)
    job_id = api.submit(gpus=1)["id"]
    api.cycle()
    (launch,) = api.sync(L4).run
    api.sync(L4, report(launch.attempt_id))
    drained = api.ok("POST", f"{NODES}/l4/drain")  # no body: the default reason
    assert (drained["state"], drained["drain_reason"]) == ("drained", "drained by an operator")
    assert api.ok("POST", f"{NODES}/l4/drain", json={})["state"] == "drained"
    reply = api.sync(L4, report(launch.attempt_id))
    assert [r.attempt_id for r in reply.run] == [launch.attempt_id] and reply.stop == []
    other = api.submit(gpus=1)["id"]
    api.cycle()
    assert api.job(other)["status"] == "pending"
    assert api.job(job_id)["status"] == "running"
    assert node(api, "l4")["gpus_allocated"] == 1


def test_a_node_shows_its_gpus_from_the_latest_samples(api: Api) -> None:
    samples = [
        GpuSample(index=0, utilization_pct=87.5, memory_used_mib=40_000, temperature_c=71.0,
                  power_w=312.5, ecc_errors=0),
        GpuSample(index=1, utilization_pct=12.5, memory_used_mib=1_024, temperature_c=40.0,
                  power_w=80.0, ecc_errors=2, healthy=False),
    ]  # fmt: skip
    host = HostSample(cpu_pct=35.0, memory_used_mib=65_536, load1=4.0)
    api.sync(A100)
    job_id = api.submit(gpus=1)["id"]
    api.cycle()
    body = SyncRequest(node=A100, host=host, gpu_samples=samples).model_dump(mode="json")
    reply = SyncReply.model_validate(api.ok("POST", SYNC, json=body))
    (launch,) = reply.run

    shown = node(api, "a100")
    assert (shown["name"], shown["hostname"], shown["state"]) == ("a100", "a100.example", "up")
    assert (shown["cpus"], shown["memory_total_mib"]) == (A100.cpus, A100.memory_total_mib)
    assert (shown["gpus_total"], shown["gpus_allocated"], shown["gpus_free"]) == (4, 1, 3)
    assert shown["gpu_types"] == ["A100-80GB"]
    assert (shown["cpu_pct"], shown["memory_used_mib"]) == (35.0, 65_536)
    assert shown["utilization_pct"] == 50.0  # the mean over the GPUs that reported one
    gpus = {g["index"]: g for g in shown["gpus"]}
    assert sorted(gpus) == [0, 1, 2, 3]
    for sample in samples:
        gpu = gpus[sample.index]
        facts = A100.gpus[sample.index]
        assert (gpu["uuid"], gpu["name"], gpu["gpu_type"]) == (facts.uuid, facts.name, "A100-80GB")
        assert gpu["memory_total_mib"] == facts.memory_total_mib
        for field in ("utilization_pct", "memory_used_mib", "temperature_c", "power_w"):
            assert gpu[field] == getattr(sample, field), field
        assert (gpu["ecc_errors"], gpu["healthy"]) == (sample.ecc_errors, sample.healthy)
    assert gpus[2]["utilization_pct"] is None and gpus[2]["healthy"] is True
    held = [g for g in gpus.values() if g["job_id"] is not None]
    assert [(g["index"], g["job_id"], g["attempt_id"]) for g in held] == [
        (launch.gpu_indices[0], job_id, launch.attempt_id)
    ]
    listed = {n["name"]: n for n in api.ok("GET", NODES)["nodes"]}
    assert listed["a100"]["gpus"] is None  # per-GPU detail only from show
    assert listed["a100"]["gpus_allocated"] == 1
    assert api.ok("GET", JOBS, params={"status": "starting"})["jobs"][0]["id"] == job_id
