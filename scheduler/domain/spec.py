"""What users ask for: the job spec and the queue spec, validated at the boundary.

A ``JobSpec`` comes from a YAML file or from CLI flags; both go through the same
pydantic model, so an unknown field, a negative GPU count or a malformed duration is
rejected with the field's name and the reason before anything is stored.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from scheduler.domain.units import (
    EXIT_CODE_RANGE,
    MAX_ARRAY_INDEX,
    MAX_BATCH_JOBS,
    MAX_DURATION_S,
    MAX_NOTICE_S,
    MAX_SIZE_MIB,
    canonical_signal,
    parse_array_indices,
    parse_duration_s,
    parse_notice,
    parse_size_mib,
)

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_ENV_PREFIXES = ("CORRAL_",)
RESERVED_ENV_KEYS = frozenset({"CUDA_VISIBLE_DEVICES", "RAY_ADDRESS"})
SECRET_MASK = "***"  # what every view of a job shows in place of a secret env value


def reject_nul(value: Any) -> Any:
    """Refuse text holding a NUL character, in strings and inside lists and mappings.

    No argv word, environment entry or path can carry one, and PostgreSQL text columns
    refuse it; a NUL that got in would fail far from the request that brought it.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key)
            reject_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            reject_nul(item)
    return value


Text = Annotated[str, AfterValidator(reject_nul)]  # any text a request may carry


def check_env_name(key: str) -> None:
    """Refuse a name no process env can hold, or one corral sets itself."""
    if not ENV_KEY_RE.match(key):
        raise ValueError(f"not an environment variable name: {key!r}")
    if key in RESERVED_ENV_KEYS or key.startswith(RESERVED_ENV_PREFIXES):
        raise ValueError(f"{key} is set by corral and cannot be given")


def masked_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored spec as users may see it: each ``secret_env`` value becomes ``***``.

    ``{"env": {"A": "1"}, "secret_env": {"KEY": "s3cr3t"}}`` ->
    ``{"env": {"A": "1"}, "secret_env": {"KEY": "***"}}``: the names stay, so a user
    can tell which secrets a job was given.
    """
    shown = dict(spec)
    secrets = shown.get("secret_env")
    if isinstance(secrets, Mapping):
        shown["secret_env"] = {name: SECRET_MASK for name in secrets}
    return shown


class Notice(BaseModel):
    """A signal sent ``notice_s`` before the time limit or a planned preemption (Slurm's
    ``--signal USR1@60``), so the job can checkpoint before the SIGTERM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="signal name without SIG (USR1) or a number (40)")
    notice_s: int = Field(ge=1, le=MAX_NOTICE_S, description="seconds of notice")

    _name = field_validator("name")(canonical_signal)

    def __str__(self) -> str:
        return f"{self.name}@{self.notice_s}"


SizeMiB = Annotated[int, Field(ge=1, le=MAX_SIZE_MIB)]
Seconds = Annotated[int, Field(ge=1, le=MAX_DURATION_S)]


class Resources(BaseModel):
    """What one job needs: ``gpus`` on each of ``nodes`` nodes (a gang: all or none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: int = Field(default=1, ge=0, le=64, description="GPUs per node")
    nodes: int = Field(default=1, ge=1, le=1024, description="number of nodes")
    gpu_type: str | None = Field(
        default=None, min_length=1, max_length=64, description="e.g. A100-80GB; any if unset"
    )
    gpu_memory_mib: SizeMiB | None = Field(
        default=None, description="minimum memory of each GPU (MiB, or a size like 40G)"
    )
    cpus: float | None = Field(default=None, gt=0, le=4096, description="CPUs per node")
    memory_mib: SizeMiB | None = Field(
        default=None, description="host memory per node (MiB, or a size like 64G)"
    )

    _sizes = field_validator("gpu_memory_mib", "memory_mib", mode="before")(parse_size_mib)
    _no_nul = field_validator("*")(reject_nul)

    @property
    def total_gpus(self) -> int:
        return self.gpus * self.nodes


class JobSpec(BaseModel):
    """A user's request to run a workload on GPUs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, pattern=NAME_RE, description="defaults to argv[0]")
    queue: str = Field(default="default", pattern=NAME_RE)
    command: list[str] | str = Field(
        description="argv list, or a string run by /bin/sh -c", min_length=1
    )
    workdir: str | None = Field(
        default=None, description="absolute directory on the node; the attempt's own if unset"
    )
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="env whose values are never shown: views of the job show ***",
    )
    resources: Resources = Field(default_factory=Resources)
    priority: int = Field(default=0, ge=-1000, le=1000, description="higher runs first")
    time_limit_s: Seconds | None = Field(
        default=None, description="stop the attempt after this long (s, or e.g. 2h)"
    )
    max_retries: int = Field(default=0, ge=0, le=100, description="retries after failures")
    retry_on_exit_codes: list[int] | None = Field(
        default=None,
        max_length=64,
        description="retry only these exit codes (None: any non-zero); 137 also matches -9",
    )
    retry_on_timeout: bool = Field(
        default=False, description="retry (counted) when the time limit is reached"
    )
    signal: Notice | None = Field(
        default=None, description="e.g. USR1@60: this signal 60 s before a time limit or preemption"
    )
    preemptible: bool = Field(default=True, description="may be stopped and requeued")
    ray: bool = Field(default=False, description="start a per-job Ray cluster")
    grace_period_s: int = Field(
        default=30, ge=0, le=3600, description="SIGTERM to SIGKILL, seconds"
    )

    _duration = field_validator("time_limit_s", mode="before")(parse_duration_s)
    _notice = field_validator("signal", mode="before")(parse_notice)
    _no_nul = field_validator("*")(reject_nul)

    @field_validator("retry_on_exit_codes")
    @classmethod
    def _exit_codes(cls, codes: list[int] | None) -> list[int] | None:
        if codes is None:
            return None
        low, high = EXIT_CODE_RANGE
        for code in codes:
            if code == 0:
                raise ValueError("exit code 0 is a success, not a failure to retry")
            if not low <= code <= high:
                raise ValueError(f"exit code {code} is out of range ({low}..{high})")
        return sorted(set(codes))

    @field_validator("command")
    @classmethod
    def _command_not_blank(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str) and not value.strip():
            raise ValueError("command is empty")
        if isinstance(value, list) and (not value or not value[0]):
            raise ValueError("command is empty")
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir_absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("workdir must be an absolute path")
        return value

    @field_validator("env")
    @classmethod
    def _env_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            check_env_name(key)
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        """Names as for ``env``; a message names the variable, never its value."""
        for key, secret in value.items():
            check_env_name(key)
            if "\x00" in secret.get_secret_value():
                raise ValueError(f"the value of {key} must not contain a NUL character")
        return value

    @field_serializer("secret_env")
    def _secret_values(self, value: dict[str, SecretStr]) -> dict[str, str]:
        """A dump carries the values: it is what travels to the server and is stored
        there for the agent. What users see goes through ``masked_spec``; ``repr`` and
        validation errors show ``SecretStr('**********')``."""
        return {key: secret.get_secret_value() for key, secret in value.items()}

    @model_validator(mode="after")
    def _env_names_distinct(self) -> JobSpec:
        both = sorted(self.env.keys() & self.secret_env.keys())
        if both:
            raise ValueError(f"{', '.join(both)}: given in both env and secret_env")
        return self

    @model_validator(mode="after")
    def _multi_node_needs_gpus(self) -> JobSpec:
        if self.resources.nodes > 1 and self.resources.gpus == 0:
            raise ValueError("a multi-node job must ask for GPUs on each node")
        return self

    @model_validator(mode="after")
    def _notice_before_the_limit(self) -> JobSpec:
        limit_s, notice = self.time_limit_s, self.signal
        if limit_s is not None and notice is not None and notice.notice_s >= limit_s:
            raise ValueError(
                f"signal: the notice ({notice.notice_s}s) must come before the time limit "
                f"({limit_s}s)"
            )
        return self

    def retries_exit_code(self, code: int | None) -> bool:
        """Whether a failure with ``code`` may be retried (``max_retries`` aside).

        None (a launch failure) matches only when no list is given; a signal death
        ``-N`` also matches the shell's ``128 + N`` (``-9`` matches 137).
        """
        if self.retry_on_exit_codes is None:
            return True
        if code is None:
            return False
        return code in self.retry_on_exit_codes or (
            code < 0 and 128 - code in self.retry_on_exit_codes
        )

    def job_env(self) -> dict[str, str]:
        """The variables the job is given: ``env`` and the values of ``secret_env``."""
        secrets = {key: secret.get_secret_value() for key, secret in self.secret_env.items()}
        return {**self.env, **secrets}

    def argv(self) -> list[str]:
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return list(self.command)

    def display_name(self) -> str:
        if self.name:
            return self.name
        if isinstance(self.command, list):
            word = self.command[0]
        else:
            try:
                word = shlex.split(self.command)[0]
            except (ValueError, IndexError):  # unbalanced quotes: sh will say so at run time
                word = self.command.split()[0]
        base = word.rsplit("/", 1)[-1]
        cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", base)[:128].lstrip("._-")
        return cleaned or "job"


MAX_QUOTA_GPUS = 1_000_000  # far above any cluster; keeps counts inside 32-bit columns


class TypeQuotaSpec(BaseModel):
    """A queue's guarantee and cap for one GPU type, on top of its totals."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_type: str = Field(min_length=1, max_length=64, description="e.g. A100-80GB")
    guaranteed_gpus: int = Field(default=0, ge=0, le=MAX_QUOTA_GPUS)
    max_gpus: int | None = Field(default=None, ge=0, le=MAX_QUOTA_GPUS)

    _no_nul = field_validator("*")(reject_nul)

    @model_validator(mode="after")
    def _cap_above_guarantee(self) -> TypeQuotaSpec:
        if self.max_gpus is not None and self.max_gpus < self.guaranteed_gpus:
            raise ValueError("max_gpus must not be below guaranteed_gpus")
        return self


def _distinct_types(quotas: list[TypeQuotaSpec] | None) -> list[TypeQuotaSpec] | None:
    """One quota per GPU type (types match case-insensitively, as placement does)."""
    seen: set[str] = set()
    for quota in quotas or []:
        key = quota.gpu_type.casefold()
        if key in seen:
            raise ValueError(f"GPU type {quota.gpu_type!r} is given twice")
        seen.add(key)
    return quotas


class QueueSpec(BaseModel):
    """A fair-share unit (a team or project).

    ``parent`` names its org: a queue that exists and has no parent itself (one level
    of nesting). An org's guarantee is shared by its children and its cap caps their
    sum; jobs go to leaf queues only (the store checks both, it knows the queues).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_RE)
    weight: float = Field(default=1.0, gt=0, le=1e6)
    guaranteed_gpus: int = Field(default=0, ge=0, le=MAX_QUOTA_GPUS)
    borrow_limit_gpus: int | None = Field(default=None, ge=0, le=MAX_QUOTA_GPUS)
    max_gpus: int | None = Field(default=None, ge=0, le=MAX_QUOTA_GPUS)
    parent: str | None = Field(default=None, pattern=NAME_RE, description="its org, if any")
    type_quotas: list[TypeQuotaSpec] = Field(default_factory=list, max_length=64)
    idle_action: Literal["none", "stop"] = Field(
        default="none",
        description="what to do with an attempt whose GPUs all stay idle: flag it only "
        "(none) or stop it (stop)",
    )

    _types = field_validator("type_quotas")(_distinct_types)

    @field_validator("parent")
    @classmethod
    def _not_its_own_parent(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and value == info.data.get("name"):
            raise ValueError("a queue cannot be its own parent")
        return value

    @model_validator(mode="after")
    def _cap_above_guarantee(self) -> QueueSpec:
        if self.max_gpus is not None and self.max_gpus < self.guaranteed_gpus:
            raise ValueError("max_gpus must not be below guaranteed_gpus")
        return self


class QueuePatch(BaseModel):
    """A partial update of a queue; fields left out keep their value.

    ``parent: null`` makes it a top-level queue; ``type_quotas`` replaces the whole
    list (``[]`` or ``null`` clears it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float | None = Field(default=None, gt=0, le=1e6)
    guaranteed_gpus: int | None = Field(default=None, ge=0, le=MAX_QUOTA_GPUS)
    borrow_limit_gpus: int | None = Field(default=None, ge=0, le=MAX_QUOTA_GPUS)
    max_gpus: int | None = Field(default=None, ge=0, le=MAX_QUOTA_GPUS)
    parent: str | None = Field(default=None, pattern=NAME_RE)
    type_quotas: list[TypeQuotaSpec] | None = Field(default=None, max_length=64)
    idle_action: Literal["none", "stop"] | None = Field(default=None)

    _types = field_validator("type_quotas")(_distinct_types)


class BatchSubmit(BaseModel):
    """Many jobs in one request, stored all or none in one transaction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: list[JobSpec] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class ArraySubmit(BaseModel):
    """A job array: one job per index, each told its index in ``CORRAL_ARRAY_INDEX``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: JobSpec
    indices: list[Annotated[int, Field(ge=0, le=MAX_ARRAY_INDEX)]] = Field(
        min_length=1,
        max_length=MAX_BATCH_JOBS,
        description="a list, or a range string: 0-999, 0-9:2, 1,3,5",
    )

    _indices = field_validator("indices", mode="before")(parse_array_indices)

    @field_validator("indices")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("an index is given twice")
        return sorted(value)
