"""Cluster shapes, gang request shaping, and the simulated nodes' bookkeeping."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.domain.snapshot import GpuRef, ResourceRequest
from scheduler.domain.status import NodeState
from scheduler.sim.cluster import SimCluster, load_cluster_spec, parse_shape, shape_request
from scheduler.sim.rows import TraceError

from .factories import write_lines


def test_parse_shape() -> None:
    spec = parse_shape("64x8")
    assert (spec.total_gpus, spec.node_count, spec.describe()) == (512, 64, "64x8 GPU")
    mixed = parse_shape("2x8:V100, 1x4:T4")
    assert mixed.describe() == "2x8 V100 + 1x4 T4"
    assert [n.name for n in SimCluster(mixed).views()] == ["g1-000", "g1-001", "g2-000"]


@pytest.mark.parametrize("bad", ["64", "x8", "64x", "8x0", "0x8", "64*8"])
def test_a_bad_shape_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_shape(bad)


def test_cluster_spec_csv(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "nodes.csv",
        ["name_prefix,count,gpus,gpu_type,memory_mib", "v,2,8,V100,32768", "t,3,4,T4,"],
    )
    spec = load_cluster_spec(path)
    assert spec.total_gpus == 28
    views = SimCluster(spec).views()
    assert [n.name for n in views] == ["t000", "t001", "t002", "v000", "v001"]
    assert {(g.gpu_type, g.memory_mib) for g in views[-1].gpus} == {("V100", 32768)}


def test_cluster_spec_bad_rows(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "nodes.csv", ["name_prefix,count,gpus,gpu_type", "v,2,8,V100", "t,0,4,T4"]
    )
    with pytest.raises(TraceError, match="row 3: count '0' is below 1"):
        load_cluster_spec(path)
    clash = write_lines(
        tmp_path / "c.csv", ["name_prefix,count,gpus,gpu_type", "n,1,8,A", "n,1,8,B"]
    )
    with pytest.raises(ValueError, match="collide"):
        load_cluster_spec(clash)


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [(1, (1, 1)), (8, (8, 1)), (12, (6, 2)), (16, (8, 2)), (24, (8, 3)), (13, (1, 13))],
)
def test_shape_request_splits_big_jobs_over_whole_nodes(
    gpus: int, expected: tuple[int, int]
) -> None:
    request = shape_request(gpus, None, None, parse_shape("64x8"))
    assert (request.gpus, request.nodes) == expected


def test_shape_request_keeps_a_fixed_node_count_and_type() -> None:
    request = shape_request(8, 2, "T4", parse_shape("4x8"))
    assert request == ResourceRequest(gpus=4, nodes=2, gpu_type="T4")


def test_allocation_bookkeeping() -> None:
    cluster = SimCluster(parse_shape("2x4"))
    before = cluster.views()
    a = cluster.views()[0].name
    cluster.allocate(7, [GpuRef(a, 0), GpuRef(a, 1)])
    after = cluster.views()
    assert after[1] is before[1]  # the untouched node's view is reused
    assert [g.allocated_to for g in after[0].gpus] == [7, 7, None, None]
    assert all(n.state is NodeState.UP for n in after)
    assert cluster.free_gpus == 6
    assert cluster.free_hist["GPU"] == [0, 0, 1, 0, 1]  # one node with 2 free, one with 4
    assert (cluster.idle_nodes["GPU"], cluster.idle_gpus["GPU"]) == (1, 4)
    with pytest.raises(ValueError, match="not free"):
        cluster.allocate(8, [GpuRef(a, 1)])
    with pytest.raises(ValueError, match="no GPU 9"):
        cluster.allocate(8, [GpuRef(a, 9)])
    cluster.release([GpuRef(a, 0), GpuRef(a, 1)])
    assert cluster.free_gpus == 8
    assert cluster.views() == before
    with pytest.raises(ValueError, match="free GPU"):
        cluster.release([GpuRef(a, 0)])


def test_could_fit_is_permissive_about_idleness_and_strict_about_counts() -> None:
    cluster = SimCluster(parse_shape("2x4:A,1x8:B"))
    a0, a1 = (n.name for n in cluster.views()[:2])
    cluster.allocate(1, [GpuRef(a0, 0), GpuRef(a1, 0)])  # 3 free on each A node
    assert cluster.could_fit(ResourceRequest(3, nodes=2, gpu_type="a"))
    assert not cluster.could_fit(ResourceRequest(4, nodes=2, gpu_type="A"))
    assert cluster.could_fit(ResourceRequest(8))  # the B node
    assert not cluster.could_fit(ResourceRequest(4, nodes=3))  # two have only 3 free
    assert cluster.could_fit(ResourceRequest(3, nodes=3))
