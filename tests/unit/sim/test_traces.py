"""Trace loaders: the published formats, and malformed rows refused by number and reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.sim.history import history_line
from scheduler.sim.rows import TraceError, TraceJob, parse_time
from scheduler.sim.traces import detect_format, load_trace, select_jobs

from .factories import trace_job, write_alibaba, write_history, write_lines, write_philly

T0 = datetime(2017, 10, 9, tzinfo=UTC).timestamp()


def test_philly_rows_become_jobs_sorted_by_submit_time(tmp_path: Path) -> None:
    path = write_philly(
        tmp_path / "philly.csv",
        [
            "2017-10-09 07:01:55,66.0,1,66.0,11cb48",
            "2017-10-09 06:13:03,2951.0,8,23608.0,6214e9",
        ],
    )
    loaded = load_trace(path)
    assert loaded.format == "philly"
    assert loaded.jobs == (
        TraceJob(2, "6214e9", T0 + 6 * 3600 + 13 * 60 + 3, 2951.0, 8),
        TraceJob(1, "11cb48", T0 + 7 * 3600 + 60 + 55, 66.0, 1),
    )


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2017-10-09 07:01:55,66.0,0,0.0,11cb48", "num_gpus '0' is below 1"),
        ("2017-10-09 07:01:55,66.0,1.5,99.0,11cb48", "num_gpus '1.5' is not a whole number"),
        ("2017-10-09 07:01:55,-1,1,-1,11cb48", "duration '-1' is below 0"),
        ("2017-10-09 07:01:55,abc,1,66,11cb48", "duration 'abc' is not a number"),
        ("2017-10-09 07:01:55,nan,1,66,11cb48", "duration 'nan' is not finite"),
        ("09/10/2017 07:01,66.0,1,66.0,11cb48", "timestamp '09/10/2017 07:01' is not YYYY-MM-DD"),
        ("2017-10-09 07:01:55,66.0,2,66.0,11cb48", "gpu_time 66 is not duration x num_gpus (132)"),
        ("2017-10-09 07:01:55,66.0,1,66.0,", "cluster is empty"),
        ("2017-10-09 07:01:55,66.0,1", "expected 5 fields"),
        ("2017-10-09 07:01:55,66.0,1,66.0,a,extra", "expected 5 fields"),
    ],
)
def test_a_malformed_philly_row_is_refused_with_its_number(
    tmp_path: Path, row: str, reason: str
) -> None:
    good = "2017-10-09 06:13:03,2951.0,1,2951.0,6214e9"
    path = write_philly(tmp_path / "philly.csv", [good, good, row])
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert str(caught.value).startswith(f"{path}: row 4: {reason}")
    assert [p.row for p in caught.value.problems] == [4]


def test_every_bad_row_is_listed_and_lenient_loading_skips_them(tmp_path: Path) -> None:
    good = "2017-10-09 06:13:03,2951.0,1,2951.0,6214e9"
    bad = "2017-10-09 06:13:03,x,1,1,6214e9"
    path = write_philly(tmp_path / "philly.csv", [bad, good, *[bad] * 6])
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert [p.row for p in caught.value.problems] == [2, 4, 5, 6, 7, 8, 9]
    assert "(and 2 more bad rows)" in str(caught.value)
    lenient = load_trace(path, strict=False)
    assert [j.job_id for j in lenient.jobs] == [2]
    assert [p.row for p in lenient.skipped] == [2, 4, 5, 6, 7, 8, 9]


def test_a_missing_column_is_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.csv", ["timestamp,duration,num_gpus,cluster", "x,1,1,a"])
    with pytest.raises(TraceError, match="row 1: missing column"):
        load_trace(path, "philly")


def test_alibaba_rows(tmp_path: Path) -> None:
    path = write_alibaba(
        tmp_path / "week.csv",
        ["0,11cb48,1,4,66,116,1,MISC,1,1,1", "2,ee9e8c,8,32,159721,1072,2,,1,1,1"],
    )
    loaded = load_trace(path, origin_s=T0)
    assert loaded.format == "alibaba"
    assert loaded.jobs == (
        TraceJob(0, "11cb48", T0 + 116, 66.0, 1, gpu_type="MISC"),
        TraceJob(2, "ee9e8c", T0 + 1072, 159721.0, 16),  # 8 GPUs x 2 instances
    )


def test_alibaba_duplicate_ids_and_bad_rows(tmp_path: Path) -> None:
    path = write_alibaba(
        tmp_path / "week.csv",
        ["0,a,1,4,66,116,1,MISC,1,1,1", "0,a,1,4,66,117,1,MISC,1,1,1", "1,a,0.5,4,6,1,1,T4,1,1,1"],
    )
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert [str(p) for p in caught.value.problems] == [
        "row 3: job id 0 already used at row 2",
        "row 4: num_gpu '0.5' is not a whole number",
    ]


def _record(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 7,
        "queue": "research",
        "submitted_at": "2026-01-01T12:00:00+00:00",
        "started_at": "2026-01-01T12:05:00+00:00",
        "ended_at": "2026-01-01T13:05:00+00:00",
        "gpus": 4,
        "nodes": 2,
        "gpu_type": "A100-80GB",
        "priority": 0,
        "status": "succeeded",
    }
    return {**base, **fields}


def test_corral_history(tmp_path: Path) -> None:
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC).timestamp()
    path = write_history(
        tmp_path / "history.jsonl",
        [
            _record(),
            _record(id=8, run_s=1800, submitted_at=noon, priority=3),
            _record(id=9, started_at=None, ended_at=None, status="cancelled"),
            _record(id=10, gpus=0),
        ],
    )
    loaded = load_trace(path)
    assert loaded.format == "corral"
    assert loaded.jobs == (
        TraceJob(7, "research", noon, 3600.0, 8, nodes=2, gpu_type="A100-80GB"),
        TraceJob(8, "research", noon, 1800.0, 8, nodes=2, gpu_type="A100-80GB", priority=3),
    )
    assert [str(p) for p in loaded.skipped] == [
        "row 3: job 9 never ran (cancelled)",
        "row 4: job 10 asked no GPU",
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (_record(status="done"), "status 'done' is not a job status"),
        (_record(gpus=-1), "gpus -1 is below 0"),
        (_record(gpus="4"), "gpus '4' is not an int"),
        (_record(queue=""), "queue '' is not a str"),
        (_record(submitted_at="yesterday"), "submitted_at 'yesterday' is not an ISO 8601 time"),
        (_record(ended_at="2026-01-01T12:00:00+00:00"), "times out of order"),
        (_record(id=None), "id is missing"),
    ],
)
def test_a_malformed_history_line_is_refused_with_its_number(
    tmp_path: Path, line: dict[str, object] | str, reason: str
) -> None:
    path = write_history(tmp_path / "history.jsonl", [_record(id=1), line])
    with pytest.raises(TraceError, match=f"row 2: {reason}"):
        load_trace(path)


def test_history_line_round_trips(tmp_path: Path) -> None:
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    line = history_line(5, "q", at, at, at.replace(hour=13), 2, 1, "succeeded", priority=1)
    loaded = load_trace(write_lines(tmp_path / "h.jsonl", [line]))
    assert loaded.jobs == (TraceJob(5, "q", at.timestamp(), 3600.0, 2, nodes=1, priority=1),)


def test_detect_format_refuses_an_unknown_header(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.csv", ["a,b,c"])
    with pytest.raises(ValueError, match="unknown trace format"):
        detect_format(path)


def test_select_jobs_by_window_queue_and_limit() -> None:
    jobs = [trace_job(i, at=10.0 * i, queue="a" if i % 2 else "b") for i in range(10)]
    assert [j.job_id for j in select_jobs(jobs, start=20, end=60)] == [2, 3, 4, 5]
    assert [j.job_id for j in select_jobs(jobs, queues=["a"], limit=3)] == [1, 3, 5]
    assert select_jobs(jobs, start=1000) == ()


def test_parse_time() -> None:
    assert parse_time("90") == 90.0
    assert parse_time("2017-10-09") == T0
    assert parse_time("2017-10-09T01:00:00+01:00") == T0
    with pytest.raises(ValueError, match="not a time"):
        parse_time("soon")
