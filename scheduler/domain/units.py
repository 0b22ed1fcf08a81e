"""The small text forms of a job spec, parsed without pydantic: sizes (``16GiB``),
durations (``1h30m``), signal notices (``USR1@60``) and array ranges (``0-999:2``).

``scheduler.domain.spec`` validates with these; ``corral submit`` checks its flags with
them before it sends anything, without loading the validation library. Each returns its
input unchanged when it is not text, so a field's own checks still see numbers and lists.
"""

from __future__ import annotations

import re
from typing import Any

MAX_SIZE_MIB = 2**40  # a pebibyte-scale ceiling: keeps sizes inside 64-bit columns
MAX_DURATION_S = 10 * 365 * 86_400  # ten years
MAX_BATCH_JOBS = 10_000  # one batch or array: one transaction of bounded size
MAX_ARRAY_INDEX = 1_000_000

_SIZE_UNITS_MIB = {
    "": 1,
    "m": 1,
    "mb": 1,
    "mib": 1,
    "g": 1024,
    "gb": 1024,
    "gib": 1024,
    "t": 1024 * 1024,
    "tb": 1024 * 1024,
    "tib": 1024 * 1024,
}
_DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size_mib(value: Any) -> Any:
    """``"16GiB"`` -> 16384; ``512`` stays 512 (MiB). Other values pass to pydantic."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value)
    if not match or match.group(2).lower() not in _SIZE_UNITS_MIB:
        raise ValueError(f"not a size: {value!r} (use e.g. 512M, 16G, 16GiB)")
    mib = float(match.group(1)) * _SIZE_UNITS_MIB[match.group(2).lower()]
    if mib > MAX_SIZE_MIB:  # also a float's inf, which no int can hold
        raise ValueError(f"too large: {_clip(value)} (at most {MAX_SIZE_MIB} MiB)")
    return int(mib)


def parse_duration_s(value: Any) -> Any:
    """``"1h30m"`` -> 5400; ``"90"`` -> 90; ``"2d"`` -> 172800. Ints pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if re.fullmatch(r"[0-9]+", text):
        return _duration_number(text)
    parts = re.findall(r"([0-9]+)\s*([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"not a duration: {_clip(value)} (use e.g. 90, 45s, 30m, 1h30m, 2d)")
    return sum(_duration_number(n) * _DURATION_UNITS_S[u] for n, u in parts)


def _duration_number(digits: str) -> int:
    """Far more digits than any duration bound are refused before ``int()``, whose own
    limit (4300 digits) would speak of ``sys.set_int_max_str_digits``."""
    if len(digits.lstrip("0")) > 18:
        raise ValueError(f"too large: {_clip(digits)} (at most {MAX_DURATION_S} s)")
    return int(digits)


def _clip(value: str, keep: int = 40) -> str:
    """``value`` quoted for a message, cut short: a message stays one readable line."""
    return repr(value) if len(value) <= keep else f"{value[:keep]!r}... ({len(value)} chars)"


# Linux signal numbers, for a notice given by number (``"10@60"`` is ``USR1@60``).
SIGNAL_NUMBERS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "PWR": 30, "SYS": 31,
}  # fmt: skip
UNCATCHABLE = frozenset({"KILL", "STOP"})
MAX_SIGNAL_NUMBER = 64  # 32..64 are the real-time signals, kept as numbers
MAX_NOTICE_S = 3600
EXIT_CODE_RANGE = (-128, 255)  # negative: killed by that signal (as the agent reports it)


def parse_notice(value: Any) -> Any:
    """Slurm's ``--signal`` form: ``"USR1@60"`` -> ``{"name": "USR1", "notice_s": 60}``.

    The signal is a name (``USR1``, ``SIGUSR1``, case-insensitive) or a number 1..64; a
    number with a name is stored as the name (``10`` -> ``USR1``). A mapping passes on.
    """
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*(?:SIG)?([A-Za-z0-9]+)\s*@\s*(\d+)\s*", value, flags=re.I)
    if not match:
        raise ValueError(f"not a signal notice: {value!r} (use e.g. USR1@60: signal@seconds)")
    return {"name": match.group(1), "notice_s": int(match.group(2))}


def canonical_signal(value: str) -> str:
    """``"sigusr1"`` -> ``"USR1"``; ``"10"`` -> ``"USR1"``; ``"40"`` -> ``"40"``."""
    name = value.strip().upper().removeprefix("SIG")
    if name.isdigit():
        number = int(name)
        if not 1 <= number <= MAX_SIGNAL_NUMBER:
            raise ValueError(f"no signal number {number} (1..{MAX_SIGNAL_NUMBER})")
        name = next((n for n, i in SIGNAL_NUMBERS.items() if i == number), str(number))
    elif name not in SIGNAL_NUMBERS:
        raise ValueError(f"unknown signal {value!r} (e.g. USR1, USR2, TERM, INT, HUP, or 1..64)")
    if name in UNCATCHABLE:
        raise ValueError(f"SIG{name} cannot be caught: a notice needs a signal the job can handle")
    return name


def parse_array_indices(value: Any) -> Any:
    """Slurm's ``--array`` form to a sorted list of distinct indices.

    ``"0-3"`` -> [0, 1, 2, 3]; ``"0-9:4"`` -> [0, 4, 8]; ``"1,3,5"`` and mixes like
    ``"1-3,7"`` too. A list of ints passes on to the field's own checks.
    """
    if not isinstance(value, str):
        return value
    indices: set[int] = set()
    for part in value.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not match:
            raise ValueError(f"not an array range: {part!r} (use e.g. 0-999, 0-9:2, 1,3,5)")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3)) if match.group(3) is not None else 1
        if last < first:
            raise ValueError(f"not an array range: {part!r} (the end is below the start)")
        if step < 1:
            raise ValueError(f"not an array range: {part!r} (the step must be 1 or more)")
        if (last - first) // step + 1 + len(indices) > MAX_BATCH_JOBS:
            raise ValueError(f"an array holds at most {MAX_BATCH_JOBS} jobs")
        span = range(first, last + 1, step)
        if not indices.isdisjoint(span):
            raise ValueError(f"an index is given twice in {value!r}")
        indices.update(span)
    return sorted(indices)
