"""Reading a job's progress file: which files count, malformed ones, caching, the final read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agents import progress as progress_module
from agents.progress import MAX_PROGRESS_BYTES, PROGRESS_FILE, ProgressFiles, parse_progress
from scheduler.domain.sync import AttemptLaunch, ProgressReport

FULL = {
    "attempt": 2,
    "step": 120,
    "epoch": 3,
    "last_checkpoint_step": 100,
    "last_checkpoint_at": 1764345600.5,
    "resumed_from_step": 80,
    "metrics": {"loss": 0.4},
    "updated_at": 1764345601.0,
}


def test_a_file_of_this_attempt_gives_its_four_fields() -> None:
    assert parse_progress(json.dumps(FULL), 2) == ProgressReport(
        step=120, last_checkpoint_step=100, last_checkpoint_at=1764345600.5, resumed_from_step=80
    )


def test_fields_left_out_are_none_and_an_integer_time_is_fine() -> None:
    report = parse_progress('{"attempt": 1, "step": 3, "last_checkpoint_at": 17}', 1)
    assert report == ProgressReport(step=3, last_checkpoint_at=17.0)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(json.dumps({**FULL, "attempt": 1}), id="an-earlier-attempts-file"),
        pytest.param(json.dumps({**FULL, "attempt": None}), id="no-attempt"),
        pytest.param(json.dumps({**FULL, "attempt": "2"}), id="attempt-as-text"),
        pytest.param(json.dumps({**FULL, "attempt": True}), id="attempt-as-bool"),
        pytest.param(json.dumps({**FULL, "step": -1}), id="negative-step"),
        pytest.param(json.dumps({**FULL, "step": "120"}), id="step-as-text"),
        pytest.param(json.dumps({**FULL, "step": True}), id="step-as-bool"),
        pytest.param(json.dumps({**FULL, "step": 1.5}), id="fractional-step"),
        pytest.param(json.dumps({**FULL, "last_checkpoint_at": "yesterday"}), id="bad-time"),
        pytest.param('{"attempt": 2, "step": NaN}', id="nan"),
        pytest.param('{"attempt": 2, "step": 1', id="torn"),
        pytest.param("[2, 120]", id="not-an-object"),
        pytest.param("", id="empty"),
        pytest.param(b"\xff\xfe", id="not-text"),
    ],
)
def test_anything_else_is_none(text: str | bytes) -> None:
    assert parse_progress(text, 2) is None


def launch(checkpoint_dir: Path | str | None, attempt_number: int = 1) -> AttemptLaunch:
    env = {} if checkpoint_dir is None else {"CORRAL_CHECKPOINT_DIR": str(checkpoint_dir)}
    return AttemptLaunch(
        attempt_id=7, job_id=3, attempt_number=attempt_number, argv=["true"], env=env
    )


def write(directory: Path, **fields: Any) -> None:
    """Replace the progress file atomically, as workloads.progress does."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / ".progress.tmp"
    tmp.write_text(json.dumps(fields))
    os.replace(tmp, directory / PROGRESS_FILE)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths ``ProgressFiles`` opened and parsed, in order."""
    seen: list[Path] = []
    real = progress_module._read

    def counting(path: Path, attempt_number: int) -> ProgressReport | None:
        seen.append(path)
        return real(path, attempt_number)

    monkeypatch.setattr(progress_module, "_read", counting)
    return seen


def test_reads_the_file_again_only_when_it_changed(tmp_path: Path, reads: list[Path]) -> None:
    files = ProgressFiles()
    files.watch(launch(tmp_path))
    assert files.read(7) is None  # no file yet
    write(tmp_path, attempt=1, step=1)
    assert files.read(7) == ProgressReport(step=1)
    assert files.read(7) == ProgressReport(step=1)
    assert len(reads) == 1  # unchanged: one stat, no read
    write(tmp_path, attempt=1, step=2, last_checkpoint_step=2)
    assert files.read(7) == ProgressReport(step=2, last_checkpoint_step=2)
    assert len(reads) == 2
    (tmp_path / PROGRESS_FILE).unlink()
    assert files.read(7) is None


def test_the_final_read_is_kept_even_when_the_next_attempt_replaces_the_file(
    tmp_path: Path, reads: list[Path]
) -> None:
    files = ProgressFiles()
    files.watch(launch(tmp_path))
    write(tmp_path, attempt=1, step=5)
    assert files.read(7) == ProgressReport(step=5)
    write(tmp_path, attempt=1, step=9, last_checkpoint_step=9)  # the checkpoint on SIGTERM
    files.final(7)
    assert files.read(7) == ProgressReport(step=9, last_checkpoint_step=9)
    write(tmp_path, attempt=2, step=9, resumed_from_step=9)  # attempt 2, elsewhere
    assert files.read(7) == ProgressReport(step=9, last_checkpoint_step=9)
    assert len(reads) == 2
    files.forget(7)
    assert files.read(7) is None


def test_an_oversized_file_is_not_read_whole(tmp_path: Path) -> None:
    files = ProgressFiles()
    files.watch(launch(tmp_path))
    padding = "x" * MAX_PROGRESS_BYTES
    write(tmp_path, attempt=1, step=1, padding=padding)
    assert files.read(7) is None


@pytest.mark.parametrize("checkpoint_dir", [None, "", "relative/dir"])
def test_no_absolute_checkpoint_dir_means_no_progress(checkpoint_dir: str | None) -> None:
    files = ProgressFiles()
    files.watch(launch(checkpoint_dir))
    files.final(7)
    assert files.read(7) is None


def test_an_unreadable_file_is_none(tmp_path: Path) -> None:
    files = ProgressFiles()
    files.watch(launch(tmp_path))
    (tmp_path / PROGRESS_FILE).mkdir()  # a directory where the file should be
    assert files.read(7) is None
    assert files.read(99) is None  # an attempt not watched
