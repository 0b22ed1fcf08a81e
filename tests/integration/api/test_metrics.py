"""``GET /metrics``: a known cluster state, scraped and parsed by prometheus_client's own
parser, carries the DCGM and corral series with exact values."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler.domain.status import TerminationReason
from scheduler.domain.sync import GpuSample
from scheduler.store.attempts import request_stop
from scheduler.store.models import AttemptRow, utcnow
from tests.factories import A100_MIB, node_facts, report
from tests.integration.api.harness import NODES, QUEUES, Api

A100 = node_facts("a100", 4)
L4 = node_facts("l4", 2, gpu_type="L4", memory_mib=24_576)

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(api: Api, **headers: str) -> Samples:
    """name -> [(labels, value)] of every sample."""
    response = api.http.get("/metrics", headers=headers or api.auth)
    assert response.status_code == 200, response.text
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def by(samples: Samples, name: str, *keys: str) -> dict[Any, float]:
    """The samples of ``name`` keyed by the values of ``keys`` (one key: a plain value)."""
    table = {}
    for labels, value in samples.get(name, []):
        key = tuple(labels.get(k, "") for k in keys)
        table[key[0] if len(key) == 1 else key] = value
    return table


def build_cluster(api: Api) -> dict[str, int]:
    """team-a (2 GPUs guaranteed) runs a 2-GPU job, default runs a 1-GPU job that then
    gets preempted, a 4-GPU job waits, a fresh job is not yet looked at; a100 is up
    and reports samples, l4 is drained."""
    api.ok("POST", QUEUES, 201, json={"name": "team-a", "guaranteed_gpus": 2})
    api.sync(A100)
    api.sync(L4)
    api.ok("POST", f"{NODES}/l4/drain")
    jobs = {
        "big": api.submit(gpus=2, queue="team-a")["id"],
        "small": api.submit(gpus=1)["id"],
    }
    api.cycle()
    jobs["waiting"] = api.submit(gpus=4, queue="team-a")["id"]
    api.cycle()
    launches = api.sync(A100).run
    samples = [
        GpuSample(index=0, utilization_pct=87.5, memory_used_mib=40_000, temperature_c=71.0,
                  power_w=312.5),
        GpuSample(index=1, utilization_pct=12.5, memory_used_mib=1_024, temperature_c=40.0,
                  power_w=80.0),
    ]  # fmt: skip
    api.sync(A100, *[report(x.attempt_id) for x in launches], gpu_samples=samples)
    with api.rt.db.write() as session:
        small = session.query(AttemptRow).filter_by(job_id=jobs["small"]).one()
        request_stop(session, small, TerminationReason.PREEMPTED, utcnow(), "preempted")
    jobs["fresh"] = api.submit(gpus=1)["id"]
    return jobs


def test_metrics_carry_the_cluster_state(api: Api) -> None:
    jobs = build_cluster(api)
    got = scrape(api)
    shown = {name: api.job(job_id) for name, job_id in jobs.items()}
    holder = {(g["index"]): (str(j["id"]), j["queue"]) for j in shown.values() for g in j["gpus"]}
    assert len(holder) == 3  # big holds 2 GPUs of a100, small 1

    util = by(got, "DCGM_FI_DEV_GPU_UTIL", "Hostname", "gpu", "job", "queue", "modelName")
    assert util == {
        ("a100.example", "0", *holder.get(0, ("", "")), "NVIDIA A100-80GB"): 87.5,
        ("a100.example", "1", *holder.get(1, ("", "")), "NVIDIA A100-80GB"): 12.5,
    }  # GPUs that reported no sample have no series
    assert by(got, "DCGM_FI_DEV_FB_USED", "UUID") == {"GPU-a100-0": 40_000, "GPU-a100-1": 1_024}
    assert by(got, "DCGM_FI_DEV_FB_FREE", "UUID") == {
        "GPU-a100-0": A100_MIB - 40_000,
        "GPU-a100-1": A100_MIB - 1_024,
    }
    assert by(got, "DCGM_FI_DEV_GPU_TEMP", "gpu") == {"0": 71.0, "1": 40.0}
    assert by(got, "DCGM_FI_DEV_POWER_USAGE", "gpu") == {"0": 312.5, "1": 80.0}

    assert by(got, "corral_jobs", "state", "queue") == {
        ("running", "team-a"): 1,
        ("stopping", "default"): 1,
        ("pending", "team-a"): 1,
        ("pending", "default"): 1,
    }
    waiting_reason = shown["waiting"]["wait_reason"]
    assert waiting_reason
    assert by(got, "corral_pending_jobs", "reason") == {waiting_reason: 1, "none": 1}
    assert by(got, "corral_nodes", "state") == {"up": 1, "drained": 1}
    assert _only(got, "corral_preemptions_total") == 1

    queues = {q["name"]: q for q in api.ok("GET", QUEUES)["queues"]}
    assert by(got, "corral_queue_allocated_gpus", "queue") == {"team-a": 2, "default": 1}
    assert by(got, "corral_queue_guaranteed_gpus", "queue") == {"team-a": 2, "default": 0}
    assert by(got, "corral_queue_fair_share_gpus", "queue") == {
        name: q["fair_share_gpus"] for name, q in queues.items()
    }

    waits = [
        datetime.fromisoformat(j["attempts"][0]["started_at"])
        - datetime.fromisoformat(j["submitted_at"])
        for j in (api.job(jobs[n]) for n in ("big", "small"))
    ]
    assert _only(got, "corral_job_wait_seconds_count") == 2  # the two jobs that started
    assert _only(got, "corral_job_wait_seconds_sum") == pytest.approx(
        sum(w.total_seconds() for w in waits),
        abs=0.002,  # SQLite counts milliseconds
    )
    buckets = by(got, "corral_job_wait_seconds_bucket", "le")
    assert buckets["+Inf"] == 2
    assert buckets["1.0"] == sum(1 for w in waits if w.total_seconds() <= 1)
    assert _only(got, "corral_cycle_duration_seconds_count") == 2  # two cycles ran
    assert by(got, "corral_cycle_duration_seconds_bucket", "le")["+Inf"] == 2
    assert _only(got, "corral_agent_sync_duration_seconds_count") == 4  # build_cluster's
    assert by(got, "corral_agent_sync_duration_seconds_bucket", "le")["+Inf"] == 4


def _only(samples: Samples, name: str) -> float:
    (only,) = samples[name]
    return only[1]


def test_metrics_want_the_token_unless_public(api: Api) -> None:
    assert api.http.get("/metrics").status_code == 401
    assert api.http.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    api.rt.settings = dataclasses.replace(api.rt.settings, metrics_public=True)
    response = api.http.get("/metrics")
    assert response.status_code == 200
    assert "corral_nodes" in response.text


DASHBOARD = Path(__file__).parents[3] / "deploy" / "grafana" / "corral.json"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The series an expression reads: identifiers that are neither functions, keywords,
    nor inside label matchers, grouping clauses or ranges."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        followed_by = expr[match.end() :].lstrip()[:1]
        if followed_by != "(" and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def test_the_grafana_dashboard_reads_only_series_metrics_exports(api: Api) -> None:
    build_cluster(api)
    exported = set(scrape(api))
    dashboard = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            used |= names
    assert {
        "DCGM_FI_DEV_GPU_UTIL",
        "corral_queue_fair_share_gpus",
        "corral_queue_allocated_gpus",
        "corral_queue_guaranteed_gpus",
        "corral_pending_jobs",
        "corral_cycle_duration_seconds_bucket",
        "corral_job_wait_seconds_bucket",
    } <= used
    assert "heatmap" in {panel["type"] for panel in dashboard["panels"]}


def test_metric_names_skips_functions_labels_and_ranges() -> None:
    expr = 'histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[5m]))) / on (q) y'
    assert metric_names(expr) == {"x_bucket", "y"}
