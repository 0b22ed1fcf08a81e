"""Real GPUs through NVML: the only module that imports ``pynvml``.

Invariants: after ``__init__`` succeeds, no NVML error ever escapes. Each optional
query (utilisation, memory, temperature, power, ECC) is wrapped on its own, so a
field the device cannot report (``NotSupported`` on some SKUs and on MIG, a lost
GPU, ...) becomes ``None`` and the other fields still come through. A GPU that
answers ``GpuIsLost`` or ``ResetRequired`` is sampled ``healthy=False``.

The GPU set is fixed at start: ``facts()`` and ``sample()`` cover the same indices.
A GPU whose identity (handle, UUID, name, memory) cannot be read at start is left
out with a warning, so nothing is ever placed on it.

Units: NVML reports memory in bytes and power in milliwatts; we report MiB and W.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import pynvml

from agents.gpu.types import short_gpu_type
from scheduler.domain.sync import GpuFacts, GpuSample

log = logging.getLogger("corral.agent.gpu")

NVMLError = pynvml.NVMLError  # what callers catch when init fails
MIB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class _Gpu:
    index: int
    handle: Any  # an opaque NVML device handle
    facts: GpuFacts


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class NvmlBackend:
    """The GPUs NVML sees on this host. Raises ``pynvml.NVMLError`` if NVML cannot start."""

    def __init__(self, pynvml_module: ModuleType | None = None) -> None:
        self._nvml: Any = pynvml_module if pynvml_module is not None else pynvml
        self._nvml.nvmlInit()
        self._lost_codes = frozenset(
            {self._nvml.NVML_ERROR_GPU_IS_LOST, self._nvml.NVML_ERROR_RESET_REQUIRED}
        )
        count = self._nvml.nvmlDeviceGetCount()
        self._gpus = [gpu for index in range(count) if (gpu := self._open(index)) is not None]

    def _open(self, index: int) -> _Gpu | None:
        """The GPU at ``index`` with its static facts, or None if they cannot be read."""
        nvml = self._nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            memory_total_mib = int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // MIB
            facts = GpuFacts(
                index=index,
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                name=name,
                gpu_type=short_gpu_type(name, memory_total_mib),
                memory_total_mib=memory_total_mib,
            )
        except (nvml.NVMLError, ValueError) as err:  # ValueError: facts out of range
            log.warning("GPU %d left out: NVML cannot identify it (%s)", index, err)
            return None
        return _Gpu(index=index, handle=handle, facts=facts)

    def facts(self) -> list[GpuFacts]:
        return [gpu.facts for gpu in self._gpus]

    def observe(self, busy: dict[int, int]) -> None:
        """NVML measures what runs; nothing to do."""

    def sample(self) -> list[GpuSample]:
        return [self._sample_one(gpu) for gpu in self._gpus]

    def _sample_one(self, gpu: _Gpu) -> GpuSample:
        nvml, handle = self._nvml, gpu.handle
        lost: list[bool] = []

        def read(query: Callable[[], T]) -> T | None:
            try:
                return query()
            except nvml.NVMLError as err:
                lost.append(getattr(err, "value", None) in self._lost_codes)
                return None

        utilization = read(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        memory_used = read(lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used)
        temperature = read(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        power_mw = read(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        ecc = read(
            lambda: nvml.nvmlDeviceGetTotalEccErrors(
                handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
            )
        )
        return GpuSample(
            index=gpu.index,
            utilization_pct=None if utilization is None else min(max(float(utilization), 0), 100),
            memory_used_mib=None if memory_used is None else max(int(memory_used) // MIB, 0),
            temperature_c=None if temperature is None else float(temperature),
            power_w=None if power_mw is None or power_mw < 0 else power_mw / 1000,
            ecc_errors=None if ecc is None or ecc < 0 else int(ecc),
            healthy=not any(lost),
        )

    def close(self) -> None:
        """Shut NVML down; an error here is logged, never raised."""
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as err:
            log.warning("nvmlShutdown failed: %s", err)
