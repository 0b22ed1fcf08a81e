"""``GET /metrics``: the cluster in Prometheus' text format, read from the database at
scrape time.

GPU series carry the names and labels of NVIDIA's DCGM exporter (``DCGM_FI_DEV_*``
with ``gpu``, ``UUID``, ``modelName``, ``Hostname``), plus corral's ``node`` and the
``job`` and ``queue`` holding the GPU (empty when free), so dashboards built for DCGM
work and can be split by job. Scheduler series are ``corral_*``. The registry is built
per app (no process-global state): two servers in one process, as in tests, never
mix their figures. The cycle-duration histogram is the one instrument a server keeps
itself (``Runtime.metrics``); everything else is counted from rows.

Without ``--metrics-public`` the endpoint wants the bearer token, as any API call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from scheduler.api.deps import RuntimeDep
from scheduler.domain.auth import PEOPLE
from scheduler.domain.errors import Forbidden
from scheduler.domain.views import QueueInfo
from scheduler.runtime import Runtime
from scheduler.services.bootstrap import authenticate
from scheduler.services.queues import list_queues
from scheduler.store import gauges

router = APIRouter(tags=["metrics"])

WAIT_BUCKETS_S = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
GPU_LABELS = ["gpu", "UUID", "modelName", "Hostname", "node", "job", "queue"]


class CorralCollector(Collector):
    """Reads one server's database on every scrape."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        with self.rt.db.read() as session:
            readings = gauges.gpu_readings(session)
            jobs = gauges.jobs_by_state_and_queue(session)
            pending = gauges.pending_by_reason(session)
            preemptions = gauges.preemptions(session)
            waits = gauges.first_start_waits(session, WAIT_BUCKETS_S)
            nodes = gauges.nodes_by_state(session)
        yield from gpu_families(readings)
        yield _labelled("corral_jobs", "Jobs by status and queue.", ["state", "queue"], jobs)
        yield _labelled(
            "corral_pending_jobs", "Pending jobs by wait reason.", ["reason"], _one_label(pending)
        )
        yield from queue_families(list_queues(self.rt).queues)
        yield CounterMetricFamily(
            "corral_preemptions",
            "Attempts asked to stop so that others could run.",
            value=preemptions,
        )
        yield histogram_family(
            "corral_job_wait_seconds",
            "Seconds from submission to the start of a job's first attempt.",
            waits,
        )
        yield _labelled(
            "corral_nodes", "Nodes by state (up, drained, lost).", ["state"], _one_label(nodes)
        )
        yield from self.rt.metrics.cycle_duration.collect()
        yield from self.rt.metrics.sync_duration.collect()
        yield from self.rt.metrics.report_write.collect()


def _labelled(
    name: str, doc: str, labels: list[str], values: Mapping[tuple[str, ...], int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _one_label(values: Mapping[str, int]) -> dict[tuple[str, ...], int]:
    return {(key,): value for key, value in values.items()}


def gpu_families(readings: list[gauges.GpuReading]) -> Iterator[GaugeMetricFamily]:
    """The DCGM exporter's series, one sample per GPU that reported the value."""
    fields = [
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda r: r.utilization_pct),
        ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda r: r.memory_used_mib),
        (
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB).",
            lambda r: None if r.memory_used_mib is None else r.memory_total_mib - r.memory_used_mib,
        ),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda r: r.temperature_c),
        ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda r: r.power_w),
    ]
    for name, doc, value_of in fields:
        family = GaugeMetricFamily(name, doc, labels=GPU_LABELS)
        for r in readings:
            value = value_of(r)
            if value is not None:
                labels = [str(r.index), r.uuid, r.model_name, r.hostname, r.node, r.job, r.queue]
                family.add_metric(labels, float(value))
        yield family


def queue_families(queues: list[QueueInfo]) -> Iterator[GaugeMetricFamily]:
    """Fair share (as the policy computes it now), GPUs held and guaranteed, per queue."""
    fields = [
        ("corral_queue_fair_share_gpus", "The queue's fair share now.", "fair_share_gpus"),
        ("corral_queue_allocated_gpus", "GPUs the queue's live attempts hold.", "allocated_gpus"),
        ("corral_queue_guaranteed_gpus", "GPUs guaranteed to the queue.", "guaranteed_gpus"),
    ]
    for name, doc, attribute in fields:
        family = GaugeMetricFamily(name, doc, labels=["queue"])
        for queue in queues:
            family.add_metric([queue.name], float(getattr(queue, attribute)))
        yield family


def histogram_family(name: str, doc: str, histogram: gauges.Histogram) -> HistogramMetricFamily:
    """A cumulative histogram the database counted (``gauges.Histogram``)."""
    buckets = [
        (_bound(b), float(c)) for b, c in zip(histogram.bounds, histogram.counts, strict=True)
    ]
    buckets.append(("+Inf", float(histogram.count)))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=histogram.total)


def _bound(value: float) -> str:
    return repr(float(value))


def registry_of(request: Request, rt: Runtime) -> CollectorRegistry:
    """This app's registry, made on its first scrape."""
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(CorralCollector(rt))
        request.app.state.metrics_registry = registry
    return registry


@router.get("/metrics", response_class=Response, responses={401: {}, 403: {}})
def metrics(
    request: Request,
    rt: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    if not rt.settings.metrics_public:
        who = authenticate(rt, authorization)
        if who.role not in PEOPLE:  # aggregate state is for people, not agents' tokens
            raise Forbidden(f"the {who.role} role may not read metrics")
    body = generate_latest(registry_of(request, rt))
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
