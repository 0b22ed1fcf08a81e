"""Simulated GPUs and the --gpus spec: deterministic, and busy when observe() says so."""

from __future__ import annotations

import pytest

from agents.gpu import NoGpuBackend, SimBackend, select_backend, short_gpu_type
from agents.gpu.sim import SIM_GPU_TYPES


@pytest.mark.parametrize(
    ("spec", "count", "gpu_type", "memory_mib"),
    [
        ("sim:4xA100-80GB", 4, "A100-80GB", 81920),
        ("sim:8xH100-80GB", 8, "H100-80GB", 81559),
        ("sim:2xT4", 2, "T4", 15360),
        ("sim:1xH200", 1, "H200", 143771),
        ("sim:3", 3, "A100-80GB", 81920),
        ("sim:2xa100-40gb", 2, "A100-40GB", 40960),
    ],
)
def test_sim_specs(spec: str, count: int, gpu_type: str, memory_mib: int) -> None:
    backend = select_backend(spec, "node-a")

    facts = backend.facts()
    assert isinstance(backend, SimBackend)
    assert [f.index for f in facts] == list(range(count))
    assert {(f.gpu_type, f.memory_total_mib) for f in facts} == {(gpu_type, memory_mib)}
    assert all(f.uuid.startswith("GPU-sim-") for f in facts)


def test_none_spec_has_no_gpus() -> None:
    assert isinstance(select_backend("none", "node-a"), NoGpuBackend)


@pytest.mark.parametrize(
    "spec", ["", "gpu", "sim", "sim:", "sim:0", "sim:x", "sim:2xB999", "sim:-1", "sim:2x", "4"]
)
def test_bad_specs_raise_a_one_line_message(spec: str) -> None:
    with pytest.raises(ValueError, match="expected auto, nvml, none, sim:N or sim:NxTYPE") as info:
        select_backend(spec, "node-a")
    assert "\n" not in str(info.value)
    assert "A100-80GB" in str(info.value)


def test_uuids_are_stable_per_node_and_index() -> None:
    first = [f.uuid for f in SimBackend("node-a", 4).facts()]
    again = [f.uuid for f in SimBackend("node-a", 4).facts()]
    other = [f.uuid for f in SimBackend("node-b", 4).facts()]

    assert first == again
    assert len(set(first)) == 4
    assert not set(first) & set(other)


def test_utilisation_follows_what_runs() -> None:
    backend = SimBackend("node-a", 3, "T4", clock=lambda: 1000.0)
    idle = backend.sample()
    backend.observe({1: 17})
    busy = backend.sample()
    backend.observe({})
    idle_again = backend.sample()

    assert all(s.utilization_pct is not None and s.utilization_pct <= 2 for s in idle)
    assert all(s.memory_used_mib == 0 for s in idle)
    assert busy[1].utilization_pct is not None and 85 <= busy[1].utilization_pct <= 99
    assert busy[1].memory_used_mib is not None
    assert 0.6 * 15360 <= busy[1].memory_used_mib <= 0.9 * 15360
    assert busy[0] == idle[0] and busy[2] == idle[2]
    assert idle_again == idle


def test_samples_are_deterministic_and_vary_with_time() -> None:
    now = [0.0]
    backend = SimBackend("node-a", 2, clock=lambda: now[0])
    backend.observe({0: 1, 1: 1})
    readings = []
    for t in range(0, 100, 5):
        now[0] = float(t)
        readings.append(backend.sample())
    now[0] = 0.0

    assert backend.sample() == readings[0]
    assert len({r[0].utilization_pct for r in readings}) > 1


@pytest.mark.parametrize("gpu_type", sorted(SIM_GPU_TYPES))
def test_the_catalog_names_map_back_to_their_types(gpu_type: str) -> None:
    spec = SIM_GPU_TYPES[gpu_type]
    assert short_gpu_type(spec.product_name, spec.memory_total_mib) == gpu_type
