"""``GET /api/v1/jobs``: newest first, paged by ``before_id``/``next_before_id``, filtered
by status, queue and name."""

from __future__ import annotations

from typing import Any

from tests.factories import add_job
from tests.integration.api.harness import JOBS, QUEUES, Api

TOTAL = 250


def _many_jobs(api: Api) -> dict[int, dict[str, str]]:
    """250 jobs: every third in queue team-a, every fifth cancelled; id -> facts."""
    api.ok("POST", QUEUES, 201, json={"name": "team-a"})
    with api.rt.db.write() as session:  # the store's own insert, in one transaction
        ids = [
            add_job(session, name=f"job-{n}", queue="team-a" if n % 3 == 0 else "default").id
            for n in range(TOTAL)
        ]
    facts = {}
    for n, job_id in enumerate(ids):
        status = "pending"
        if n % 5 == 0:
            status = api.ok("POST", f"{JOBS}/{job_id}/cancel")["status"]
        facts[job_id] = {
            "status": status,
            "queue": "team-a" if n % 3 == 0 else "default",
            "name": f"job-{n}",
        }
    return facts


def all_pages(api: Api, limit: int, **params: Any) -> list[dict[str, Any]]:
    pages = []
    before_id = None
    while True:
        query = {"limit": limit, **params}
        if before_id is not None:
            query["before_id"] = before_id
        page = api.ok("GET", JOBS, params=query)
        pages.append(page)
        before_id = page["next_before_id"]
        if before_id is None:
            return pages
        assert page["jobs"][-1]["id"] == before_id
        assert len(pages) <= TOTAL, "pagination does not end"


def ids_of(pages: list[dict[str, Any]]) -> list[int]:
    return [job["id"] for page in pages for job in page["jobs"]]


def test_pages_cover_every_job_once_newest_first(api: Api) -> None:
    facts = _many_jobs(api)
    newest_first = sorted(facts, reverse=True)
    for limit, sizes in [(100, [100, 100, 50]), (50, [50] * 5), (TOTAL, [TOTAL]), (1000, [TOTAL])]:
        pages = all_pages(api, limit)
        assert [len(p["jobs"]) for p in pages] == sizes, limit
        assert ids_of(pages) == newest_first, limit
    assert api.ok("GET", JOBS)["jobs"] == all_pages(api, 100)[0]["jobs"]  # limit 100 by default
    oldest = newest_first[-1]
    assert api.ok("GET", JOBS, params={"before_id": oldest}) == {"jobs": [], "next_before_id": None}


def test_filters_by_status_queue_and_name_page_too(api: Api) -> None:
    facts = _many_jobs(api)

    def expected(**match: Any) -> list[int]:
        return sorted(
            (i for i, f in facts.items() if all(f[k] in v for k, v in match.items())),
            reverse=True,
        )

    cancelled = expected(status={"cancelled"})
    assert len(cancelled) == TOTAL // 5
    assert ids_of(all_pages(api, 7, status="cancelled")) == cancelled
    both = ids_of(all_pages(api, 30, status="pending,cancelled"))
    assert both == expected(status={"pending", "cancelled"}) == sorted(facts, reverse=True)
    assert ids_of(all_pages(api, 100, status="running")) == []
    team_a = ids_of(all_pages(api, 16, queue="team-a"))
    assert team_a == expected(queue={"team-a"})
    mixed = ids_of(all_pages(api, 5, queue="team-a", status="cancelled"))
    assert mixed == expected(queue={"team-a"}, status={"cancelled"})
    assert ids_of(all_pages(api, 10, name="job-42")) == expected(name={"job-42"})
    assert ids_of(all_pages(api, 10, queue="nope")) == []
    for job in all_pages(api, 1000, queue="team-a")[0]["jobs"]:
        assert job["queue"] == "team-a"
        assert job["status"] == facts[job["id"]]["status"]
