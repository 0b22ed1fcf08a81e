"""``python -m workloads.bert|resnet``: train, checkpoint, resume, evaluate, summarise.

The command line of both workloads is built here; the model-specific flags come from
``TEXT_FLAGS`` and ``IMAGE_FLAGS``. Where things go (``--checkpoint-dir``, default
``CORRAL_CHECKPOINT_DIR``, else ``./checkpoints``):

    checkpoints/step-<step>/state.pt   the newest two checkpoints (resume, inference)
    progress.json                      step, epoch, last checkpoint, metrics (for corral)
    metrics.jsonl                      one line per evaluated epoch, over all attempts
    summary.json                       written at the end (``--summary`` elsewhere)

Backend ``auto`` is Ray Train when ``RAY_ADDRESS`` is set (corral's ``ray: true``),
else a plain loop in this process. Exit codes: 0 trained to the end; 143 stopped
(SIGTERM or the stop file) after checkpointing: the next attempt resumes; 2 bad
arguments or data; 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workloads.data import DataError
from workloads.loop import Alone, LoopConfig, LoopResult, run_loop
from workloads.prepare import (
    ImageOptions,
    Prepared,
    TextOptions,
    prepare_images,
    prepare_text,
)
from workloads.stop import STOP_FILE_ENV, StopSignal

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 143
CHECKPOINT_DIR_ENV = "CORRAL_CHECKPOINT_DIR"
SUMMARY_FILE = "summary.json"

TEXT_FLAGS: dict[str, dict[str, Any]] = {
    "--data": {"default": "rotten_tomatoes", "help": "rotten_tomatoes, or a CSV/JSONL file"},
    "--seq-len": {"type": int, "default": 64, "help": "tokens per text, [CLS] included"},
    "--vocab-size": {"type": int, "default": 10000},
    "--hidden": {"type": int, "default": 128},
    "--layers": {"type": int, "default": 2},
    "--heads": {"type": int, "default": 2},
    "--dropout": {"type": float, "default": 0.1},
    "--pooling": {"choices": ("mean", "cls"), "default": "mean", "help": "[CLS] or mean"},
    "--no-balance": {"action": "store_true", "help": "keep the classes' natural shares"},
    "--pretrained": {"help": "a local Hugging Face model directory (needs transformers)"},
}
IMAGE_FLAGS: dict[str, dict[str, Any]] = {
    "--data": {"default": "digits", "help": "digits, or a folder of class sub-folders"},
    "--depth": {"type": int, "default": 18, "choices": (18, 34, 50)},
    "--width": {"type": int, "default": 16, "help": "channels of the first stage (64: paper)"},
}
FLAGS = {"bert": TEXT_FLAGS, "resnet": IMAGE_FLAGS}


def parser(workload: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m workloads.{workload}", description=__doc__)
    for flag, options in FLAGS[workload].items():
        p.add_argument(flag, **options)
    p.add_argument("--limit", type=int, help="use at most this many examples")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32, help="per worker")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps (0: epochs only)")
    p.add_argument("--checkpoint-dir", help=f"default: ${CHECKPOINT_DIR_ENV}, else ./checkpoints")
    p.add_argument("--max-steps", type=int, help="end after this many steps in all")
    p.add_argument("--backend", choices=("auto", "ray", "local"), default="auto")
    p.add_argument("--workers", type=int, help="Ray Train workers [default: one per GPU]")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-mixed-precision", action="store_true", help="fp32 on CUDA too")
    p.add_argument("--summary", help=f"where to write the summary [default: DIR/{SUMMARY_FILE}]")
    return p


def prepare(workload: str, args: argparse.Namespace, checkpoint_dir: Path) -> Prepared:
    if workload == "bert":
        text = TextOptions(
            source=args.data,
            limit=args.limit,
            balance=not args.no_balance,
            test_fraction=args.test_fraction,
            seed=args.seed,
            seq_len=args.seq_len,
            vocab_size=args.vocab_size,
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            dropout=args.dropout,
            pooling=args.pooling,
            pretrained=args.pretrained,
        )
        return prepare_text(text, checkpoint_dir)
    images = ImageOptions(
        source=args.data,
        limit=args.limit,
        test_fraction=args.test_fraction,
        seed=args.seed,
        depth=args.depth,
        width=args.width,
    )
    return prepare_images(images, checkpoint_dir)


def loop_config(args: argparse.Namespace, prepared: Prepared, checkpoint_dir: Path) -> LoopConfig:
    attempt = os.environ.get("CORRAL_ATTEMPT")
    return LoopConfig(
        workload=prepared.workload,
        model_config=prepared.model_config,
        label_names=prepared.label_names,
        checkpoint_dir=str(checkpoint_dir),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        checkpoint_every=args.checkpoint_every,
        stop_file=os.environ.get(STOP_FILE_ENV) or None,
        seed=args.seed,
        threads=args.threads,
        attempt=int(attempt) if attempt and attempt.isdigit() else None,
        max_steps=args.max_steps,
        mixed_precision=not args.no_mixed_precision,
        extra_state=prepared.extra_state,
    )


def use_ray(backend: str) -> bool:
    return backend == "ray" or (backend == "auto" and bool(os.environ.get("RAY_ADDRESS")))


def train(cfg: LoopConfig, prepared: Prepared, args: argparse.Namespace) -> LoopResult:
    """Run the loop on Ray Train or in this process, as ``--backend`` says."""
    stop = StopSignal(cfg.stop_file)
    if use_ray(args.backend):
        from workloads import raytrain

        if stop.stop_file is None:  # the workers need a file to see a stop
            stop = StopSignal(str(Path(cfg.checkpoint_dir) / f".stop-{os.getpid()}"))
            cfg = LoopConfig(**{**asdict(cfg), "stop_file": stop.stop_file})
        return raytrain.fit(cfg, prepared.arrays, args.workers, stop)
    stop.install()
    return run_loop(cfg, prepared.arrays, Alone(), stop)


def summarise(
    result: LoopResult, cfg: LoopConfig, args: argparse.Namespace, started_at: float
) -> dict[str, Any]:
    """The end-of-run summary; throughput counts training steps only (start-up apart)."""
    ended_at = time.time()
    history = _read_jsonl(Path(cfg.checkpoint_dir) / "metrics.jsonl")
    return {
        "workload": cfg.workload,
        "completed": result.completed,
        "stopped": result.stopped,
        "step": result.step,
        "epoch": result.epoch,
        "attempt": cfg.attempt,
        "resumed_from_step": result.resumed_from_step,
        "backend": "ray" if use_ray(args.backend) else "local",
        "metrics": result.metrics,
        "history": history,
        "samples": result.samples,
        "train_time_s": round(result.train_time_s, 3),
        "samples_per_s": round(result.samples / result.train_time_s, 2)
        if result.train_time_s
        else None,
        "startup_s": round(result.first_step_at - started_at, 3) if result.first_step_at else None,
        "first_step_at": result.first_step_at,
        "wall_s": round(ended_at - started_at, 3),
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def main(workload: str, argv: Sequence[str] | None = None) -> int:
    started_at = time.time()
    args = parser(workload).parse_args(argv)
    checkpoint_dir = Path(
        args.checkpoint_dir or os.environ.get(CHECKPOINT_DIR_ENV) or "checkpoints"
    ).resolve()
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    try:
        prepared = prepare(workload, args, checkpoint_dir)
    except (DataError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    cfg = loop_config(args, prepared, checkpoint_dir)
    result = train(cfg, prepared, args)
    summary = summarise(result, cfg, args, started_at)
    path = Path(args.summary) if args.summary else checkpoint_dir / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[{workload}] summary in {path}: {json.dumps(summary['metrics'])}", flush=True)
    if result.completed:
        return EXIT_OK
    return EXIT_STOPPED if result.stopped else EXIT_FAILED
