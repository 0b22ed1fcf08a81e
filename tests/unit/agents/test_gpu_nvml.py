"""NvmlBackend against a fake pynvml: bad fields become None, never an exception."""

from __future__ import annotations

import logging

import pynvml
import pytest

from agents.gpu import GpuBackendError, NoGpuBackend, NvmlBackend, select_backend

from .fake_pynvml import FakeGpu, FakePynvml

A100 = FakeGpu()
T4 = FakeGpu(
    name="Tesla T4",
    uuid="GPU-aaaaaaaa-0000-0000-0000-000000000001",
    memory_total_mib=15360,
    memory_used_mib=0,
    utilization_pct=0,
    temperature_c=31,
    power_mw=9_000,
    ecc_errors=2,
)


def test_facts_and_samples_of_healthy_gpus() -> None:
    backend = NvmlBackend(FakePynvml([A100, T4]))

    facts = backend.facts()
    assert [(f.index, f.uuid, f.gpu_type, f.memory_total_mib) for f in facts] == [
        (0, A100.uuid, "A100-80GB", 81920),
        (1, T4.uuid, "T4", 15360),
    ]
    assert facts[0].name == "NVIDIA A100-SXM4-80GB"
    first, second = backend.sample()
    assert (first.index, first.utilization_pct, first.memory_used_mib) == (0, 42.0, 1024)
    assert (first.temperature_c, first.power_w, first.ecc_errors) == (55.0, 123.456, 0)
    assert first.healthy
    assert (second.index, second.power_w, second.ecc_errors, second.healthy) == (1, 9.0, 2, True)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("temperature", "temperature_c"),
        ("power", "power_w"),
        ("ecc", "ecc_errors"),
        ("utilization", "utilization_pct"),
        ("memory", "memory_used_mib"),
    ],
)
def test_a_field_nvml_does_not_support_becomes_none(query: str, field: str) -> None:
    gpu = FakeGpu()
    backend = NvmlBackend(FakePynvml([gpu]))
    gpu.fail[query] = pynvml.NVML_ERROR_NOT_SUPPORTED

    (sample,) = backend.sample()

    assert getattr(sample, field) is None
    assert sample.healthy
    others = {"utilization_pct", "memory_used_mib", "temperature_c", "power_w", "ecc_errors"}
    assert all(getattr(sample, other) is not None for other in others - {field})


def test_the_fake_raises_the_real_nvml_error_classes() -> None:
    fake = FakePynvml([FakeGpu(fail={"power": pynvml.NVML_ERROR_NOT_SUPPORTED})])
    with pytest.raises(pynvml.NVMLError_NotSupported):
        fake.nvmlDeviceGetPowerUsage(0)


def test_a_gpu_lost_while_running_is_unhealthy_and_the_others_go_on() -> None:
    lost = FakeGpu(uuid="GPU-lost")
    backend = NvmlBackend(FakePynvml([lost, T4]))
    lost.lost = True

    first, second = backend.sample()

    assert not first.healthy
    assert first.utilization_pct is None and first.memory_used_mib is None
    assert second.healthy and second.temperature_c == 31.0


def test_reset_required_is_unhealthy() -> None:
    gpu = FakeGpu()
    backend = NvmlBackend(FakePynvml([gpu]))
    gpu.fail["utilization"] = pynvml.NVML_ERROR_RESET_REQUIRED

    assert not backend.sample()[0].healthy


def test_a_gpu_lost_at_start_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    backend = NvmlBackend(FakePynvml([FakeGpu(lost=True), T4]))

    assert [f.index for f in backend.facts()] == [1]
    assert [s.index for s in backend.sample()] == [1]
    assert "GPU 0 left out" in caplog.text


def test_close_shuts_nvml_down() -> None:
    fake = FakePynvml([A100])
    NvmlBackend(fake).close()
    assert fake.calls == ["init", "shutdown"]


def test_init_failure_raises_the_nvml_error() -> None:
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        NvmlBackend(FakePynvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))


def test_auto_falls_back_to_no_gpus_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakePynvml([A100], init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    with caplog.at_level(logging.WARNING, logger="corral.agent.gpu"):
        backend = select_backend("auto", "node-1", pynvml_module=fake)

    assert isinstance(backend, NoGpuBackend)
    assert backend.facts() == [] and backend.sample() == []
    assert "NVML is unavailable" in caplog.text


def test_auto_uses_nvml_when_it_starts() -> None:
    backend = select_backend("auto", "node-1", pynvml_module=FakePynvml([A100]))
    assert isinstance(backend, NvmlBackend)
    assert len(backend.facts()) == 1


def test_nvml_spec_raises_when_nvml_cannot_start() -> None:
    fake = FakePynvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    with pytest.raises(GpuBackendError, match="NVML is unavailable"):
        select_backend("nvml", "node-1", pynvml_module=fake)
