"""short_gpu_type: NVML product names to the short types jobs ask for."""

from __future__ import annotations

import pytest

from agents.gpu import short_gpu_type


@pytest.mark.parametrize(
    ("product_name", "memory_mib", "expected"),
    [
        ("NVIDIA A100-SXM4-80GB", 81920, "A100-80GB"),
        ("NVIDIA A100-SXM4-40GB", 40960, "A100-40GB"),
        ("NVIDIA A100-PCIE-40GB", 40960, "A100-40GB"),
        ("NVIDIA A100 80GB PCIe", 81920, "A100-80GB"),
        ("NVIDIA H100 80GB HBM3", 81559, "H100-80GB"),
        ("NVIDIA H100 PCIe", 81559, "H100-80GB"),
        ("NVIDIA H100 NVL", 95830, "H100-94GB"),
        ("Tesla V100-SXM2-32GB", 32768, "V100-32GB"),
        ("Tesla V100-SXM2-16GB", 16160, "V100-16GB"),
        ("Tesla V100-PCIE-16GB", 16160, "V100-16GB"),
        ("Tesla T4", 15360, "T4"),
        ("NVIDIA H200", 143771, "H200"),
        ("NVIDIA L4", 23034, "L4"),
        ("NVIDIA L40S", 46068, "L40S"),
        ("NVIDIA L40", 46068, "L40"),
        ("NVIDIA A10G", 23028, "A10G"),
        ("NVIDIA A10", 23028, "A10"),
        ("NVIDIA GeForce RTX 4090", 24564, "RTX-4090"),
        ("NVIDIA RTX A6000", 49140, "RTX-A6000"),
        ("Quadro RTX 8000", 46080, "RTX-8000"),
        ("NVIDIA", 1024, "GPU"),
        ("  ", 1024, "GPU"),
    ],
)
def test_short_gpu_type(product_name: str, memory_mib: int, expected: str) -> None:
    assert short_gpu_type(product_name, memory_mib) == expected


def test_a_cleaned_name_fits_the_protocol() -> None:
    name = short_gpu_type("NVIDIA Some/Very (Odd) Name " + "X" * 100, 1024)
    assert len(name) <= 64
    assert all(c.isalnum() or c in "._-" for c in name)
