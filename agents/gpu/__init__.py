"""This node's GPUs behind one interface: real ones through NVML, simulated ones, or none.

A backend's GPU set is fixed when it is made: ``facts()`` and ``sample()`` always
cover the same indices, and ``sample()`` never raises for a GPU that misbehaves (its
fields become None, its ``healthy`` False).
"""

from __future__ import annotations

import logging
import re
from types import ModuleType
from typing import Protocol

from agents.gpu.nvml import NvmlBackend, NVMLError
from agents.gpu.sim import DEFAULT_SIM_TYPE, SIM_GPU_TYPES, SimBackend
from agents.gpu.types import short_gpu_type
from scheduler.domain.sync import GpuFacts, GpuSample

__all__ = [
    "GpuBackend",
    "GpuBackendError",
    "NoGpuBackend",
    "NvmlBackend",
    "SimBackend",
    "select_backend",
    "short_gpu_type",
]

log = logging.getLogger("corral.agent.gpu")

MAX_SIM_GPUS = 1024
_SIM_RE = re.compile(r"sim:(\d+)(?:x(.+))?")


class GpuBackend(Protocol):
    def facts(self) -> list[GpuFacts]:
        """The static facts of every GPU, in index order."""
        ...

    def sample(self) -> list[GpuSample]:
        """One reading of every GPU in ``facts()``; never raises for one bad GPU."""
        ...

    def observe(self, busy: dict[int, int]) -> None:
        """What runs now: GPU index -> attempt id (simulated GPUs follow it)."""
        ...

    def close(self) -> None:
        """Release what the backend holds (NVML); safe to call once at exit."""
        ...


class GpuBackendError(RuntimeError):
    """The GPU backend asked for cannot start (``nvml`` on a host where NVML fails)."""


class NoGpuBackend:
    """A node without GPUs (``--gpus none``, or ``auto`` where NVML is unavailable)."""

    def facts(self) -> list[GpuFacts]:
        return []

    def sample(self) -> list[GpuSample]:
        return []

    def observe(self, busy: dict[int, int]) -> None:
        """Nothing runs on GPUs that do not exist."""

    def close(self) -> None:
        """Nothing to release."""


def _spec_error(spec: str) -> ValueError:
    types = ", ".join(SIM_GPU_TYPES)
    return ValueError(
        f"bad GPU spec {spec!r}: expected auto, nvml, none, sim:N or sim:NxTYPE "
        f"(N in 1..{MAX_SIM_GPUS}, e.g. sim:4xA100-80GB; TYPE one of {types})"
    )


def _sim_backend(spec: str, node_name: str) -> SimBackend:
    match = _SIM_RE.fullmatch(spec)
    if match is None or not 1 <= int(match.group(1)) <= MAX_SIM_GPUS:
        raise _spec_error(spec)
    wanted = match.group(2) or DEFAULT_SIM_TYPE
    gpu_type = next((t for t in SIM_GPU_TYPES if t.lower() == wanted.lower()), None)
    if gpu_type is None:
        raise _spec_error(spec)
    return SimBackend(node_name, int(match.group(1)), gpu_type)


def select_backend(
    spec: str, node_name: str, *, pynvml_module: ModuleType | None = None
) -> GpuBackend:
    """The backend a ``--gpus`` spec names.

    ``auto``: NVML, or no GPUs (with a warning) when NVML cannot start; ``nvml``: NVML
    or ``GpuBackendError``; ``none``: no GPUs; ``sim:N`` / ``sim:NxTYPE``: N simulated
    GPUs (default type A100-80GB). Anything else raises ``ValueError``.
    ``pynvml_module`` replaces the real module (tests).
    """
    spec = spec.strip()
    if spec == "none":
        return NoGpuBackend()
    if spec.startswith("sim:"):
        return _sim_backend(spec, node_name)
    if spec not in ("auto", "nvml"):
        raise _spec_error(spec)
    try:
        return NvmlBackend(pynvml_module)
    except NVMLError as err:
        if spec == "nvml":
            raise GpuBackendError(f"NVML is unavailable: {err}") from err
        log.warning("NVML is unavailable (%s): this node reports no GPUs", err)
        return NoGpuBackend()
