"""The ``api`` fixture: a server app on each backend, driven in-process (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scheduler.api.app import create_app
from scheduler.runtime import Runtime
from scheduler.services.bootstrap import prepare
from scheduler.settings import ServerSettings
from scheduler.store.db import Database
from tests.integration.api.harness import Api


@pytest.fixture
def api(upgraded_database_url: str, tmp_path: Path) -> Iterator[Api]:
    """A prepared server (``default`` queue, admin token) with no loops running."""
    url = upgraded_database_url
    rt = Runtime(db=Database(url), settings=ServerSettings(data_dir=tmp_path, database_url=url))
    token = prepare(rt).read_text().strip()
    try:
        app = create_app(rt, run_loops_in_app=False)
        # a server error must reach the test as the 500 a client would get
        with TestClient(app, raise_server_exceptions=False) as http:
            yield Api(app=app, http=http, rt=rt, token=token)
    finally:
        rt.db.dispose()
