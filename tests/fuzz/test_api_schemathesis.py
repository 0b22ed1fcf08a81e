"""Schemathesis over the server's own OpenAPI: no 5xx, and every reply as documented.

Every operation gets schemathesis' examples and coverage cases (boundaries, wrong
types, missing fields, other methods) and ``CORRAL_FUZZ_EXAMPLES`` fuzzed requests,
valid and invalid, sent in-process with the admin token to one server per backend
(SQLite, then PostgreSQL: NUL characters and 32-bit columns differ between them).
The server holds a small world (a node with GPUs, a running, a pending and a
cancelled job), so ids and names hit real rows as well as missing ones. Each reply
must pass ``not_a_server_error``, ``status_code_conformance`` (a 4xx the route does
not declare is a bug), ``content_type_conformance`` and
``response_schema_conformance``. A run sends at least ``MIN_CASES`` requests.

Generation is derandomized: a failure reproduces on the next run. Raise
``CORRAL_FUZZ_EXAMPLES`` to search deeper. Agent syncs are answered at once
(``long_poll_s=0``), so no generated ``wait_s`` holds the run up.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scheduler.api.app import create_app
from scheduler.domain.sync import AttemptReport, AttemptState
from scheduler.runtime import Runtime
from scheduler.services.bootstrap import prepare
from scheduler.settings import ServerSettings
from scheduler.store.db import Database
from tests.conftest import fresh_database_url
from tests.factories import node_facts
from tests.fuzz import examples
from tests.integration.api.harness import JOBS, Api

DEFAULT_EXAMPLES = 50  # fuzzed requests per operation, on top of the coverage cases
MIN_CASES = 1000  # per backend
BASE_URL = f"http://{asgi.HOST}"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Endpoints still being built are left out until their replies are declared.
EXCLUDED_PATHS_REGEX = r"^/api/v1/jobs/(batch|array)"

pytestmark = pytest.mark.fuzz


def _openapi() -> dict[str, Any]:
    """The server's OpenAPI document. It is the code's, not a database's: an app on an
    unprepared runtime (an in-memory database never opened) serves to build it."""
    url = "sqlite://"
    rt = Runtime(db=Database(url), settings=ServerSettings(data_dir=Path("."), database_url=url))
    try:
        return create_app(rt, run_loops_in_app=False).openapi()
    finally:
        rt.db.dispose()


schema = schemathesis.openapi.from_dict(_openapi()).exclude(path_regex=EXCLUDED_PATHS_REGEX)
schema.config.generation.update(
    max_examples=examples(DEFAULT_EXAMPLES), deterministic=True, database="none"
)


@dataclass
class Target:
    """The server under test, the client that reaches it in-process, what was sent."""

    client: requests.Session
    token: str
    sent: Counter[str] = field(default_factory=Counter)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _seed(api: Api) -> None:
    """A node with 4 GPUs, a running job, a pending one and a cancelled one."""
    facts = node_facts("n1", 4)
    api.sync(facts)
    running = api.submit(gpus=1)
    api.cycle()
    attempt = api.sync(facts).run[0].attempt_id
    api.sync(facts, AttemptReport(attempt_id=attempt, state=AttemptState.RUNNING, pid=42))
    api.submit(gpus=4)  # waits for the GPU the running job holds
    cancelled = api.submit(gpus=1, name="to-cancel")
    api.ok("POST", f"{JOBS}/{cancelled['id']}/cancel")
    assert api.job(running["id"])["status"] == "running"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def backend_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database for the module's server: SQLite, then PostgreSQL (NUL bytes,
    32-bit columns and other limits differ between the two)."""
    yield from fresh_database_url(request, tmp_path_factory.mktemp("fuzz-db") / "corral.db")


@pytest.fixture(scope="module")
def target(backend_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    # long_poll_s=0: a generated sync is answered at once, whatever its wait_s
    settings = ServerSettings(data_dir=data_dir, database_url=backend_url, long_poll_s=0.0)
    rt = Runtime(db=Database(backend_url), settings=settings)
    token = prepare(rt).read_text().strip()
    try:
        app = create_app(rt, run_loops_in_app=False)
        with TestClient(app, raise_server_exceptions=False) as http:
            _seed(Api(app=app, http=http, rt=rt, token=token))
        with asgi.get_client(app) as client:
            yield Target(client=client, token=token)
    finally:
        rt.db.dispose()


@schema.parametrize()
def test_every_reply_is_documented_and_no_5xx(case: schemathesis.Case, target: Target) -> None:
    target.sent[f"{case.method} {case.path}"] += 1
    case.call_and_validate(
        base_url=BASE_URL, session=target.client, headers=target.auth, checks=CHECKS
    )


def test_the_run_sent_enough_cases(target: Target) -> None:
    if not target.sent:
        pytest.skip("the fuzz test did not run in this session")
    total = sum(target.sent.values())
    assert total >= MIN_CASES, f"only {total} generated cases: {dict(target.sent)}"
