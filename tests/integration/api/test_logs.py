"""``/logs`` returns what the agent shipped in ``log_data``, page by page, and a UTF-8
character split across pages is never garbled."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.domain.sync import AttemptLaunch
from tests.factories import exited, node_facts, report
from tests.integration.api.harness import JOBS, Api

NODE = node_facts("n1", 2)
TEXT = "loss=0.93 — héllo\n€1 🚀 训练\n"
LOGS = {
    "utf-8 text": TEXT.encode(),
    "a stray invalid byte before split characters": b"\xff" + TEXT.encode(),
    "cut inside a character by a crash": TEXT.encode() + "€".encode()[:2],
}


def started(api: Api) -> tuple[int, AttemptLaunch]:
    api.sync(NODE)
    job_id = api.submit()["id"]
    api.cycle()
    (launch,) = api.sync(NODE).run
    return job_id, launch


def ship(api: Api, attempt: int, log: bytes, pieces: int = 3) -> None:
    """Ship ``log`` while running, in ``pieces`` chunks cut at arbitrary bytes."""
    step = -(-len(log) // pieces)
    for offset in range(0, len(log), step):
        reply = api.sync(NODE, report(attempt, log=(offset, log[offset : offset + step])))
        assert reply.log_acks[attempt] == min(offset + step, len(log))


def logs(api: Api, job_id: int, **params: Any) -> dict[str, Any]:
    return api.ok("GET", f"{JOBS}/{job_id}/logs", params=params)


def read_pages(api: Api, job_id: int, limit_bytes: int, end: int) -> list[dict[str, Any]]:
    """Follow ``next_offset`` from 0 to ``end``; every page must move forward."""
    pages: list[dict[str, Any]] = []
    offset = 0
    while offset < end:
        page = logs(api, job_id, offset=offset, limit_bytes=limit_bytes)
        assert page["offset"] == offset
        assert page["next_offset"] > offset, f"stuck at byte {offset} (limit {limit_bytes})"
        pages.append(page)
        offset = page["next_offset"]
        assert len(pages) <= end, "more pages than bytes"
    return pages


def test_logs_return_what_the_agent_shipped(api: Api) -> None:
    job_id, launch = started(api)
    attempt = launch.attempt_id
    assert logs(api, job_id)["data"] == ""
    log = TEXT.encode()
    ship(api, attempt, log)
    # a chunk sent again (a lost reply) is not stored twice
    api.sync(NODE, report(attempt, log=(0, log[:10])))
    running = logs(api, job_id)
    assert (running["data"], running["attempt"], running["complete"]) == (TEXT, 1, False)
    assert running["next_offset"] == len(log)

    reply = api.sync(NODE, exited(attempt, 0, log=(len(log), b"bye\n")))
    assert reply.log_acks[attempt] == len(log) + 4
    done = logs(api, job_id)
    assert (done["data"], done["complete"]) == (TEXT + "bye\n", True)
    assert api.job(job_id)["attempts"][0]["log_bytes"] == len(log) + 4
    assert logs(api, job_id, attempt=1)["data"] == TEXT + "bye\n"
    past_the_end = logs(api, job_id, offset=len(log) + 100)
    assert (past_the_end["data"], past_the_end["complete"]) == ("", True)


def test_a_job_without_an_attempt_has_an_empty_log(api: Api) -> None:
    api.sync(NODE)
    job_id = api.submit()["id"]
    chunk = logs(api, job_id)
    assert (chunk["data"], chunk["attempt"], chunk["complete"]) == ("", 0, False)


@pytest.mark.parametrize("log", LOGS.values(), ids=LOGS.keys())
def test_paging_never_garbles_a_character_split_across_pages(api: Api, log: bytes) -> None:
    job_id, launch = started(api)
    ship(api, launch.attempt_id, log, pieces=5)
    api.sync(NODE, exited(launch.attempt_id, 0))
    whole = log.decode("utf-8", errors="replace")
    for limit_bytes in (1, 2, 3, 5, 4096):
        pages = read_pages(api, job_id, limit_bytes, len(log))
        assert "".join(p["data"] for p in pages) == whole, f"limit_bytes={limit_bytes}"
        assert pages[-1]["complete"], f"limit_bytes={limit_bytes}"
        # a page is longer than asked only to carry one whole character
        assert max(p["next_offset"] - p["offset"] for p in pages) <= max(limit_bytes, 4)
