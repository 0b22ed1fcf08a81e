"""Run the training loop on Ray Train: a ``TorchTrainer`` with one worker per GPU.

The driver connects to the cluster in ``RAY_ADDRESS`` (the per-job cluster corral
started; without it ``ray.init`` starts a local one), puts the arrays in the object
store once, and starts ``workers`` DDP workers: by default one per GPU of the
cluster, or one per node when it has no GPUs. Backend: NCCL with mixed precision
when CUDA is usable here, else gloo on the CPU (simulated GPUs included: Ray still
hands each worker one "GPU", torch just cannot see it, so the model stays on the
CPU, ``prepare_model(..., move_to_device=False)``).

Every worker runs ``workloads.loop.run_loop``; rank 0 writes its ``LoopResult`` to a
file beside the checkpoints (Ray Train V2 keeps reported metrics only with Ray
checkpoints), which the driver reads and removes. Ray Train's own checkpointing and
restarts are not used (``max_failures=0``): corral's checkpoints on the shared
``CORRAL_CHECKPOINT_DIR`` and corral's requeue/retry are the one mechanism, so a
resumed attempt and a restarted worker cannot disagree about where training was.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch import nn

from workloads.loop import Arrays, LoopConfig, LoopResult, run_loop
from workloads.stop import StopSignal


@dataclass
class RayCollective:
    """The loop's process group under Ray Train (torch.distributed is initialised)."""

    rank: int
    world_size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def prepare(self, model: nn.Module) -> nn.Module:
        from ray.train.torch import prepare_model

        return prepare_model(model, move_to_device=self.device.type == "cuda")

    def any(self, flag: bool) -> bool:
        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        value = torch.from_numpy(counts).to(self.device)
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        result: npt.NDArray[np.int64] = value.cpu().numpy()
        return result

    def report(self, metrics: dict[str, float]) -> None:
        import ray.train

        ray.train.report(metrics)


def _train_worker(config: dict[str, Any]) -> None:
    """The function every Ray Train worker runs."""
    import ray
    import ray.train
    from ray.train.torch import get_device

    cfg = LoopConfig(**config["cfg"])
    data: Arrays = ray.get(config["data"])
    context = ray.train.get_context()
    device = get_device() if torch.cuda.is_available() else torch.device("cpu")
    coll = RayCollective(context.get_world_rank(), context.get_world_size(), device)
    result = run_loop(cfg, data, coll, StopSignal(cfg.stop_file))
    if coll.rank == 0:  # Ray Train V2 keeps reported metrics only with checkpoints
        tmp = Path(config["result_file"] + ".tmp")
        tmp.write_text(json.dumps(asdict(result)))
        os.replace(tmp, config["result_file"])


@dataclass(frozen=True)
class RayPlan:
    workers: int
    use_gpu: bool
    backend: str  # nccl or gloo


def plan(resources: dict[str, float], nodes: int, workers: int | None) -> RayPlan:
    """One worker per GPU (or per node without GPUs) unless ``workers`` is given."""
    gpus = int(resources.get("GPU", 0))
    count = workers or gpus or max(1, nodes)
    backend = "nccl" if gpus and torch.cuda.is_available() else "gloo"
    return RayPlan(workers=count, use_gpu=gpus > 0, backend=backend)


def fit(cfg: LoopConfig, data: Arrays, workers: int | None, stop: StopSignal) -> LoopResult:
    """Train on the Ray cluster; rank 0's result. Installs ``stop`` after ``ray.init``."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    ray.init(address=os.environ.get("RAY_ADDRESS") or None)
    stop.install()  # ray.init replaced the SIGTERM handler with one that exits
    alive = [node for node in ray.nodes() if node.get("Alive")]
    chosen = plan(ray.cluster_resources(), len(alive), workers)
    print(
        f"[{cfg.workload}] Ray: {len(alive)} node(s), {chosen.workers} worker(s), "
        f"backend {chosen.backend}, GPUs {'yes' if chosen.use_gpu else 'no'}",
        flush=True,
    )
    per_worker = {"CPU": 1.0, **({"GPU": 1.0} if chosen.use_gpu else {})}
    result_file = Path(cfg.checkpoint_dir) / f".result-{os.getpid()}-{time.time_ns()}.json"
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "cfg": asdict(cfg),
            "data": ray.put(data),
            "result_file": str(result_file),
        },
        scaling_config=ScalingConfig(
            num_workers=chosen.workers, use_gpu=chosen.use_gpu, resources_per_worker=per_worker
        ),
        torch_config=TorchConfig(backend=chosen.backend),
        run_config=RunConfig(
            name=f"{cfg.workload}-attempt-{cfg.attempt or 0}-{int(time.time())}",
            storage_path=str(Path(cfg.checkpoint_dir) / "ray-train"),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    trainer.fit()
    try:
        data_out = json.loads(result_file.read_text())
    except (OSError, ValueError) as err:
        raise RuntimeError(f"rank 0 left no result in {result_file}: {err}") from None
    result_file.unlink()
    return LoopResult(**data_out)
