"""The NVML backend on a real NVIDIA GPU; skipped where no NVML library loads."""

from __future__ import annotations

import shutil
import subprocess

import pynvml
import pytest

from agents.gpu import NvmlBackend, select_backend

pytestmark = pytest.mark.gpu


def _nvml_loads() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


requires_nvml = pytest.mark.skipif(not _nvml_loads(), reason="no NVML library or driver here")


@requires_nvml
def test_facts_and_samples_of_the_real_gpus() -> None:
    backend = NvmlBackend()
    try:
        facts = backend.facts()
        samples = backend.sample()
    finally:
        backend.close()

    assert facts, "NVML loads but reports no GPU"
    assert [s.index for s in samples] == [f.index for f in facts]
    for gpu in facts:
        assert gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.memory_total_mib > 0
        assert gpu.gpu_type and " " not in gpu.gpu_type
    for sample in samples:
        assert sample.healthy
        assert sample.memory_used_mib is not None  # every GPU reports memory


@requires_nvml
def test_auto_picks_nvml_and_agrees_with_nvidia_smi() -> None:
    backend = select_backend("auto", "gpu-node")
    try:
        uuids = [gpu.uuid for gpu in backend.facts()]
    finally:
        backend.close()

    assert isinstance(backend, NvmlBackend)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("no nvidia-smi to compare with")
    listed = subprocess.run(
        [smi, "--query-gpu=uuid", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert uuids == listed
