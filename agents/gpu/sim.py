"""Simulated GPUs: a first-class backend for demos, tests and nodes without NVIDIA hardware.

Deterministic: a GPU's UUID depends only on the node name and its index (stable across
agent restarts), and a sample depends only on the clock, the index and what ``observe``
said runs on it. An idle GPU reads 0-2 % utilisation and no memory used; a busy one
85-99 % (changing every ``SAMPLE_PERIOD_S``) with 60-90 % of its memory used (fixed
per attempt).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.domain.sync import GpuFacts, GpuSample

SAMPLE_PERIOD_S = 5.0
IDLE_TEMPERATURE_C = 34.0
BUSY_TEMPERATURE_C = 68.0
IDLE_POWER_FRACTION = 0.15


@dataclass(frozen=True)
class SimGpuType:
    product_name: str  # what NVML would call it
    memory_total_mib: int
    power_max_w: float


SIM_GPU_TYPES: dict[str, SimGpuType] = {
    "A100-80GB": SimGpuType("NVIDIA A100-SXM4-80GB", 81920, 400.0),
    "A100-40GB": SimGpuType("NVIDIA A100-SXM4-40GB", 40960, 400.0),
    "H100-80GB": SimGpuType("NVIDIA H100 80GB HBM3", 81559, 700.0),
    "H200": SimGpuType("NVIDIA H200", 143771, 700.0),
    "V100-32GB": SimGpuType("Tesla V100-SXM2-32GB", 32768, 300.0),
    "V100-16GB": SimGpuType("Tesla V100-SXM2-16GB", 16384, 300.0),
    "T4": SimGpuType("Tesla T4", 15360, 70.0),
    "L4": SimGpuType("NVIDIA L4", 23034, 72.0),
    "L40S": SimGpuType("NVIDIA L40S", 46068, 350.0),
    "A10G": SimGpuType("NVIDIA A10G", 23028, 300.0),
}
DEFAULT_SIM_TYPE = "A100-80GB"


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts`` (stable across processes)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sim_uuid(node_name: str, index: int) -> str:
    """``GPU-sim-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``, a function of node and index only."""
    h = hashlib.sha256(f"{node_name}:{index}".encode()).hexdigest()
    return f"GPU-sim-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


class SimBackend:
    """``count`` simulated GPUs of one type on node ``node_name``."""

    def __init__(
        self,
        node_name: str,
        count: int,
        gpu_type: str = DEFAULT_SIM_TYPE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if gpu_type not in SIM_GPU_TYPES:
            raise ValueError(f"unknown simulated GPU type {gpu_type!r}")
        self._node_name = node_name
        self._count = count
        self._gpu_type = gpu_type
        self._spec = SIM_GPU_TYPES[gpu_type]
        self._clock = clock
        self._busy: dict[int, int] = {}

    def facts(self) -> list[GpuFacts]:
        return [
            GpuFacts(
                index=index,
                uuid=sim_uuid(self._node_name, index),
                name=self._spec.product_name,
                gpu_type=self._gpu_type,
                memory_total_mib=self._spec.memory_total_mib,
            )
            for index in range(self._count)
        ]

    def observe(self, busy: dict[int, int]) -> None:
        """Remember which GPU index runs which attempt id; other GPUs are idle."""
        self._busy = dict(busy)

    def sample(self) -> list[GpuSample]:
        period = int(self._clock() // SAMPLE_PERIOD_S)
        return [self._sample_one(index, period) for index in range(self._count)]

    def _sample_one(self, index: int, period: int) -> GpuSample:
        attempt_id = self._busy.get(index)
        noise = _unit(self._node_name, index, period)
        if attempt_id is None:
            utilization_pct, memory_used_mib, load = 2.0 * noise, 0, 0.0
        else:
            utilization_pct = 85.0 + 14.0 * noise
            memory_fraction = 0.6 + 0.3 * _unit(self._node_name, index, attempt_id)
            memory_used_mib = int(self._spec.memory_total_mib * memory_fraction)
            load = utilization_pct / 100
        idle_w = self._spec.power_max_w * IDLE_POWER_FRACTION
        return GpuSample(
            index=index,
            utilization_pct=round(utilization_pct, 1),
            memory_used_mib=memory_used_mib,
            temperature_c=round(
                IDLE_TEMPERATURE_C + load * (BUSY_TEMPERATURE_C - IDLE_TEMPERATURE_C), 1
            ),
            power_w=round(idle_w + load * (self._spec.power_max_w - idle_w), 1),
            ecc_errors=0,
            healthy=True,
        )

    def close(self) -> None:
        """Nothing to release."""
