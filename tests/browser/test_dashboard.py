"""The web dashboard in real headless Chromium, against a live server with real agents.

The cluster: node-a and node-b (2 simulated GPUs each) and node-c (1 GPU), whose agent
is stopped so the node is lost. Job ``pair`` holds both GPUs of node-a, ``single`` one
GPU of node-b, which is then drained; ``waiting`` (2 GPUs) cannot start. The overview
must show 5 GPU cells in those states, the pending job with its reason, and lead to the
job page with its attempt, its utilisation chart and its log tail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from scheduler.client import CorralClient
from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster
from tests.e2e.conftest import start_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.browser]

T = TypeVar("T")
GREETING = "hello from the dashboard test"
WAIT_S = 60.0


def wait_until(check: Callable[[], T], what: str, timeout_s: float = WAIT_S) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def submit(client: CorralClient, name: str, gpus: int, script: str) -> int:
    spec = JobSpec(name=name, command=["sh", "-c", script], resources=Resources(gpus=gpus))
    return client.submit(spec).id


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, dict[str, int]]]:
    """The cluster in the state the module docstring describes, and the jobs' ids."""
    local = start_cluster(tmp_path_factory.mktemp("cluster"))
    with local, local.client() as client:
        long_run = f"echo '{GREETING}'; i=0; while [ $i -lt 600 ]; do i=$((i+1)); sleep 1; done"
        jobs = {
            "pair": submit(client, "pair", 2, long_run),
            "single": submit(client, "single", 1, long_run),
        }
        for job_id in jobs.values():
            wait_until(lambda j=job_id: client.get_job(j).status == "running", f"job {job_id}")
        jobs["waiting"] = submit(client, "waiting", 2, "true")
        wait_until(lambda: client.get_job(jobs["waiting"]).wait_reason, "a wait reason")
        local.start_agent("node-c", "sim:1xA100-80GB")
        local.wait_for_nodes(["node-c"])
        local.agents["node-c"].stop()
        lost = {n.name: n.state for n in client.list_nodes().nodes}
        wait_until(
            lambda: {n.name: n.state for n in client.list_nodes().nodes}.get("node-c") == "lost",
            f"node-c to be lost (was {lost.get('node-c')})",
        )
        client.drain("node-b", "maintenance")
        yield local, jobs


def cell_counts(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => {
        const cells = [...document.querySelectorAll('#heatmap .cell')];
        const by = (a) => {
            const m = {};
            for (const c of cells) m[c.dataset[a]] = (m[c.dataset[a]] || 0) + 1;
            return m;
        };
        return {total: cells.length, state: by('state'), allocated: by('allocated'),
                cells: cells.map((c) => [c.dataset.node, Number(c.dataset.gpu), c.dataset.state])};
    }"""
    )


def test_overview_heatmap_and_job_page(
    live: tuple[LocalCluster, dict[str, int]], browser_page: Any, artifacts: Path
) -> None:
    local, jobs = live
    page = browser_page
    page.goto(f"{local.url}/ui/#token={local.token}")
    page.wait_for_selector("body[data-ready=true] #heatmap .cell")
    assert not page.is_visible("#login")  # the token came with the URL: no form
    expected = {"allocated": 2, "drained": 2, "lost": 1}
    page.wait_for_function(  # the first paint may predate the drain: auto-refresh catches up
        """(want) => {
        const cells = [...document.querySelectorAll('#heatmap .cell')];
        const got = {};
        for (const c of cells) got[c.dataset.state] = (got[c.dataset.state] || 0) + 1;
        return Object.keys(want).every((k) => got[k] === want[k]) && cells.length === 5;
    }""",
        arg=expected,
        timeout=WAIT_S * 1000,
    )
    counts = cell_counts(page)
    assert counts["total"] == 5
    assert counts["state"] == expected
    assert counts["allocated"] == {"true": 3, "false": 2}  # node-b's held GPU stays marked
    assert sorted(counts["cells"]) == [
        ["node-a", 0, "allocated"],
        ["node-a", 1, "allocated"],
        ["node-b", 0, "drained"],
        ["node-b", 1, "drained"],
        ["node-c", 0, "lost"],
    ]
    assert page.locator("tr[data-queue=default]").count() == 1
    waiting = page.locator(f"#pending tr[data-job='{jobs['waiting']}']")
    assert waiting.get_attribute("data-reason")  # a machine-readable reason is shown
    assert "waiting" in waiting.inner_text()
    overview_png = artifacts / "overview.png"
    page.screenshot(path=str(overview_png), full_page=True)
    print(f"screenshot: {overview_png}")

    page.click(f"#running a.job-link[data-job='{jobs['pair']}']")
    page.wait_for_url(f"**/ui/#/jobs/{jobs['pair']}")
    page.wait_for_selector("#attempts tr.attempt[data-attempt='1']")
    assert page.inner_text("#job-status") == "running"
    page.wait_for_function(
        "(text) => document.querySelector('#log')?.textContent.includes(text)",
        arg=GREETING,
        timeout=WAIT_S * 1000,
    )
    page.wait_for_selector("#chart polyline[data-series]", timeout=WAIT_S * 1000)
    series = page.eval_on_selector_all(
        "#chart polyline", "(ls) => ls.map((l) => l.dataset.series).sort()"
    )
    assert series == ["node-a:0", "node-a:1"]  # the job's own GPUs, one line each
    job_png = artifacts / "job.png"
    page.screenshot(path=str(job_png), full_page=True)
    print(f"screenshot: {job_png}")
    assert overview_png.stat().st_size > 0 and job_png.stat().st_size > 0


def test_a_refused_token_asks_again(
    live: tuple[LocalCluster, dict[str, int]], browser_page: Any, artifacts: Path
) -> None:
    local, _ = live
    page = browser_page
    page.goto(f"{local.url}/ui/#token=not-a-token")
    page.wait_for_selector("#login:not([hidden])")
    assert page.locator("#heatmap").count() == 0
    page.fill("#token", local.token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("body[data-ready=true] #heatmap .cell")
    page.screenshot(path=str(artifacts / "login.png"))
