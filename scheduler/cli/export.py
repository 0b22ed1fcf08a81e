"""``corral jobs --export FILE``: the jobs that ended, one JSON line each, oldest first.

The lines are what ``corral simulate --trace FILE`` replays (``scheduler.sim.history``
describes the fields), so an operator can try a policy on the cluster's own history.
Written to a temporary file beside FILE and renamed at the end: an interrupted export
never leaves half a file under the name asked for.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from scheduler.cli import render
from scheduler.cli.config import CliError, cli_context
from scheduler.client import CorralClient
from scheduler.sim.history import history_line


def export_history(target: str, queue: str | None, since: str | None) -> None:
    with cli_context().client() as client:
        if target == "-":
            _write(client, queue, since, sys.stdout)
            return
        path = Path(target)
        if path.is_dir():
            raise CliError(f"--export {target}: is a directory")
        if not path.parent.is_dir():
            raise CliError(f"--export {target}: no directory {path.parent}")
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                count = _write(client, queue, since, out)
            os.replace(temp, path)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
    render.print_line(f"{count} jobs written to {path}", err=True)


def _write(client: CorralClient, queue: str | None, since: str | None, out: TextIO) -> int:
    count = 0
    for job in client.iter_history(queue=queue, since=since):
        line = history_line(
            job.id, job.queue, job.submitted_at, job.started_at, job.ended_at,
            job.gpus, job.nodes, job.status,
            gpu_type=job.gpu_type, priority=job.priority, run_s=job.run_s,
        )  # fmt: skip
        out.write(line + "\n")
        count += 1
    return count
