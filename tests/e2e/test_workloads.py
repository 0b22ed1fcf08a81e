"""End to end: the BERT and ResNet workloads in per-job Ray clusters across two agents.

A real server and two agents (one simulated GPU each) on this machine. A 2-node
``ray: true`` job trains; once it has checkpointed, its first attempt is taken away:
- BERT: the agent of its rank-1 node is SIGKILLed. The server declares the node lost,
  ends the attempt ``node_lost`` and stops the head, whose workload checkpoints on the
  stop; the orphaned rank-1 supervisor leaves when the head marks the attempt ended.
  The agent comes back (its sweep stops whatever its previous life left);
- ResNet: the test asks for the stop in the database as a reclaiming policy would
  (``request_stop(..., PREEMPTED)``: the policy's reclaim is not what is tested here).
Either way the job is requeued, runs again as attempt 2, resumes from the checkpoint
(``progress.json``: ``resumed_from_step > 0``) and ends with held-out accuracy clearly
above chance. Batch inference of the trained
ResNet then writes one prediction per held-out input. At the end no Ray process that
any attempt started is alive: each node's supervisor lists the pids (and start times)
of the Ray processes it started in ``attempts/<id>/ray.json``, and no process on the
machine carries the job's checkpoint dir in its environment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

pytest.importorskip("torch")
pytest.importorskip("ray")

from scheduler.client import CorralClient, is_terminal
from scheduler.domain.spec import JobSpec, Resources
from scheduler.domain.status import TerminationReason
from scheduler.domain.views import JobView
from scheduler.localcluster import LocalCluster
from scheduler.store.attempts import request_stop
from scheduler.store.db import Database, sqlite_url
from scheduler.store.models import AttemptRow, utcnow
from workloads.progress import read_progress

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

T = TypeVar("T")
NODES = ("node-a", "node-b")
GPUS = "sim:1xA100-80GB"
PY = sys.executable
BERT_ARGS = [
    "--data=rotten_tomatoes", "--limit=4000", "--seq-len=32", "--vocab-size=1000",
    "--hidden=64", "--layers=1", "--heads=2", "--lr=3e-3", "--epochs=6",
    "--checkpoint-every=10",
]  # fmt: skip
RESNET_ARGS = ["--data=digits", "--depth=18", "--width=16", "--epochs=5", "--checkpoint-every=10"]


def wait_for(check: Callable[[], T | None], what: str, timeout_s: float = 120.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


# A node is lost when it has not synced for NODE_TIMEOUT_S, counted from when a sync
# arrives; the agent's fence counts from when its last answered sync was sent. An idle
# agent's long poll is kept short so that neither mistakes a held poll for silence.
NODE_TIMEOUT_S = "8"
AGENT_ARGS = ("--long-poll-s", "2")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(
        tmp_path / "cluster",
        server_args=("--node-timeout-s", NODE_TIMEOUT_S, "--retry-backoff-s", "0.5"),
        env={"PYTHONUNBUFFERED": "1"},
    )
    with local:
        local.start_server()
        for name in NODES:
            local.start_agent(name, GPUS, *AGENT_ARGS)
        local.wait_for_nodes(list(NODES))
        yield local


def checkpoint_dir(cluster: LocalCluster, job_id: int) -> Path:
    return cluster.data_dir / "server" / "checkpoints" / str(job_id)


def ray_job(name: str, module: str, args: list[str], grace_s: int = 60) -> JobSpec:
    return JobSpec(
        name=name,
        command=[PY, "-m", module, *args],
        resources=Resources(gpus=1, nodes=2),
        ray=True,
        grace_period_s=grace_s,
    )


def tails(cluster: LocalCluster, lines: int = 15) -> str:
    """The last lines of the server's, the agents' and every attempt's log."""
    logs = sorted((cluster.data_dir / "logs").glob("*.log"))
    logs += sorted((cluster.data_dir / "agents").glob("*/attempts/*/output.log"))
    parts = []
    for log in logs:
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.relative_to(cluster.data_dir)}\n" + "\n".join(text))
    return "\n".join(parts)


def wait_for_checkpoint(cluster: LocalCluster, client: CorralClient, job_id: int) -> JobView:
    """The running job once its first attempt has saved a checkpoint (step >= 10).

    Fails at once if the job ends first, and with every log's tail if none comes."""
    ckpt = checkpoint_dir(cluster, job_id)

    def saved() -> bool:
        progress = read_progress(ckpt)
        if progress is not None and (progress.last_checkpoint_step or 0) >= 10:
            return True
        status = client.get_job(job_id).status
        assert not is_terminal(status), f"job {job_id} ended {status}:\n{tails(cluster)}"
        return False

    try:
        wait_for(saved, "the first checkpoint", 300)  # ~25 s on an idle machine
    except AssertionError as err:
        raise AssertionError(f"{err}\n{tails(cluster)}") from None
    job = client.get_job(job_id)
    assert job.attempts and job.status == "running", job.status
    return job


def lose_rank_1(cluster: LocalCluster, client: CorralClient, job_id: int) -> None:
    """SIGKILL the job's rank-1 agent; once its node is lost, start the agent again."""
    job = wait_for_checkpoint(cluster, client, job_id)
    assert job.attempts is not None
    worker_node = job.attempts[0].nodes[1]
    cluster.agents[worker_node].kill()
    wait_for(
        lambda: (
            (j := client.get_job(job_id)).attempts is not None and j.attempts[0].reason is not None
        ),
        "attempt 1 to end as node_lost",
        90,
    )
    cluster.start_agent(worker_node, GPUS, *AGENT_ARGS)  # same name and dir: the sweep runs


def preempt_through_the_store(cluster: LocalCluster, client: CorralClient, job_id: int) -> None:
    """Ask for the stop a reclaiming policy would (reason ``preempted``), in the database."""
    job = wait_for_checkpoint(cluster, client, job_id)
    assert job.attempts is not None
    db = Database(sqlite_url(cluster.data_dir / "server"))
    try:
        with db.write() as session:
            attempt = session.get(AttemptRow, job.attempts[0].id)
            assert attempt is not None
            request_stop(session, attempt, TerminationReason.PREEMPTED, utcnow(), "e2e preempts")
    finally:
        db.dispose()


def run_to_end(
    cluster: LocalCluster, client: CorralClient, job_id: int, timeout_s: float = 240.0
) -> JobView:
    def ended() -> JobView | None:
        job = client.get_job(job_id)
        return job if is_terminal(job.status) else None

    try:
        return wait_for(ended, f"job {job_id} to end", timeout_s)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{tails(cluster)}") from None
    finally:
        if not is_terminal(client.get_job(job_id).status):
            client.cancel(job_id)


def assert_resumed(job: JobView, ckpt: Path, reason: str) -> None:
    assert job.status == "succeeded", job.model_dump_json(indent=2)
    assert job.attempts is not None and len(job.attempts) == 2
    assert job.attempts[0].reason == reason
    progress = read_progress(ckpt)
    assert progress is not None
    assert progress.attempt == 2 and progress.resumed_from_step > 0, progress


def _alive(pid: int, start_ticks: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and int(fields[19]) == start_ticks


def ray_pids(cluster: LocalCluster) -> list[tuple[int, int]]:
    """(pid, start ticks) of every Ray process any supervisor of this cluster started."""
    found: list[tuple[int, int]] = []
    for state in (cluster.data_dir / "agents").glob("*/attempts/*/ray.json"):
        found += [(p["pid"], p["start_ticks"]) for p in json.loads(state.read_text())["pids"]]
    return found


def carriers_of(marker: str) -> list[int]:
    """Pids of processes whose environment mentions ``marker``."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{name}/environ").read_bytes():
                    pids.append(int(name))
            except OSError:
                pass
    return pids


def assert_no_ray_left(cluster: LocalCluster, job_ids: list[int]) -> None:
    started = ray_pids(cluster)
    assert len(started) >= 4, "each node of each attempt records its Ray processes"
    wait_for(lambda: not [p for p in started if _alive(*p)], "the Ray processes to be gone", 30)
    for job_id in job_ids:
        marker = f"CORRAL_CHECKPOINT_DIR={checkpoint_dir(cluster, job_id)}\0"
        assert not carriers_of(marker), f"processes of job {job_id} still run"


def test_bert_is_preempted_resumes_and_learns(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        job_id = client.submit(ray_job("bert-e2e", "workloads.bert", BERT_ARGS)).id
        lose_rank_1(cluster, client, job_id)
        job = run_to_end(cluster, client, job_id)
        log = "".join(chunk.data for chunk in client.iter_logs(job_id, None, follow=False))
    ckpt = checkpoint_dir(cluster, job_id)
    assert_resumed(job, ckpt, "node_lost")
    assert "resumed from checkpoint step-" in log
    summary = json.loads((ckpt / "summary.json").read_text())
    assert summary["completed"] and summary["backend"] == "ray"
    assert summary["metrics"]["accuracy"] >= 0.58, summary["metrics"]  # chance: 0.5
    assert {"precision", "recall", "f1"} <= set(summary["metrics"])
    assert_no_ray_left(cluster, [job_id])


def test_resnet_is_preempted_resumes_and_infers(cluster: LocalCluster, tmp_path: Path) -> None:
    with cluster.client() as client:
        job_id = client.submit(ray_job("resnet-e2e", "workloads.resnet", RESNET_ARGS)).id
        preempt_through_the_store(cluster, client, job_id)
        job = run_to_end(cluster, client, job_id)
        ckpt = checkpoint_dir(cluster, job_id)
        assert_resumed(job, ckpt, "preempted")
        summary = json.loads((ckpt / "summary.json").read_text())
        assert summary["metrics"]["accuracy"] >= 0.8, summary["metrics"]  # chance: 0.1

        output = tmp_path / "predictions.jsonl"
        infer_args = [f"--checkpoint={ckpt}", "--data=digits", f"--output={output}"]
        infer_id = client.submit(ray_job("infer-e2e", "workloads.infer", infer_args)).id
        infer = run_to_end(cluster, client, infer_id, 180)
    assert infer.status == "succeeded", infer.model_dump_json(indent=2)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(int(summary["metrics"]["support"])))
    accuracy = sum(line["prediction"] == line["label"] for line in lines) / len(lines)
    assert accuracy == pytest.approx(summary["metrics"]["accuracy"], abs=1e-9)
    assert_no_ray_left(cluster, [job_id, infer_id])
