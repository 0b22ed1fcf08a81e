"""Fuzz tests: generated requests against the API and generated job files against the
spec parser. Part of the default run at a size that fits CI; ``CORRAL_FUZZ_EXAMPLES``
sets the examples per generated test to search deeper (or to run a quick smoke).
"""

from __future__ import annotations

import os

import pytest

EXAMPLES_ENV = "CORRAL_FUZZ_EXAMPLES"


def examples(default: int) -> int:
    """``CORRAL_FUZZ_EXAMPLES`` when set (a positive integer), else ``default``."""
    raw = os.environ.get(EXAMPLES_ENV, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise pytest.UsageError(f"{EXAMPLES_ENV} must be a positive integer, not {raw!r}")
    return int(raw)
