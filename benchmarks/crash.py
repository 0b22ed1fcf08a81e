"""Crash safety at full size: jobs submitted while the server and agents are SIGKILLed.

Runs the scenario of ``tests/e2e/test_crash_safety.py`` (a local cluster, two agents
with 4 simulated GPUs each, short ``true``/``sleep 0.1`` jobs) with the sizes the
acceptance asks for, checks the same invariants from the database history and prints
the figures as JSON. The server's database is SQLite in its data dir, or with
``--postgres`` a fresh database on a private PostgreSQL started as the tests start one
(``--database-url`` names a server to create it on instead). Run from the repository
root:

    python benchmarks/crash.py                       # 2,000 jobs, 10 server kills
    python benchmarks/crash.py --jobs 500 --kills 5 --seed 3
    python benchmarks/crash.py --postgres

Exit status 0: every acknowledged job ended exactly once and succeeded, no GPU was in
two live allocations and no job ran two attempts at once; 1 with the failed check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.load_db import postgres
from tests.e2e.test_crash_safety import run_crash


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[str | None]:
    """The server's database URL: None for SQLite, else a fresh PostgreSQL database."""
    if not args.postgres and args.database_url is None:
        yield None
        return
    with postgres(args.database_url) as (url, _):
        yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="acknowledged jobs to submit")
    parser.add_argument("--kills", type=int, default=10, help="server SIGKILLs (at least)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill moments")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (logs, database)")
    parser.add_argument("--postgres", action="store_true", help="on a private PostgreSQL")
    parser.add_argument("--database-url", metavar="URL", help="on a PostgreSQL server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-crash-") as scratch, database(args) as url:
        data_dir = Path(args.keep) if args.keep else Path(scratch)
        try:
            figures = run_crash(data_dir, args.jobs, args.kills, args.seed, url)
        except AssertionError as failure:
            print(f"crash check failed: {failure}", file=sys.stderr)
            return 1
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
