"""``GET /api/v1/jobs/{id}/telemetry`` returns the samples of the job's own GPUs; ``/ui``
serves the dashboard's files (no token needed for them, every API call needs one)."""

from __future__ import annotations

from scheduler.domain.sync import GpuSample
from tests.factories import node_facts
from tests.integration.api.harness import JOBS, Api

NODE = node_facts("n1", 2)


def test_a_jobs_telemetry_is_its_own_gpus_samples(api: Api) -> None:
    api.sync(NODE)
    job_id = api.submit(gpus=1)["id"]
    api.cycle()
    (launch,) = api.sync(NODE).run
    held = launch.gpu_indices[0]
    samples = [
        GpuSample(index=i, utilization_pct=87.0 if i == held else 3.0, memory_used_mib=512)
        for i in range(2)
    ]
    api.sync(NODE, gpu_samples=samples)

    body = api.ok("GET", f"{JOBS}/{job_id}/telemetry")
    assert (body["job_id"], body["attempt"], body["resolution_s"]) == (job_id, 1, 0)
    (gpu,) = body["gpus"]
    assert (gpu["node"], gpu["index"]) == ("n1", held)
    assert [p["utilization_pct"] for p in gpu["points"]] == [87.0]
    assert gpu["points"][0]["memory_used_mib"] == 512


def test_telemetry_refusals_name_the_field(api: Api) -> None:
    pending = api.submit(gpus=1)["id"]  # no node: it never starts
    missing = api.get(f"{JOBS}/{pending}/telemetry")
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "attempt"
    assert api.get(f"{JOBS}/999/telemetry").json()["error"]["field"] == "job_id"
    bad = api.get(f"{JOBS}/{pending}/telemetry", params={"attempt": 0})
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "attempt")
    anonymous = api.http.get(f"{JOBS}/{pending}/telemetry")
    assert anonymous.status_code == 401


def test_the_dashboard_is_served_from_the_package(api: Api) -> None:
    redirect = api.http.get("/ui", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (307, "/ui/")
    page = api.http.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/ui/static/app.js">' in page.text
    for name, kind in (("app.js", "javascript"), ("chart.js", "javascript"), ("style.css", "css")):
        asset = api.http.get(f"/ui/static/{name}")
        assert asset.status_code == 200, name
        assert kind in asset.headers["content-type"], name
    assert api.http.get("/ui/static/nope.js").status_code == 404
