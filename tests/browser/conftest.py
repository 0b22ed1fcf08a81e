"""Headless Chromium for the dashboard tests, driven by Playwright.

The browser is Debian's ``/usr/bin/chromium`` (Playwright's own download is never
used), with a fresh profile per test. Without it the tests are skipped, except under
``CI=true``, where a missing browser fails them: CI never silently skips the browser.
Screenshots go to ``$CORRAL_TEST_ARTIFACTS`` (or the test's tmp dir).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    """A Playwright page in a fresh headless Chromium profile."""
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} is missing (apt-get install chromium)"
        if _in_ci():
            pytest.fail(why)
        pytest.skip(why)
    if _in_ci():
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.fixture
def artifacts(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """Where a test's screenshots go: ``$CORRAL_TEST_ARTIFACTS/<test>`` or its tmp dir."""
    root = os.environ.get("CORRAL_TEST_ARTIFACTS")
    directory = Path(root) / request.node.name if root else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
