"""The whole path over HTTP: agents register by sync, jobs are submitted, a cycle places
them, each agent's sync reply lists exactly its attempts, and reports of running and
exited attempts end the jobs and free their GPUs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scheduler.domain.sync import AttemptLaunch, NodeFacts, SyncReply
from tests.factories import exited, node_facts, report
from tests.integration.api.harness import JOBS, NODES, Api

BIG = node_facts("big", 4)  # 4 x A100-80GB
SMALL = node_facts("small", 2, gpu_type="L4", memory_mib=24_576)
NODES_BY_NAME = {BIG.name: BIG, SMALL.name: SMALL}


def live_jobs(api: Api) -> list[dict[str, Any]]:
    page = api.ok("GET", JOBS, params={"status": "starting,running,stopping"})
    return [api.job(j["id"]) for j in page["jobs"]]


def sync_all(api: Api, **reports: list[Any]) -> dict[str, SyncReply]:
    return {name: api.sync(facts, *reports.get(name, [])) for name, facts in NODES_BY_NAME.items()}


def check_launches(api: Api, replies: dict[str, SyncReply], checkpoints: Path) -> None:
    """Each node is told to run exactly the live attempts that hold its GPUs, with them."""
    jobs = live_jobs(api)
    for name, reply in replies.items():
        expected = {j["attempts"][-1]["id"]: j for j in jobs if name in j["nodes"]}
        assert {launch.attempt_id for launch in reply.run} == set(expected), name
        used: list[int] = []
        for launch in reply.run:
            check_launch(name, launch, expected[launch.attempt_id], checkpoints)
            used += launch.gpu_indices
        assert len(used) == len(set(used)), f"{name}: a GPU is given twice: {used}"
        assert reply.stop == []


def check_launch(node: str, launch: AttemptLaunch, job: dict[str, Any], checkpoints: Path) -> None:
    attempt = job["attempts"][-1]
    indices = sorted(g["index"] for g in job["gpus"] if g["node"] == node)
    rank = job["nodes"].index(node)
    assert (launch.job_id, launch.attempt_number) == (job["id"], attempt["number"])
    assert launch.gpu_indices == indices
    assert launch.argv == job["spec"]["command"]
    assert (launch.node_rank, launch.num_nodes) == (rank, len(job["nodes"]))
    corral = {k: v for k, v in launch.env.items() if k.startswith("CORRAL_")}
    assert corral["CORRAL_JOB_ID"] == str(job["id"])
    assert corral["CORRAL_ATTEMPT"] == str(attempt["number"])
    assert corral["CORRAL_NODE_RANK"] == str(rank)
    assert corral["CORRAL_NUM_NODES"] == str(len(job["nodes"]))
    assert corral["CORRAL_CHECKPOINT_DIR"] == str(checkpoints / str(job["id"]))
    assert launch.env["CUDA_VISIBLE_DEVICES"] == ",".join(str(i) for i in indices)
    for key, value in job["spec"]["env"].items():
        assert launch.env[key] == value


def run_of(reply: SyncReply, job_id: int) -> AttemptLaunch:
    return next(launch for launch in reply.run if launch.job_id == job_id)


def node_gpus_allocated(api: Api) -> dict[str, int]:
    return {n["name"]: n["gpus_allocated"] for n in api.ok("GET", NODES)["nodes"]}


def status_changes(job: dict[str, Any]) -> list[str | None]:
    return [e["new_status"] for e in job["events"] if e["kind"] == "status"]


def test_a_gang_job_runs_on_two_nodes_and_ends(api: Api, tmp_path: Path) -> None:
    sync_all(api)
    gang = api.submit(gpus=2, nodes=2, name="gang", env={"NCCL_DEBUG": "INFO"})["id"]
    assert api.cycle().placed == 1
    replies = sync_all(api)
    check_launches(api, replies, tmp_path / "checkpoints")
    job = api.job(gang)
    assert job["status"] == "starting"
    assert sorted(job["nodes"]) == ["big", "small"] and len(job["gpus"]) == 4
    head = job["nodes"][0]
    assert replies[head].run[0].env["CORRAL_HEAD_HOST"] == NODES_BY_NAME[head].hostname
    attempt = job["attempts"][0]["id"]

    sync_all(api, big=[report(attempt)], small=[report(attempt)])
    job = api.job(gang)
    assert (job["status"], job["attempts"][0]["status"]) == ("running", "running")
    assert job["started_at"] is not None

    sync_all(api, big=[exited(attempt, 0)], small=[report(attempt)])
    assert api.job(gang)["status"] == "running"  # one part of the gang still runs
    assert node_gpus_allocated(api) == {"big": 0, "small": 2}
    replies = sync_all(api, small=[exited(attempt, 0)])
    assert all(reply.run == [] for reply in replies.values())
    job = api.job(gang)
    outcome = (job["status"], job["exit_code"], job["termination_reason"])
    assert outcome == ("succeeded", 0, "succeeded")
    assert job["gpus"] == [] and job["ended_at"] is not None
    assert status_changes(job) == ["starting", "running", "succeeded"]
    assert node_gpus_allocated(api) == {"big": 0, "small": 0}


def test_jobs_of_1_2_and_4_gpus_and_a_gpu_type_run_exit_and_free_their_gpus(
    api: Api, tmp_path: Path
) -> None:
    sync_all(api)
    one = api.submit(gpus=1, name="one", env={"FOO": "bar"})["id"]
    two = api.submit(gpus=2, name="two")["id"]
    typed = api.submit(gpus=1, name="typed", resources={"gpu_type": "L4"})["id"]
    four = api.submit(gpus=4, name="four")["id"]
    assert api.cycle().placed == 3
    waiting = api.job(four)
    assert (waiting["status"], waiting["wait_reason"]) == ("pending", "insufficient_gpus")
    assert waiting["wait_message"]
    assert api.job(typed)["nodes"] == ["small"]

    replies = sync_all(api)
    check_launches(api, replies, tmp_path / "checkpoints")
    attempts = {j: api.job(j)["attempts"][0]["id"] for j in (one, two, typed)}
    where = {j: api.job(j)["nodes"][0] for j in attempts}

    def reports(make: Any) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for job_id, attempt in attempts.items():
            out.setdefault(where[job_id], []).append(make(job_id, attempt))
        return out

    sync_all(api, **reports(lambda _, attempt: report(attempt)))
    assert {api.job(j)["status"] for j in attempts} == {"running"}

    codes = {one: 0, two: 3, typed: 0}
    replies = sync_all(api, **reports(lambda job_id, attempt: exited(attempt, codes[job_id])))
    assert all(reply.run == [] for reply in replies.values())
    for job_id, code in codes.items():
        job = api.job(job_id)
        status = "succeeded" if code == 0 else "failed"
        outcome = (job["status"], job["exit_code"], job["termination_reason"])
        assert outcome == (status, code, status)
        assert job["gpus"] == [] and job["attempts_count"] == 1
        (attempt,) = job["attempts"]
        ended = (attempt["status"], attempt["exit_code"], attempt["reason"])
        assert ended == ("ended", code, status)
        assert attempt["started_at"] and attempt["ended_at"] and attempt["gpus"]
        assert status_changes(job) == ["starting", "running", status]
        assert job["events"][0]["kind"] == "submitted"
    assert node_gpus_allocated(api) == {"big": 0, "small": 0}

    # the 4-GPU job gets the GPUs the others gave back
    assert api.cycle().placed == 1
    replies = sync_all(api)
    check_launches(api, replies, tmp_path / "checkpoints")
    launch = run_of(replies["big"], four)
    assert launch.gpu_indices == [0, 1, 2, 3]
    sync_all(api, big=[exited(launch.attempt_id, 0)])  # done before "running" was reported
    job = api.job(four)
    assert (job["status"], job["exit_code"]) == ("succeeded", 0)
    assert node_gpus_allocated(api) == {"big": 0, "small": 0}


def test_a_cancel_stops_a_running_attempt_through_its_agent(api: Api) -> None:
    facts: NodeFacts = BIG
    api.sync(facts)
    job_id = api.submit(gpus=2)["id"]
    api.cycle()
    (launch,) = api.sync(facts).run
    api.sync(facts, report(launch.attempt_id))
    cancelled = api.ok("POST", f"{JOBS}/{job_id}/cancel")
    assert cancelled["status"] == "stopping"
    reply = api.sync(facts, report(launch.attempt_id))
    assert reply.run == []
    assert [(s.attempt_id, s.reason) for s in reply.stop] == [(launch.attempt_id, "cancelled")]
    api.sync(facts, exited(launch.attempt_id, -15, stopped_by_agent=True))
    job = api.job(job_id)
    assert (job["status"], job["termination_reason"]) == ("cancelled", "cancelled")
    assert job["gpus"] == []
    assert node_gpus_allocated(api)["big"] == 0


def test_a_node_cannot_report_on_another_nodes_attempt(api: Api) -> None:
    sync_all(api)
    job_id = api.submit(gpus=1, resources={"gpu_type": "L4"})["id"]
    api.cycle()
    (launch,) = api.sync(SMALL).run
    reply = api.sync(BIG, exited(launch.attempt_id, 1, log=(0, b"forged\n")))
    assert reply.log_acks == {} and reply.run == []
    job = api.job(job_id)
    assert (job["status"], job["nodes"]) == ("starting", ["small"])
    assert api.ok("GET", f"{JOBS}/{job_id}/logs")["data"] == ""
    assert [launch.attempt_id] == [r.attempt_id for r in api.sync(SMALL).run]
