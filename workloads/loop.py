"""The data-parallel training loop that every worker runs, under Ray Train or alone.

Invariants (what resuming and DDP rely on):
- every worker takes the same number of batches per epoch: the epoch's permutation
  (seeded by ``seed + epoch``, identical everywhere) is cut into ``world_size``
  strided shards of equal length, each cut into whole batches of ``batch_size``;
- a position is ``(step, epoch, batch)``: optimizer steps in total, the epoch in
  progress and the next batch in it; a checkpoint stores it, and a resumed run
  continues at that batch of that epoch with the same data order;
- workers decide to stop together: each step they all-reduce "stop requested" (MAX),
  so all leave after the same step and rank 0 saves that step's checkpoint;
- only rank 0 writes (checkpoints, ``progress.json``, ``metrics.jsonl``), to the
  shared ``checkpoint_dir``;
- evaluation is data-parallel too: each rank counts a confusion matrix on its
  strided shard of the test set and the matrices are summed (all-reduce).
Units: times in seconds; ``samples`` are training examples over all workers.
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from workloads.checkpoint import build_model, checkpoint_step, newest_checkpoint, save_checkpoint
from workloads.metrics import classification_metrics
from workloads.progress import Progress, write_progress
from workloads.stop import StopSignal

METRICS_LOG = "metrics.jsonl"
EVAL_BATCH = 256


@dataclass(frozen=True)
class LoopConfig:
    workload: str  # a key of checkpoint.MODEL_BUILDERS
    model_config: dict[str, Any]
    label_names: tuple[str, ...]
    checkpoint_dir: str
    epochs: int = 3
    batch_size: int = 32  # per worker
    lr: float = 1e-3
    weight_decay: float = 0.01
    checkpoint_every: int = 50  # steps; 0: at epoch ends and on stop only
    stop_file: str | None = None
    seed: int = 0
    threads: int = 1  # torch intra-op threads per worker
    attempt: int | None = None
    max_steps: int | None = None  # end, as completed, once this many steps are done
    mixed_precision: bool = True  # autocast on CUDA (bf16, else fp16 with a scaler)
    extra_state: dict[str, Any] = field(default_factory=dict)  # saved in each checkpoint


@dataclass(frozen=True)
class Arrays:
    x_train: npt.NDArray[Any]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[Any]
    y_test: npt.NDArray[np.int64]


@dataclass
class LoopResult:
    completed: bool  # every epoch (or max_steps) done
    stopped: bool  # left early because a stop was requested
    step: int
    epoch: int
    resumed_from_step: int
    samples: int  # trained in this run, all workers
    train_time_s: float  # in training steps only: no evaluation, no checkpoint writes
    metrics: dict[str, float]  # the last evaluation
    first_step_at: float | None = None  # epoch seconds when this run's first step began


class Collective(Protocol):
    """What the loop needs from its process group (``alone()`` for one process)."""

    rank: int
    world_size: int
    device: torch.device

    def prepare(self, model: nn.Module) -> nn.Module: ...
    def any(self, flag: bool) -> bool: ...
    def sum(self, counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
    def report(self, metrics: dict[str, float]) -> None: ...


@dataclass
class Alone:
    """A single process: no communication, the first CUDA device or the CPU."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(
        default_factory=lambda: torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    )

    def prepare(self, model: nn.Module) -> nn.Module:
        return model.to(self.device)

    def any(self, flag: bool) -> bool:
        return flag

    def sum(self, counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return counts

    def report(self, metrics: dict[str, float]) -> None:
        return None


@dataclass
class _Position:
    step: int = 0
    epoch: int = 0
    batch: int = 0


class _Run:
    """One worker's training run; ``run()`` once."""

    def __init__(self, cfg: LoopConfig, data: Arrays, coll: Collective, stop: StopSignal) -> None:
        self.cfg, self.data, self.coll, self.stop = cfg, data, coll, stop
        self.dir = Path(cfg.checkpoint_dir)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.workload, cfg.model_config)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        cuda = coll.device.type == "cuda" and cfg.mixed_precision
        self.amp_dtype = _amp_dtype() if cuda else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        self.pos = _Position()
        self.saved_position: tuple[int, int, int] | None = None  # of the newest checkpoint
        self.last_checkpoint: tuple[float, int] | None = None  # (epoch seconds, step)
        self.metrics: dict[str, float] = {}  # the last evaluation (kept in checkpoints)
        self.resumed_from = self._resume()
        self.net = coll.prepare(self.model)
        self.loss_fn = nn.CrossEntropyLoss()
        self.losses: list[float] = []
        self.samples, self.train_time_s = 0, 0.0
        self.first_step_at: float | None = None  # epoch seconds, for start-up figures
        self.stop_now = False

    def _resume(self) -> int:
        """Load the newest checkpoint, if any; the step it was saved at (0: none)."""
        path = newest_checkpoint(self.dir)
        if path is None:
            return 0
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.pos = _Position(int(state["step"]), int(state["epoch"]), int(state["batch"]))
        self.metrics = {str(k): float(v) for k, v in dict(state.get("metrics") or {}).items()}
        self.saved_position = (self.pos.step, self.pos.epoch, self.pos.batch)
        saved_at = float(state.get("saved_at") or (path / "state.pt").stat().st_mtime)
        self.last_checkpoint = (saved_at, self.pos.step)
        self._say(f"resumed from checkpoint {path.name} at step {self.pos.step}")
        return checkpoint_step(path)

    def run(self) -> LoopResult:
        self._say(
            f"training {self.cfg.workload} on {self.coll.world_size} worker(s), "
            f"device {self.coll.device}, from step {self.pos.step}"
        )
        self._write_progress()
        while self.pos.epoch < self.cfg.epochs and not self._max_steps_reached():
            finished_epoch = self._train_epoch()
            if self.stop_now:
                self._checkpoint()
                return self._result(completed=False, stopped=True)
            if finished_epoch:
                self.pos = _Position(self.pos.step, self.pos.epoch + 1, 0)
            self._evaluate()
            self._checkpoint()
        return self._result(completed=True, stopped=False)

    def _train_epoch(self) -> bool:
        """Train the rest of the epoch; False when a stop or ``max_steps`` ended it early."""
        self.stop_now = False
        batches = self._batches(self.pos.epoch)
        self.net.train()
        for index in range(self.pos.batch, len(batches)):
            started = time.perf_counter()
            if self.first_step_at is None:
                self.first_step_at = time.time()
            self._step(batches[index])
            self.train_time_s += time.perf_counter() - started
            self.pos.step, self.pos.batch = self.pos.step + 1, index + 1
            self.samples += len(batches[index]) * self.coll.world_size
            self.stop_now = self.coll.any(self.stop.requested())
            if self.stop_now or self._max_steps_reached():
                return not self.stop_now and index + 1 == len(batches)
            every = self.cfg.checkpoint_every
            if every and self.pos.step % every == 0 and index + 1 < len(batches):
                self._checkpoint()  # (the epoch's end saves one anyway)
        return True

    def _max_steps_reached(self) -> bool:
        return self.cfg.max_steps is not None and self.pos.step >= self.cfg.max_steps

    def _batches(self, epoch: int) -> list[npt.NDArray[np.int64]]:
        """This rank's batches of ``epoch``: the same count on every rank."""
        order = np.random.default_rng(self.cfg.seed + epoch).permutation(len(self.data.y_train))
        per_rank = len(order) // self.coll.world_size
        shard = order[self.coll.rank :: self.coll.world_size][:per_rank]
        count = per_rank // self.cfg.batch_size
        return [
            shard[i * self.cfg.batch_size : (i + 1) * self.cfg.batch_size] for i in range(count)
        ]

    def _step(self, indices: npt.NDArray[np.int64]) -> None:
        inputs = torch.from_numpy(self.data.x_train[indices]).to(self.coll.device)
        labels = torch.from_numpy(self.data.y_train[indices]).to(self.coll.device)
        with self._autocast():
            loss = self.loss_fn(self.net(inputs), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.losses.append(float(loss.detach()))

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    @torch.no_grad()
    def _evaluate(self) -> None:
        """Macro metrics on the whole test set (each rank a shard), logged by rank 0."""
        self.model.eval()
        x = self.data.x_test[self.coll.rank :: self.coll.world_size]
        y = self.data.y_test[self.coll.rank :: self.coll.world_size]
        classes = len(self.cfg.label_names)
        counts = np.zeros((classes, classes), dtype=np.int64)
        for start in range(0, len(y), EVAL_BATCH):
            inputs = torch.from_numpy(x[start : start + EVAL_BATCH]).to(self.coll.device)
            with self._autocast():
                predicted = self.model(inputs).argmax(dim=1).cpu().numpy()
            np.add.at(counts, (y[start : start + EVAL_BATCH], predicted), 1)
        self.model.train()
        self.metrics = classification_metrics(self.coll.sum(counts))
        self.metrics["loss"] = float(np.mean(self.losses)) if self.losses else float("nan")
        self.losses = []
        self.coll.report({**self.metrics, "step": float(self.pos.step)})
        if self.coll.rank == 0:
            self._log_metrics()

    def _log_metrics(self) -> None:
        line: dict[str, Any] = {"attempt": self.cfg.attempt, "epoch": self.pos.epoch}
        line.update({"step": self.pos.step, **self.metrics})
        with open(self.dir / METRICS_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
        shown = ", ".join(f"{k} {self.metrics[k]:.3f}" for k in ("accuracy", "f1", "loss"))
        self._say(f"epoch {self.pos.epoch} done at step {self.pos.step}: {shown}")

    def _checkpoint(self) -> None:
        """Rank 0 saves the position unless the newest checkpoint holds it; then progress."""
        if self.coll.rank != 0:
            return
        position = (self.pos.step, self.pos.epoch, self.pos.batch)
        if position != self.saved_position:
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "step": self.pos.step,
                "epoch": self.pos.epoch,
                "batch": self.pos.batch,
                "saved_at": time.time(),
                "metrics": dict(self.metrics),
                "workload": self.cfg.workload,
                "model_config": self.cfg.model_config,
                "label_names": list(self.cfg.label_names),
                **self.cfg.extra_state,
            }
            path = save_checkpoint(self.dir, self.pos.step, state)
            self.saved_position = position
            self.last_checkpoint = (float(state["saved_at"]), self.pos.step)
            self._say(f"checkpoint {path.name} saved")
        self._write_progress()

    def _write_progress(self) -> None:
        if self.coll.rank != 0:
            return
        at, step = self.last_checkpoint if self.last_checkpoint else (None, None)
        progress = Progress(
            step=self.pos.step,
            epoch=self.pos.epoch,
            last_checkpoint_at=at,
            last_checkpoint_step=step,
            metrics=self.metrics,
            attempt=self.cfg.attempt,
            resumed_from_step=self.resumed_from,
        )
        write_progress(self.dir, progress)

    def _result(self, *, completed: bool, stopped: bool) -> LoopResult:
        if stopped:
            self._say(f"stopped at step {self.pos.step} (checkpointed)")
        return LoopResult(
            completed=completed,
            stopped=stopped,
            step=self.pos.step,
            epoch=self.pos.epoch,
            resumed_from_step=self.resumed_from,
            samples=self.samples,
            train_time_s=self.train_time_s,
            metrics=dict(self.metrics),
            first_step_at=self.first_step_at,
        )

    def _say(self, text: str) -> None:
        if self.coll.rank == 0:
            print(f"[{self.cfg.workload}] {text}", flush=True)


def _amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def run_loop(cfg: LoopConfig, data: Arrays, coll: Collective, stop: StopSignal) -> LoopResult:
    """Train ``cfg.epochs`` epochs (resuming from the newest checkpoint) or until stopped."""
    torch.set_num_threads(max(1, cfg.threads))
    return _Run(cfg, data, coll, stop).run()
