"""Slurm's ``--array`` forms, parsed by ``ArraySubmit``: ranges, steps, lists, and the
mistakes refused with the reason."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scheduler.domain.spec import MAX_BATCH_JOBS, ArraySubmit, JobSpec

SPEC = JobSpec(command=["true"])


@pytest.mark.parametrize(
    ("indices", "expected"),
    [
        ("0-3", [0, 1, 2, 3]),
        ("0-9:4", [0, 4, 8]),
        ("1,3,5", [1, 3, 5]),
        ("7,1-3", [1, 2, 3, 7]),
        (" 4 ", [4]),
        ([5, 2], [2, 5]),
    ],
)
def test_array_forms(indices: str | list[int], expected: list[int]) -> None:
    assert ArraySubmit(spec=SPEC, indices=indices).indices == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("indices", "reason"),
    [
        ("5-1", "the end is below the start"),
        ("0-3:0", "the step must be 1 or more"),
        ("a-b", "not an array range"),
        ("0-3%2", "not an array range"),
        ("1-3,2", "given twice"),
        ([1, 1], "given twice"),
        (f"0-{MAX_BATCH_JOBS}", f"at most {MAX_BATCH_JOBS}"),
        ([-1], "greater than or equal to 0"),
    ],
)
def test_bad_arrays_are_refused_with_the_reason(indices: str | list[int], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        ArraySubmit(spec=SPEC, indices=indices)  # type: ignore[arg-type]
