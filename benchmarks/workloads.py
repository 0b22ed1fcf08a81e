"""Throughput of the workloads through corral + a per-job Ray cluster vs a plain torch loop.

For each workload the same model, data, per-worker batch and number of steps run
twice on this machine:
- **plain**: ``python -m workloads.X --backend local``, one process, with 1 torch
  thread and with as many as there are cores; the faster is the baseline;
- **corral + Ray**: a local corral cluster (server and ``--nodes`` agents, one
  simulated GPU each) runs the same command as a ``ray: true`` job with one GPU per
  node; Ray Train starts one DDP worker per GPU (one torch thread each).
Throughput is training samples per second counted over the training steps only
(``summary.json``'s ``samples_per_s``: no start-up, no evaluation, no checkpoint
writes); the ratio is corral+Ray over plain. Start-up is reported apart: for plain,
process start to the first step; for corral, job submission to the first step
(placement, the Ray cluster forming, Ray Train starting its workers). Inference: the
whole held-out set through ``workloads.infer`` in one process vs Ray tasks, one per GPU.

    python benchmarks/workloads.py                       # bert, resnet, infer
    python benchmarks/workloads.py --workload resnet --steps 300 --out figures.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scheduler.client import is_terminal
from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster

PY = sys.executable
ARGS = {
    "bert": ["--data=rotten_tomatoes", "--limit=4000", "--seq-len=32", "--vocab-size=1000",
             "--hidden=64", "--layers=1", "--heads=2", "--lr=3e-3"],
    "resnet": ["--data=digits", "--depth=18", "--width=16"],
}  # fmt: skip


def common(steps: int) -> list[str]:
    return [f"--max-steps={steps}", "--epochs=1000", "--checkpoint-every=0", "--batch-size=32"]


def plain_once(workload: str, steps: int, threads: int, work: Path) -> dict[str, Any]:
    ckpt = work / f"plain-{workload}-{threads}"
    argv = [PY, "-m", f"workloads.{workload}", *ARGS[workload], *common(steps)]
    argv += ["--backend=local", f"--threads={threads}", f"--checkpoint-dir={ckpt}"]
    subprocess.run(argv, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    summary = json.loads((ckpt / "summary.json").read_text())
    return {"samples_per_s": summary["samples_per_s"], "startup_s": summary["startup_s"]}


def plain(workload: str, steps: int, threads: Sequence[int], work: Path) -> dict[str, Any]:
    """The plain loop at each thread count; the fastest is the baseline."""
    runs = {str(t): plain_once(workload, steps, t, work) for t in sorted(set(threads))}
    best = max(runs.values(), key=lambda run: float(run["samples_per_s"]))
    return {**best, "by_threads": runs}


def through_corral(
    cluster: LocalCluster, name: str, argv: list[str], nodes: int, timeout_s: float = 900
) -> tuple[int, float]:
    """Submit a ray job, wait for it; its id and the submission time (epoch seconds)."""
    spec = JobSpec(name=name, command=argv, resources=Resources(gpus=1, nodes=nodes), ray=True)
    with cluster.client() as client:
        submitted_at = time.time()
        job_id = client.submit(spec).id
        deadline = time.monotonic() + timeout_s
        while not is_terminal((job := client.get_job(job_id)).status):
            if time.monotonic() > deadline:
                client.cancel(job_id)
                raise RuntimeError(f"job {job_id} ({name}) did not end in {timeout_s:g} s")
            time.sleep(0.5)
    if job.status != "succeeded":
        raise RuntimeError(f"job {job_id} ({name}) {job.status}: see {cluster.data_dir}")
    return job_id, submitted_at


def ray_training(cluster: LocalCluster, workload: str, steps: int, nodes: int) -> dict[str, Any]:
    argv = [PY, "-m", f"workloads.{workload}", *ARGS[workload], *common(steps)]
    job_id, submitted_at = through_corral(cluster, f"bench-{workload}", argv, nodes)
    ckpt = cluster.data_dir / "server" / "checkpoints" / str(job_id)
    summary = json.loads((ckpt / "summary.json").read_text())
    return {
        "samples_per_s": summary["samples_per_s"],
        "startup_s": round(summary["first_step_at"] - submitted_at, 3),
        "job_id": job_id,
    }


def inference(cluster: LocalCluster, job_id: int, nodes: int, work: Path) -> dict[str, Any]:
    """Inputs per second of the resnet checkpoint of ``job_id``: one process vs Ray tasks."""
    ckpt = cluster.data_dir / "server" / "checkpoints" / str(job_id)
    base = [PY, "-m", "workloads.infer", f"--checkpoint={ckpt}", "--data=digits", "--split=all"]
    local_out = work / "plain-infer.jsonl"
    subprocess.run(
        [*base, f"--output={local_out}", "--backend=local"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    ray_out = work / "ray-infer.jsonl"
    through_corral(cluster, "bench-infer", [*base, f"--output={ray_out}"], nodes)
    local = json.loads(Path(f"{local_out}.summary.json").read_text())
    ray = json.loads(Path(f"{ray_out}.summary.json").read_text())
    return {
        "plain": {"samples_per_s": local["inputs_per_s"], "startup_s": local["startup_s"]},
        "corral_ray": {"samples_per_s": ray["inputs_per_s"], "startup_s": ray["startup_s"]},
    }


def start_cluster(work: Path, nodes: int) -> LocalCluster:
    cluster = LocalCluster(work / "cluster", server_args=("--node-timeout-s", "15"))
    cluster.start_server()
    names = [f"bench-{i}" for i in range(nodes)]
    for name in names:
        cluster.start_agent(name, "sim:1xA100-80GB", "--long-poll-s", "2")
    cluster.wait_for_nodes(names)
    return cluster


def ratio(entry: dict[str, Any]) -> dict[str, Any]:
    entry["ratio"] = round(
        entry["corral_ray"]["samples_per_s"] / entry["plain"]["samples_per_s"], 3
    )
    return entry


def run(
    workloads: Sequence[str],
    steps: int,
    nodes: int,
    threads: Sequence[int],
    work_dir: Path | None,
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "gpus": "none (simulated for placement)"},
        "steps": steps,
        "nodes": nodes,
        "plain_threads": list(threads),
    }
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        work = work_dir or Path(tmp)
        with start_cluster(work, nodes) as cluster:
            for workload in (w for w in workloads if w != "infer"):
                figures[workload] = ratio(
                    {
                        "plain": plain(workload, steps, threads, work),
                        "corral_ray": ray_training(cluster, workload, steps, nodes),
                    }
                )
                print(json.dumps({workload: figures[workload]}), flush=True)
            if "infer" in workloads:
                job_id = figures.get("resnet", {}).get("corral_ray", {}).get("job_id")
                if job_id is None:
                    job_id = ray_training(cluster, "resnet", steps, nodes)["job_id"]
                figures["infer"] = ratio(inference(cluster, job_id, nodes, work))
                print(json.dumps({"infer": figures["infer"]}), flush=True)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workload", action="append", choices=("bert", "resnet", "infer"), help="repeatable"
    )
    parser.add_argument("--steps", type=int, default=150, help="training steps per run")
    parser.add_argument("--nodes", type=int, default=2, help="agents, one GPU (worker) each")
    parser.add_argument(
        "--threads",
        type=int,
        action="append",
        help="torch threads of the plain loop (repeatable) [default: 1 and the cores]",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--work-dir", type=Path, help="keep the clusters' files here")
    args = parser.parse_args(argv)
    workloads = args.workload or ["bert", "resnet", "infer"]
    threads = args.threads or [1, os.cpu_count() or 1]
    figures = run(workloads, args.steps, args.nodes, threads, args.work_dir)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
