"""Short GPU types: the names placements and job specs use (``A100-80GB``, ``T4``).

NVML reports marketing names that differ by form factor (``NVIDIA A100-SXM4-80GB``,
``NVIDIA A100 80GB PCIe``); a job asks for the chip and, where a chip ships with
several memory sizes, the size. So a short type is the chip's model token, plus
``-<N>GB`` for chips with several sizes. Worked examples:

    NVIDIA A100-SXM4-80GB  ->  A100-80GB     (size read from the name)
    NVIDIA A100-PCIE-40GB  ->  A100-40GB
    NVIDIA H100 PCIe, 81559 MiB ->  H100-80GB (no size in the name: nearest nominal size)
    Tesla T4               ->  T4            (one size only)
    NVIDIA GeForce RTX 4090 -> RTX-4090      (unknown chip: a cleaned name)
"""

from __future__ import annotations

import re

# Chips named by one token; the order matters only for readability (word boundaries
# keep L4 from matching L40S, and A10 from matching A100).
_CHIPS = (
    "GB200", "GH200", "B200", "B100", "H200", "H100", "H800", "H20", "A100", "A800",
    "A10G", "A10", "A16", "A30", "A40", "A2", "L40S", "L40", "L4", "V100", "P100",
    "P40", "P4", "T4", "K80",
)  # fmt: skip
# Chips sold with several memory sizes: their short type carries the size.
_SIZED_CHIPS = frozenset({"A100", "A800", "H100", "H800", "V100", "P100"})
# Nominal memory sizes in GB; NVML's total is a little under the nominal size.
_NOMINAL_GB = (12, 16, 24, 32, 40, 48, 64, 80, 94, 96, 141, 192)
_CHIP_RE = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(_CHIPS) + r")(?![A-Za-z0-9])", re.I)
_SIZE_RE = re.compile(r"(?<![0-9])(\d{1,3})\s?GB(?![A-Za-z0-9])", re.I)
_VENDOR_WORDS = ("NVIDIA", "Tesla", "GeForce", "Quadro")
MAX_TYPE_LEN = 64


def short_gpu_type(product_name: str, memory_mib: int) -> str:
    """The short type of a GPU from its NVML product name and total memory in MiB."""
    chip = _CHIP_RE.search(product_name)
    if chip is None:
        return _cleaned(product_name)
    token = chip.group(1).upper()
    if token not in _SIZED_CHIPS:
        return token
    return f"{token}-{_memory_gb(product_name, memory_mib)}GB"


def _memory_gb(product_name: str, memory_mib: int) -> int:
    """The nominal size in GB: the one in the name, else the nearest to ``memory_mib``."""
    named = _SIZE_RE.search(product_name)
    if named is not None:
        return int(named.group(1))
    memory_gb = memory_mib / 1024
    return min(_NOMINAL_GB, key=lambda nominal: abs(nominal - memory_gb))


def _cleaned(product_name: str) -> str:
    """Vendor words dropped, spaces as dashes, only ``[A-Za-z0-9._-]``; never empty."""
    words = [w for w in product_name.split() if w not in _VENDOR_WORDS]
    name = re.sub(r"[^A-Za-z0-9._-]", "", "-".join(words)).strip("-.")
    return name[:MAX_TYPE_LEN] or "GPU"
