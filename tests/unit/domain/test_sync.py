"""The agent sync protocol survives JSON, log bytes included (base64, any bytes)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from scheduler.domain.sync import (
    MAX_LOG_CHUNK_BYTES,
    AttemptLaunch,
    AttemptReport,
    AttemptState,
    AttemptStop,
    GpuFacts,
    GpuSample,
    HostSample,
    NodeFacts,
    SyncReply,
    SyncRequest,
)

NOT_UTF8 = b"\xff\xfe\x80 half a char \xe2\x82 NUL \x00 end\n"


def report(**overrides: object) -> AttemptReport:
    fields: dict[str, object] = {
        "attempt_id": 3,
        "state": AttemptState.RUNNING,
        "pid": 4242,
        "log_offset": 1024,
        "log_data": NOT_UTF8,
    }
    fields.update(overrides)
    return AttemptReport.model_validate(fields)


def sync_request() -> SyncRequest:
    return SyncRequest(
        node=NodeFacts(
            name="gpu-01",
            hostname="gpu-01.example",
            cpus=64,
            memory_total_mib=512_000,
            gpus=[
                GpuFacts(
                    index=0,
                    uuid="GPU-0",
                    name="NVIDIA A100-SXM4-80GB",
                    gpu_type="A100-80GB",
                    memory_total_mib=81_920,
                ),
            ],
            agent_version="0.1.0",
        ),
        host=HostSample(cpu_pct=12.5, memory_used_mib=2_048, load1=0.7),
        gpu_samples=[GpuSample(index=0, utilization_pct=99.0, memory_used_mib=70_000)],
        attempts=[
            report(),
            report(
                attempt_id=4,
                state=AttemptState.EXITED,
                exit_code=-15,
                stopped_by_agent=True,
                log_data=bytes(range(256)),
            ),
        ],
        wait_s=20.0,
    )


def test_attempt_report_round_trips_non_utf8_log_bytes() -> None:
    original = report()
    text = original.model_dump_json()
    assert text.isascii()
    assert AttemptReport.model_validate_json(text) == original
    assert AttemptReport.model_validate_json(text).log_data == NOT_UTF8


def test_sync_request_round_trips_through_json() -> None:
    original = sync_request()
    assert SyncRequest.model_validate_json(original.model_dump_json()) == original


def test_sync_request_round_trips_through_json_loads_as_a_web_framework_does() -> None:
    # FastAPI parses the body with json.loads, then validates the Python objects.
    original = sync_request()
    assert SyncRequest.model_validate(json.loads(original.model_dump_json())) == original
    assert SyncRequest.model_validate(original.model_dump(mode="json")) == original


@pytest.mark.parametrize(
    "encoded",
    ["//6A", "__6A"],  # standard and URL-safe base64 of b"\xff\xfe\x80"
    ids=["standard", "urlsafe"],
)
def test_log_data_accepts_both_base64_alphabets(encoded: str) -> None:
    body = json.dumps({"attempt_id": 1, "state": "exited", "log_data": encoded})
    assert AttemptReport.model_validate_json(body).log_data == b"\xff\xfe\x80"


def test_log_data_that_is_not_base64_is_refused_with_the_field_name() -> None:
    body = json.dumps({"attempt_id": 1, "state": "exited", "log_data": "not base64!"})
    with pytest.raises(ValidationError) as raised:
        AttemptReport.model_validate_json(body)
    assert raised.value.errors()[0]["loc"] == ("log_data",)


def test_a_log_chunk_over_the_limit_is_refused() -> None:
    with pytest.raises(ValidationError):
        report(log_data=b"x" * (MAX_LOG_CHUNK_BYTES + 1))
    assert len(report(log_data=b"x" * MAX_LOG_CHUNK_BYTES).log_data) == MAX_LOG_CHUNK_BYTES


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        AttemptReport.model_validate({"attempt_id": 1, "state": "running", "colour": "red"})


def test_sync_reply_round_trips_through_json() -> None:
    reply = SyncReply(
        node_state="up",
        run=[
            AttemptLaunch(
                attempt_id=5,
                job_id=2,
                attempt_number=1,
                argv=["python", "t.py"],
                env={"CORRAL_JOB_ID": "2", "CUDA_VISIBLE_DEVICES": "0,1"},
                gpu_indices=[0, 1],
                node_rank=1,
                num_nodes=2,
                ray=True,
            )
        ],
        stop=[AttemptStop(attempt_id=4, reason="preempted", grace_period_s=10)],
        log_acks={4: 4096},
    )
    assert SyncReply.model_validate_json(reply.model_dump_json()) == reply
