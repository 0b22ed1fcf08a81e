"""The job commands: ``submit``, ``jobs``, ``show``, ``logs``, ``cancel``.

Each command parses its input, calls one method of ``CorralClient`` and renders the
view with ``scheduler.cli.render``. That module (rich, tables) loads on first use.
A plain ``corral submit`` is a short-lived process, so it imports no more than it
uses: its spec is built from plain dicts, sent by ``scheduler.cli.lightclient``
(standard library) and answered with one line; pydantic, httpx and rich load only
for what needs them (``-f``, ``--json``, ``--wait``, an error to explain).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click

from scheduler.cli.config import CliContext, CliError, cli_context
from scheduler.cli.spec_input import SpecFlags, explain_refusal, request_body
from scheduler.cli.templates import WORKLOADS
from scheduler.client_errors import CorralError
from scheduler.domain.status import JobStatus
from scheduler.domain.units import parse_array_indices

if TYPE_CHECKING:
    from scheduler.cli.lightclient import LightClient
    from scheduler.domain.views import JobView

JSON_HELP = "print JSON instead of a table"


class _OnFirstUse:
    """A module imported when one of its names is first looked up."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)


if TYPE_CHECKING:
    from scheduler.cli import render
else:
    render = _OnFirstUse("scheduler.cli.render")


def job_id_type() -> click.IntRange:
    return click.IntRange(min=1)


@click.command(
    context_settings={"allow_interspersed_args": False},
    epilog="""Examples:

\b
  corral submit -g 2 -- python train.py --lr 3e-4
  corral submit -f job.yaml --priority 10 --wait
  corral submit -q research -e SEED=1 -- 'echo hi && sleep 1'
  corral submit --max-retries 3 --retry-on-exit-code 75 --signal USR1@60 -- ./train.sh
  corral submit --secret-env-file ./secrets.env -- ./upload.sh
""",
)
@click.option(
    "-f",
    "--file",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML job spec (JobSpec fields); flags override it",
)
@click.option("--name", help="job name [default: from the command]")
@click.option("-q", "--queue", help="queue to submit to [default: default]")
@click.option("-g", "--gpus", type=int, help="GPUs per node [default: 1]")
@click.option("-N", "--nodes", type=int, help="number of nodes (a gang) [default: 1]")
@click.option("--gpu-type", help="GPU type, e.g. A100-80GB [default: any]")
@click.option("--gpu-memory", metavar="SIZE", help="minimum memory per GPU, e.g. 40G")
@click.option("--cpus", type=float, help="CPUs per node")
@click.option("--memory", metavar="SIZE", help="host memory per node, e.g. 64G")
@click.option("--priority", type=int, help="-1000..1000, higher runs first [default: 0]")
@click.option("--time-limit", metavar="DURATION", help="stop it after this long, e.g. 2h")
@click.option("--max-retries", type=int, help="retries after failures [default: 0]")
@click.option(
    "--retry-on-exit-code",
    "retry_on_exit_codes",
    type=int,
    multiple=True,
    metavar="N",
    help="retry only these exit codes (repeat) [default: any non-zero]",
)
@click.option(
    "--retry-on-timeout/--no-retry-on-timeout",
    default=None,
    help="retry (counted) when the time limit is reached",
)
@click.option(
    "--signal",
    metavar="SIG@SECONDS",
    help="send SIG this long before the time limit or a preemption, e.g. USR1@60",
)
@click.option("--preemptible/--no-preemptible", default=None, help="may be stopped and requeued")
@click.option("--ray/--no-ray", default=None, help="start a per-job Ray cluster")
@click.option(
    "--workload",
    type=click.Choice(sorted(WORKLOADS)),
    help="run python -m workloads.NAME with the words after -- as its arguments",
)
@click.option("--grace-period", metavar="DURATION", help="SIGTERM to SIGKILL [default: 30s]")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE", help="set a variable")
@click.option(
    "--secret-env",
    multiple=True,
    metavar="NAME=VALUE",
    help="set a variable whose value is never shown (views show ***)",
)
@click.option(
    "--secret-env-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="secret variables from NAME=VALUE lines, kept out of shell history",
)
@click.option("--workdir", help="absolute working directory on the node")
@click.option("--idempotency-key", help="a retried submit with this key makes no second job")
@click.option(
    "--array",
    "array",
    metavar="INDICES",
    help="a job array, one job per index (0-999, 0-9:2, 1,3,5); each gets CORRAL_ARRAY_INDEX",
)
@click.option("--wait", is_flag=True, help="wait for the end; exit with the job's exit code")
@click.option("--json", "as_json", is_flag=True, help="print the job as JSON")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def submit(
    *,
    spec_file: Path | None,
    command: tuple[str, ...],
    idempotency_key: str | None,
    array: str | None,
    wait: bool,
    as_json: bool,
    workload: str | None,
    **flags: Any,
) -> None:
    """Submit a job: COMMAND runs on the GPUs it asks for.

    Options come before the command; put the command after `--`. A single argument
    with spaces runs through /bin/sh -c, several arguments run as an argv list.
    """
    body = request_body(spec_file, SpecFlags(**flags), command, workload)
    if array is not None and wait:
        raise CliError("--wait does not apply to --array; follow it with `corral jobs --array ID`")
    if array is not None and "%" in array:
        raise CliError(f"--array {array!r}: a concurrency cap (%N) is not supported")
    if array is not None:
        _check_indices(array)
    from scheduler.cli.lightclient import client_for  # http.client: only submit needs it

    context = cli_context()
    client = client_for(context)
    if array is not None:
        submit_array(client, body, array, idempotency_key, as_json=as_json)
        return
    try:
        job = client.submit(body, idempotency_key)
    except CorralError as exc:
        raise explain_refusal(body, exc) from None
    if not as_json:
        click.echo(f"submitted job {job.id} ({job.name}) to queue {job.queue}")
    if wait:
        wait_for_job(context, job.id, as_json=as_json)
    elif as_json:
        from scheduler.domain.views import JobView

        render.echo_json(JobView.model_validate(job.reply))


def wait_for_job(context: CliContext, job_id: int, *, as_json: bool) -> None:
    """Report each start, then the outcome; exit with the job's exit code."""
    with context.client() as client:
        job = client.wait(job_id, on_update=None if as_json else _StartReporter())
    if as_json:
        render.echo_json(job)
    else:
        render.print_line(render.job_outcome(job))
    raise SystemExit(exit_code_of(job))


def _check_indices(indices: str) -> None:
    """``--array`` checked before anything is sent, in the server's words."""
    try:
        parse_array_indices(indices)
    except ValueError as exc:
        raise CliError(f"indices: {exc}") from None


def submit_array(
    client: LightClient,
    spec: dict[str, Any],
    indices: str,
    idempotency_key: str | None,
    *,
    as_json: bool,
) -> None:
    """One request makes the whole array; its id is the id of its first job."""
    try:
        result = client.submit_array(spec, indices, idempotency_key)
    except CorralError as exc:
        raise explain_refusal(spec, exc) from None
    if as_json:
        from scheduler.domain.views import BatchResult

        render.echo_json(BatchResult.model_validate(result.reply))
        return
    ids = result.job_ids
    queue = spec.get("queue") or "default"  # the server's default queue when none was given
    click.echo(
        f"submitted array {result.array_id} ({len(ids)} jobs, {ids[0]}..{ids[-1]}) to queue {queue}"
    )


class _StartReporter:
    """While waiting, one line each time an attempt of the job starts running."""

    def __init__(self) -> None:
        self.reported_attempt = 0

    def __call__(self, job: JobView) -> None:
        if job.status == JobStatus.RUNNING and job.attempts_count > self.reported_attempt:
            self.reported_attempt = job.attempts_count
            render.print_line(render.job_started(job))


def exit_code_of(job: JobView) -> int:
    """0 for succeeded; the exit code for failed (1 if none); 1 for cancelled."""
    if job.status == JobStatus.SUCCEEDED:
        return 0
    code = job.exit_code
    if code is None and job.attempts:
        code = job.attempts[-1].exit_code
    if job.status != JobStatus.FAILED or not code:
        return 1
    if code < 0:  # killed by signal N: the shell's 128 + N
        return min(128 - code, 255)
    return code if code <= 255 else 1


@click.command(
    "jobs",
    epilog="""Examples:

\b
  corral jobs
  corral jobs --status pending,running --queue research
  corral jobs --all --json
  corral jobs --export history.jsonl --since 30d   # for corral simulate --trace
""",
)
@click.option(
    "-s", "--status", "statuses", multiple=True, help="only these statuses (repeat or a,b)"
)
@click.option("-q", "--queue", help="only this queue")
@click.option("--name", help="only jobs with this name")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--all", "all_pages", is_flag=True, help="every job, page after page")
@click.option("--array", "array_id", type=job_id_type(), help="only the jobs of this array")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option(
    "--export",
    metavar="FILE",
    help="write the jobs that ended as JSON lines (- for stdout), for corral simulate",
)
@click.option("--since", metavar="WHEN", help="with --export: ended since (7d, or an ISO time)")
def list_jobs(
    *,
    statuses: tuple[str, ...],
    queue: str | None,
    name: str | None,
    limit: int,
    all_pages: bool,
    array_id: int | None,
    as_json: bool,
    export: str | None,
    since: str | None,
) -> None:
    """List jobs, newest first."""
    if export is not None or since is not None:
        from scheduler.cli.export import export_history  # imported only when asked

        others = statuses or name or array_id is not None or all_pages or as_json
        if export is None or others:
            raise CliError("--export takes only --queue and --since; --since needs --export")
        export_history(export, queue, since)
        return
    from scheduler.domain.views import JobList

    wanted = parse_statuses(statuses)
    with cli_context().client() as client:
        if all_pages:
            found = JobList(jobs=list(client.iter_jobs(wanted, queue, name, array_id=array_id)))
        else:
            found = client.list_jobs(wanted, queue, name, limit=limit, array_id=array_id)
    if as_json:
        render.echo_json(found)
    else:
        render.print_jobs(found)


def parse_statuses(values: tuple[str, ...]) -> list[str] | None:
    """``("pending,running", "failed")`` -> three statuses; an unknown one is an error."""
    wanted = [part.strip() for value in values for part in value.split(",") if part.strip()]
    known = [status.value for status in JobStatus]
    for status in wanted:
        if status not in known:
            raise CliError(f"unknown status {status!r} (one of {', '.join(known)})")
    return wanted or None


@click.command(
    epilog="""Examples:

\b
  corral show 12
  corral show 12 --json | jq .attempts
""",
)
@click.argument("job_id", type=job_id_type())
@click.option("--json", "as_json", is_flag=True, help="print the job as JSON")
def show(job_id: int, as_json: bool) -> None:
    """Show a job: why it waits, its attempts and its events."""
    with cli_context().client() as client:
        job = client.get_job(job_id)
    if as_json:
        render.echo_json(job)
    else:
        render.print_job(job)


@click.command(
    epilog="""Examples:

\b
  corral logs 12
  corral logs 12 --attempt 1
  corral logs -f 12
""",
)
@click.argument("job_id", type=job_id_type())
@click.option("--attempt", type=click.IntRange(min=1), help="attempt number [default: latest]")
@click.option("-f", "--follow", is_flag=True, help="keep printing until the job ends")
@click.option("--json", "as_json", is_flag=True, help="one JSON log chunk per line")
def logs(job_id: int, attempt: int | None, follow: bool, as_json: bool) -> None:
    """Print the output (stdout and stderr) of a job's attempt."""
    shown_attempt = attempt
    with cli_context().client() as client:
        for chunk in client.iter_logs(job_id, attempt, follow=follow):
            if as_json:
                click.echo(chunk.model_dump_json())
                continue
            if follow and shown_attempt is not None and chunk.attempt != shown_attempt:
                render.print_line(f"--- attempt {chunk.attempt} ---", err=True)
            shown_attempt = chunk.attempt
            click.echo(chunk.data, nl=False)


@click.command(
    epilog="""Examples:

\b
  corral cancel 12
  corral cancel 12 13 14
  corral cancel --array 20
""",
)
@click.argument("job_ids", nargs=-1, type=job_id_type())
@click.option(
    "--array", "array_id", type=job_id_type(), help="cancel every job of this array that runs"
)
@click.option("--json", "as_json", is_flag=True, help="print the jobs and errors as JSON")
def cancel(job_ids: tuple[int, ...], array_id: int | None, as_json: bool) -> None:
    """Cancel jobs; running ones are stopped (SIGTERM, grace period, SIGKILL)."""
    if array_id is not None:
        if job_ids:
            raise CliError("give job ids or --array, not both")
        cancel_array(array_id, as_json)
        return
    if not job_ids:
        raise CliError("no job to cancel: give job ids or --array ID")
    done: list[JobView] = []
    errors: list[dict[str, Any]] = []
    with cli_context().client() as client:
        for job_id in job_ids:
            try:
                job = client.cancel(job_id)
            except CorralError as exc:
                if exc.status is None:
                    raise  # the server is unreachable: no point trying the other ids
                errors.append({"id": job_id, "code": exc.code, "message": exc.message})
                if not as_json:
                    render.print_line(f"error: job {job_id}: {exc.message}", err=True)
                continue
            done.append(job)
            if not as_json:
                render.print_line(render.job_cancelled(job))
    if as_json:
        render.echo_json({"jobs": done, "errors": errors})
    if errors:
        raise SystemExit(1)


def cancel_array(array_id: int, as_json: bool) -> None:
    """One request cancels the array's jobs that have not ended."""
    with cli_context().client() as client:
        result = client.cancel_array(array_id)
    if as_json:
        render.echo_json(result)
    else:
        render.print_line(f"cancelled array {array_id}: {len(result.job_ids)} job(s) not yet ended")
