"""The progress file a workload keeps for corral: ``CORRAL_CHECKPOINT_DIR/progress.json``.

One small JSON object, replaced atomically (a temp file, then a rename) so a reader
(the server, later; ``corral`` tests now) sees a whole old or a whole new version:

    {"step": 120, "epoch": 2, "last_checkpoint_at": 1764345600.5, "last_checkpoint_step": 120,
     "metrics": {"loss": 0.41, "accuracy": 0.83}, "attempt": 2, "resumed_from_step": 80,
     "updated_at": 1764345601.2}

``step`` counts optimizer steps since the job's first attempt (it survives resumes);
``epoch`` is the epoch in progress (0-based); times are epoch seconds (UTC);
``last_checkpoint_at`` is None until a checkpoint was written; ``resumed_from_step``
is the step the current attempt resumed at (0: it started from scratch).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROGRESS_FILE = "progress.json"


@dataclass(frozen=True)
class Progress:
    step: int
    epoch: int
    last_checkpoint_at: float | None = None
    last_checkpoint_step: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    attempt: int | None = None
    resumed_from_step: int = 0
    updated_at: float = 0.0


def write_progress(directory: Path, progress: Progress) -> Path:
    """Replace ``directory/progress.json`` (stamping ``updated_at``); the path written."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PROGRESS_FILE
    data = asdict(progress)
    data["metrics"] = dict(progress.metrics)
    data["updated_at"] = time.time()
    tmp = path.with_name(f".{PROGRESS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_progress(directory: Path) -> Progress | None:
    """The progress in ``directory``; None when there is none or it is malformed."""
    try:
        data: dict[str, Any] = json.loads((directory / PROGRESS_FILE).read_text())
        return Progress(
            step=int(data["step"]),
            epoch=int(data["epoch"]),
            last_checkpoint_at=_float_or_none(data.get("last_checkpoint_at")),
            last_checkpoint_step=_int_or_none(data.get("last_checkpoint_step")),
            metrics={str(k): float(v) for k, v in dict(data.get("metrics") or {}).items()},
            attempt=_int_or_none(data.get("attempt")),
            resumed_from_step=int(data.get("resumed_from_step") or 0),
            updated_at=float(data.get("updated_at") or 0.0),
        )
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
