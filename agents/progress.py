"""The progress a job reports through its progress file, read for each sync.

A workload that checkpoints keeps ``$CORRAL_CHECKPOINT_DIR/progress.json`` (the
format is the workloads' own, ``workloads.progress``; parsed here, since the agent
does not import the workloads):

    {"attempt": 2, "step": 120, "last_checkpoint_step": 120,
     "last_checkpoint_at": 1764345600.5, "resumed_from_step": 80, ...}

The agent sends the four fields of ``ProgressReport`` with every report of the
attempt, so the server knows what a stop would lose. ``ProgressFiles`` owns, per
attempt held, where its file is and what was last read from it. Invariants:
- a file whose ``attempt`` is not the attempt's number is an earlier (or later)
  attempt's and reads as None, as does a missing, unreadable or malformed one;
- a read costs one ``stat`` while the file is unchanged (same inode, mtime, size);
- after the attempt exits the file is read once more (``final``: a checkpoint taken
  on SIGTERM counts) and never again, so the next attempt's file, which replaces it
  in the same directory, cannot change what this one reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from agents.runner import CHECKPOINT_DIR_ENV
from scheduler.domain.sync import AttemptLaunch, ProgressReport

PROGRESS_FILE = "progress.json"
MAX_PROGRESS_BYTES = 64 * 1024  # a progress file is a few hundred bytes; more is not one
REPORTED_FIELDS = ("step", "last_checkpoint_step", "last_checkpoint_at", "resumed_from_step")

_FileKey = tuple[int, int, int]  # inode, mtime (ns), size: a changed file has a new key


def parse_progress(text: bytes | str, attempt_number: int) -> ProgressReport | None:
    """The report in a progress file's ``text``; None unless it is attempt ``attempt_number``'s
    and well formed (numbers of the right kind and range; ``true`` is not a step)."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or type(data.get("attempt")) is not int:
        return None
    if data["attempt"] != attempt_number:
        return None
    fields = {name: data.get(name) for name in REPORTED_FIELDS}
    try:
        return ProgressReport.model_validate(fields, strict=True)
    except pydantic.ValidationError:
        return None


@dataclass
class _Watched:
    path: Path | None  # None: the launch names no (absolute) checkpoint dir
    attempt_number: int
    key: _FileKey | None = None
    report: ProgressReport | None = None
    final: bool = False  # read once more after the exit; frozen since


class ProgressFiles:
    """The progress files of the attempts held, by attempt id."""

    def __init__(self) -> None:
        self._watched: dict[int, _Watched] = {}

    def watch(self, launch: AttemptLaunch) -> None:
        """Follow the progress file of a started attempt (its launch's checkpoint dir)."""
        raw = launch.env.get(CHECKPOINT_DIR_ENV, "")
        path = Path(raw) / PROGRESS_FILE if raw.startswith("/") else None
        self._watched[launch.attempt_id] = _Watched(path, launch.attempt_number)

    def read(self, attempt_id: int) -> ProgressReport | None:
        """What the attempt's file says now (cached while the file is unchanged)."""
        watched = self._watched.get(attempt_id)
        if watched is None or watched.path is None:
            return None
        if not watched.final:
            self._refresh(watched, force=False)
        return watched.report

    def final(self, attempt_id: int) -> None:
        """The attempt exited: read its file one last time and keep that."""
        watched = self._watched.get(attempt_id)
        if watched is not None and watched.path is not None and not watched.final:
            self._refresh(watched, force=True)
            watched.final = True

    def forget(self, attempt_id: int) -> None:
        self._watched.pop(attempt_id, None)

    @staticmethod
    def _refresh(watched: _Watched, force: bool) -> None:
        assert watched.path is not None
        try:
            stat = watched.path.stat()
        except OSError:
            watched.key, watched.report = None, None
            return
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key == watched.key and not force:
            return
        watched.key = key
        watched.report = _read(watched.path, watched.attempt_number)


def _read(path: Path, attempt_number: int) -> ProgressReport | None:
    try:
        with open(path, "rb") as progress_file:
            text = progress_file.read(MAX_PROGRESS_BYTES + 1)
    except OSError:
        return None
    if len(text) > MAX_PROGRESS_BYTES:
        return None
    return parse_progress(text, attempt_number)
