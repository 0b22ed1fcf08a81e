"""Checkpoints in ``CORRAL_CHECKPOINT_DIR/checkpoints/step-<step>/state.pt``, and models by name.

Invariants:
- a checkpoint directory is complete or absent: it is written under a temporary
  name and renamed into place, so ``newest_checkpoint`` never sees half of one (the
  directory sits on shared storage; a rename within one directory is atomic there);
- the step in the name is the count of optimizer steps taken when it was saved,
  and the newest checkpoint is the one with the highest step;
- a state holds only tensors and plain values (``torch.load(weights_only=True)``
  reads it back), including what inference needs: the workload, its model config,
  the label names and, for text, the vocabulary;
- the ``keep`` newest checkpoints are kept, older ones are removed after a save.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workloads import bert, resnet

CHECKPOINTS = "checkpoints"
STATE_FILE = "state.pt"
KEEP = 2
_NAME_RE = re.compile(r"^step-(\d+)$")

MODEL_BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "bert": bert.build,
    "bert-pretrained": bert.build_pretrained,
    "resnet": resnet.build,
}


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """The model named ``kind`` (a key of ``MODEL_BUILDERS``) built from ``config``."""
    try:
        builder = MODEL_BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r} (one of {', '.join(MODEL_BUILDERS)})") from None
    return builder(config)


def save_checkpoint(
    checkpoint_dir: Path, step: int, state: dict[str, Any], keep: int = KEEP
) -> Path:
    """Write ``state`` as the checkpoint of ``step``; its directory."""
    root = checkpoint_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    torch.save(state, tmp / STATE_FILE)
    if final.exists():  # the same step saved again (a resume that stopped at once)
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in _complete(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def newest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``checkpoint_dir``; None if none."""
    found = _complete(checkpoint_dir / CHECKPOINTS)
    return found[-1] if found else None


def checkpoint_step(path: Path) -> int:
    match = _NAME_RE.match(path.name)
    if match is None:
        raise ValueError(f"not a checkpoint directory: {path}")
    return int(match.group(1))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state of a checkpoint directory (or of the newest one under a job's dir)."""
    if not (path / STATE_FILE).is_file():
        newest = newest_checkpoint(path)
        if newest is None:
            raise FileNotFoundError(f"no checkpoint in {path}")
        path = newest
    state: dict[str, Any] = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    return state


def _complete(root: Path) -> list[Path]:
    """The complete checkpoint directories under ``root``, oldest first."""
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return []
    steps = [
        (int(match.group(1)), entry)
        for entry in entries
        if (match := _NAME_RE.match(entry.name)) and (entry / STATE_FILE).is_file()
    ]
    return [entry for _, entry in sorted(steps)]
