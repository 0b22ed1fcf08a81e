"""The agent sync protocol: what an agent reports and the desired state it gets back.

Level-triggered and idempotent. Every sync carries the agent's whole actual state
(node facts, samples, every attempt it still holds); the reply is the node's whole
desired state. A lost request or reply is repaired by the next sync.

Agent rules, applied to each reply:
- start every attempt in ``run`` that it does not hold yet and has not already ended;
- stop (SIGTERM, grace, SIGKILL) every attempt in ``stop``;
- stop every attempt it holds that is in neither list (the server no longer wants it);
- forget an ended attempt once it is in neither list and ``log_acks`` covers its log.

Server rules: ``log_acks`` names every attempt the request reported; an attempt in
``stop`` that the agent no longer reports is over (it never started there, or it was
forgotten), so the server never waits for an end report of it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scheduler.domain.spec import reject_nul

MAX_LOG_CHUNK_BYTES = 256 * 1024
INT31 = 2**31 - 1  # bounds that keep reported numbers inside the database's columns
INT63 = 2**63 - 1
MAX_WAIT_S = 30.0


class _Msg(BaseModel):
    """What an agent sends: validated strictly (an unknown field is a 422, and so is a
    NUL character in any text)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    _no_nul = field_validator("*")(reject_nul)


class _Reply(BaseModel):
    """What the server sends: unknown fields are ignored, so a newer server can add
    fields without breaking older agents during a rolling upgrade."""

    model_config = ConfigDict(extra="ignore")


class GpuFacts(_Msg):
    index: int = Field(ge=0, le=1023)
    uuid: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=128, description="e.g. NVIDIA A100-SXM4-80GB")
    gpu_type: str = Field(min_length=1, max_length=64, description="short type, e.g. A100-80GB")
    memory_total_mib: int = Field(ge=0, le=INT63)


class GpuSample(_Msg):
    """One reading of one GPU; a field NVML could not read is None."""

    index: int = Field(ge=0, le=1023)
    utilization_pct: float | None = Field(default=None, ge=0, le=100)
    memory_used_mib: int | None = Field(default=None, ge=0, le=INT63)
    temperature_c: float | None = Field(default=None, ge=-273, le=1000)
    power_w: float | None = Field(default=None, ge=0, le=1e6)
    ecc_errors: int | None = Field(default=None, ge=0, le=INT63)
    healthy: bool = True


class HostSample(_Msg):
    cpu_pct: float | None = Field(default=None, ge=0, le=1e6)
    memory_used_mib: int | None = Field(default=None, ge=0, le=INT63)
    load1: float | None = Field(default=None, ge=0, le=1e9)


class NodeFacts(_Msg):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    hostname: str = Field(min_length=1, max_length=255)
    cpus: int = Field(ge=1, le=INT31)
    memory_total_mib: int = Field(ge=0, le=INT63)
    gpus: list[GpuFacts] = Field(default_factory=list, max_length=1024)
    agent_version: str = Field(default="", max_length=64)

    @field_validator("gpus")
    @classmethod
    def _distinct_gpus(cls, gpus: list[GpuFacts]) -> list[GpuFacts]:
        for key, what in (("index", "index"), ("uuid", "UUID")):
            values = [getattr(g, key) for g in gpus]
            if len(set(values)) != len(values):
                raise ValueError(f"two GPUs have the same {what}")
        return gpus


class AttemptState(StrEnum):
    RUNNING = "running"  # its process group is alive
    STOPPING = "stopping"  # SIGTERM sent, waiting for exit within the grace period
    EXITED = "exited"  # exited; exit_code is set (negative: killed by that signal)
    LAUNCH_FAILED = "launch_failed"  # could not be started (bad workdir, no such command)


class ProgressReport(_Msg):
    """What the job's progress file says (``CORRAL_CHECKPOINT_DIR/progress.json``)."""

    step: int | None = Field(default=None, ge=0, le=INT63)
    last_checkpoint_step: int | None = Field(default=None, ge=0, le=INT63)
    last_checkpoint_at: float | None = Field(default=None, ge=0, le=1e11, description="epoch s")
    resumed_from_step: int | None = Field(default=None, ge=0, le=INT63)


class AttemptReport(_Msg):
    attempt_id: int = Field(ge=1, le=INT31)
    state: AttemptState
    pid: int | None = Field(default=None, ge=0, le=INT31)
    exit_code: int | None = Field(default=None, ge=-INT31, le=INT31)
    stopped_by_agent: bool = Field(
        default=False, description="the agent signalled it (a stop), so the exit is not a crash"
    )
    message: str = Field(default="", max_length=2000)
    log_offset: int = Field(
        default=0, ge=0, le=INT63, description="byte offset of log_data in the log"
    )
    log_data: bytes = Field(
        default=b"", max_length=MAX_LOG_CHUNK_BYTES, description="base64 in JSON"
    )
    progress: ProgressReport | None = Field(
        default=None, description="the job's progress file, when it keeps one"
    )


class SyncRequest(_Msg):
    node: NodeFacts
    host: HostSample | None = None
    gpu_samples: list[GpuSample] = Field(default_factory=list, max_length=1024)
    attempts: list[AttemptReport] = Field(default_factory=list, max_length=10000)
    wait_s: float = Field(
        default=0.0, ge=0.0, le=MAX_WAIT_S, description="long poll: hold the reply this long"
    )


class AttemptLaunch(_Reply):
    attempt_id: int
    job_id: int
    attempt_number: int
    argv: list[str]
    workdir: str | None = None
    env: dict[str, str] = Field(
        default_factory=dict,
        description="the job's env plus CORRAL_* and CUDA_VISIBLE_DEVICES",
    )
    gpu_indices: list[int] = Field(default_factory=list)
    grace_period_s: int = 30
    node_rank: int = 0
    num_nodes: int = 1
    ray: bool = False
    time_limit_s: int | None = None
    notice_signal: str | None = Field(
        default=None, description="e.g. USR1: sent notice_s before a time limit or a preemption"
    )
    notice_s: int = 0
    cpus: float | None = Field(default=None, description="the job's CPUs per node, if asked")
    memory_mib: int | None = Field(default=None, description="host memory per node, if asked")


class AttemptStop(_Reply):
    attempt_id: int
    reason: str
    grace_period_s: int = 30
    notice_signal: str | None = Field(
        default=None, description="send this first and wait notice_s before SIGTERM"
    )
    notice_s: int = 0


class SyncReply(_Reply):
    node_state: str
    run: list[AttemptLaunch] = Field(default_factory=list)
    stop: list[AttemptStop] = Field(default_factory=list)
    log_acks: dict[int, int] = Field(
        default_factory=dict, description="attempt id -> bytes of its log the server holds"
    )
    sync_interval_s: float = 2.0
    node_timeout_s: float | None = Field(
        default=None,
        description="the server declares the node lost after this long without a sync; an "
        "agent that cannot reach the server for this long stops its attempts itself",
    )
