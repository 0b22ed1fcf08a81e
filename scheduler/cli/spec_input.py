"""Build a job spec from ``-f job.yaml`` and the submit flags (flags win).

The file uses the field names of ``JobSpec`` (``resources: {gpus: 2}``,
``time_limit_s: 2h``); a flag overrides the same field of the file, ``--env`` entries
are merged over the file's ``env`` (``--secret-env-file``, then ``--secret-env``, over its
``secret_env``), and a command after ``--`` replaces the file's. A secret value is never
echoed back in a message.
Every mistake becomes one ``CliError`` line naming the file, the line or the field.

``spec_fields`` merges them without pydantic: a plain ``corral submit`` sends these
fields and the server validates them (``explain_refusal`` words a refusal as a local
check would). ``build_spec`` validates them into a ``JobSpec`` here: a ``-f`` file always
is (YAML holds values JSON cannot carry, such as dates), loading pydantic for it only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scheduler.cli.config import CliError
from scheduler.cli.templates import workload_fields
from scheduler.client_errors import CorralError
from scheduler.domain.units import MAX_NOTICE_S, canonical_signal, parse_duration_s, parse_notice

if TYPE_CHECKING:
    import yaml
    from pydantic import ValidationError

    from scheduler.domain.spec import JobSpec

NO_COMMAND = (
    "no command: give it after `--` (corral submit -g 1 -- python train.py) "
    "or as `command:` in the job file"
)


@dataclass(frozen=True)
class SpecFlags:
    """The submit flags; None means "not given" (the file or the default applies)."""

    name: str | None = None
    queue: str | None = None
    gpus: int | None = None
    nodes: int | None = None
    gpu_type: str | None = None
    gpu_memory: str | None = None
    cpus: float | None = None
    memory: str | None = None
    priority: int | None = None
    time_limit: str | None = None
    max_retries: int | None = None
    retry_on_exit_codes: Sequence[int] = field(default_factory=tuple)
    retry_on_timeout: bool | None = None
    signal: str | None = None
    preemptible: bool | None = None
    ray: bool | None = None
    grace_period: str | None = None
    env: Sequence[str] = field(default_factory=tuple)
    secret_env: Sequence[str] = field(default_factory=tuple)
    secret_env_file: Path | None = None
    workdir: str | None = None


def spec_fields(
    file: Path | None, flags: SpecFlags, command: Sequence[str], workload: str | None = None
) -> dict[str, Any]:
    """The spec's fields, unvalidated: a workload template, then the file's fields, then
    the flags, then the command (with a workload, the command words are its arguments)."""
    fields = load_spec_file(file) if file is not None else {}
    if workload is not None:
        try:
            base = workload_fields(workload, command)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        resources = {**base.get("resources", {}), **_mapping(fields.get("resources"), "resources")}
        fields = {**base, **fields, "resources": resources}
        command = ()
    fields = merge_flags(_yaml_scalars_as_strings(fields), flags)
    if command:
        fields["command"] = command_from_args(command)
    if not fields.get("command"):
        raise CliError(NO_COMMAND)
    return fields


def build_spec(
    file: Path | None, flags: SpecFlags, command: Sequence[str], workload: str | None = None
) -> JobSpec:
    """The validated spec of ``spec_fields``."""
    return validate_spec(spec_fields(file, flags, command, workload))


def validate_spec(fields: dict[str, Any]) -> JobSpec:
    """``JobSpec`` of ``fields``, every problem on one ``invalid job spec: ...`` line."""
    from pydantic import ValidationError

    from scheduler.domain.spec import JobSpec

    try:
        return JobSpec.model_validate(fields)
    except ValidationError as exc:
        raise CliError(f"invalid job spec: {format_validation_error(exc)}") from None


def request_body(
    file: Path | None, flags: SpecFlags, command: Sequence[str], workload: str | None = None
) -> dict[str, Any]:
    """What ``corral submit`` sends: the fields as merged, or, from a file, the
    validated spec as ``scheduler.client`` dumps it (only the fields that were given)."""
    fields = spec_fields(file, flags, command, workload)
    if file is None:
        return fields
    return validate_spec(fields).model_dump(mode="json", exclude_unset=True)


def explain_refusal(fields: dict[str, Any], refusal: CorralError) -> Exception:
    """The error to show for a submit the server refused.

    A spec the server found invalid is validated here too: that names every problem
    (the server names the first) in the words of ``build_spec``. A refusal for any
    other reason (an unknown queue, bad array indices) is shown as the server gave it.
    """
    if refusal.code != "invalid_request":
        return refusal
    try:
        validate_spec(fields)
    except CliError as exc:
        return exc
    return refusal


def command_from_args(args: Sequence[str]) -> list[str] | str:
    """One argument with whitespace is a shell string; anything else is an argv list."""
    if len(args) == 1 and any(char.isspace() for char in args[0]):
        return args[0]
    return list(args)


def load_spec_file(path: Path) -> dict[str, Any]:
    """The mapping in a YAML job file; a syntax error or a non-mapping is a ``CliError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    loaded = _parse_yaml(path, text)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise CliError(f"{path}: a job file must be a mapping of fields, not a {kind}")
    return dict(loaded)


def _parse_yaml(path: Path, text: str) -> Any:
    """``yaml.safe_load``, with every way it can fail as one ``CliError`` line.

    yaml is imported here: a submit without ``-f`` does not pay for it."""
    import yaml
    from yaml.reader import ReaderError

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise CliError(f"{where}: invalid YAML: {_one_line(_yaml_problem(exc))}") from None
    except ReaderError as exc:  # a control character YAML does not allow
        code = f" #x{exc.character:04x}" if isinstance(exc.character, int) else ""
        what = f"the character{code} at position {exc.position} is not allowed"
        raise CliError(f"{path}: invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise CliError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as exc:  # YAML reads it, Python cannot hold it: 2001-02-30, 5000 digits
        raise CliError(f"{path}: invalid YAML value: {_one_line(str(exc))}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """``expected ',' or ']', but got ':' (while parsing a flow sequence at line 2)``."""
    problem = exc.problem or exc.context or "malformed YAML"
    start, end = exc.context_mark, exc.problem_mark
    if exc.problem and exc.context and start and end and start.line != end.line:
        problem += f" ({exc.context} at line {start.line + 1})"
    return problem


def merge_flags(fields: dict[str, Any], flags: SpecFlags) -> dict[str, Any]:
    """A copy of ``fields`` with every given flag written over it."""
    merged = dict(fields)
    top = {
        "name": flags.name,
        "queue": flags.queue,
        "priority": flags.priority,
        "time_limit_s": flags.time_limit,
        "max_retries": flags.max_retries,
        "retry_on_exit_codes": list(flags.retry_on_exit_codes) or None,
        "retry_on_timeout": flags.retry_on_timeout,
        "signal": _signal(flags.signal),
        "preemptible": flags.preemptible,
        "ray": flags.ray,
        "grace_period_s": _grace_period(flags.grace_period),
        "workdir": flags.workdir,
    }
    merged.update({key: value for key, value in top.items() if value is not None})
    resources = {
        "gpus": flags.gpus,
        "nodes": flags.nodes,
        "gpu_type": flags.gpu_type,
        "gpu_memory_mib": flags.gpu_memory,
        "cpus": flags.cpus,
        "memory_mib": flags.memory,
    }
    given = {key: value for key, value in resources.items() if value is not None}
    if given:
        merged["resources"] = {**_mapping(merged.get("resources"), "resources"), **given}
    if flags.env:
        merged["env"] = {**_mapping(merged.get("env"), "env"), **parse_env(flags.env)}
    secrets = read_secret_env_file(flags.secret_env_file) if flags.secret_env_file else {}
    secrets.update(parse_secret_env(flags.secret_env))
    if secrets:
        merged["secret_env"] = {**_mapping(merged.get("secret_env"), "secret_env"), **secrets}
    return merged


def parse_env(items: Sequence[str]) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--env expects KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def parse_secret_env(items: Sequence[str]) -> dict[str, str]:
    """``["TOKEN=abc"]`` -> ``{"TOKEN": "abc"}``; a mistake names no value."""
    secrets: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError("--secret-env expects NAME=VALUE (one entry has no NAME= part)")
        secrets[key] = value
    return secrets


def read_secret_env_file(path: Path) -> dict[str, str]:
    """``NAME=VALUE`` lines (blank lines and ``#`` comments skipped), the value taken
    as written up to the line's end: the values stay out of shell history."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    secrets: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{path}:{number}: expected NAME=VALUE")
        secrets[key.strip()] = value
    return secrets


def format_validation_error(exc: ValidationError) -> str:
    """All of pydantic's complaints on one line: ``resources.gpus: Input should be ...``."""
    parts = []
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        location = ".".join(_location_part(part) for part in error["loc"])
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def _location_part(part: Any) -> str:
    """A key as written, or quoted when it holds a line break or another unprintable."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _yaml_scalars_as_strings(fields: dict[str, Any]) -> dict[str, Any]:
    """``command: [sleep, 5]`` and ``env: {SEED: 1}`` mean strings; YAML reads numbers."""
    fixed = dict(fields)
    command = fixed.get("command")
    if isinstance(command, list):
        fixed["command"] = [_scalar(item) for item in command]
    for name in ("env", "secret_env"):
        env = fixed.get(name)
        if isinstance(env, dict):
            fixed[name] = {key: _scalar(value) for key, value in env.items()}
    return fixed


def _scalar(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CliError(f"invalid job spec: {name}: must be a mapping")
    return dict(value)


def _grace_period(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        seconds = parse_duration_s(value)
    except ValueError as exc:
        raise CliError(f"invalid job spec: grace_period_s: {exc}") from None
    return int(seconds)


def _signal(value: str | None) -> str | None:
    """``--signal`` checked here and sent as typed (``USR1@60``): the server parses it."""
    if value is None:
        return None
    try:
        notice = parse_notice(value)
    except ValueError as exc:
        raise CliError(f"invalid job spec: signal: {exc}") from None
    try:
        canonical_signal(notice["name"])
    except ValueError as exc:
        raise CliError(f"invalid job spec: signal.name: {exc}") from None
    if not 1 <= notice["notice_s"] <= MAX_NOTICE_S:
        raise CliError(f"invalid job spec: signal.notice_s: must be 1..{MAX_NOTICE_S} seconds")
    return value
