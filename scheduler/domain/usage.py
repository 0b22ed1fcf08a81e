"""Decayed usage: the GPU-seconds a queue used, each second's weight halving every half-life.

``usage(t1) = usage(t0) * 2^(-(t1 - t0) / half_life) + GPU-seconds held in [t0, t1]``

The held term is measured from allocation times (a job that started and ended between
two passes counts too); it is not decayed inside the window, which a pass every ~30 s
makes negligible against a half-life of days. Slurm's ``PriorityDecayHalfLife`` works
the same way.

Worked example (half-life 7 d): a queue that held 4 GPUs for one day and then nothing
has 4 x 86 400 = 345 600 GPU-s at the end of that day, 172 800 a week later, 86 400
after two weeks.
"""

from __future__ import annotations

from collections.abc import Iterable

HOUR_S = 3600.0


def decay_factor(elapsed_s: float, half_life_s: float) -> float:
    """``2^(-elapsed/half_life)``; 1 for no time (or a clock that went back)."""
    if elapsed_s <= 0:
        return 1.0
    if half_life_s <= 0:
        return 0.0
    return float(2.0 ** (-elapsed_s / half_life_s))


def decayed_usage(
    usage_gpu_s: float, elapsed_s: float, half_life_s: float, held_gpu_s: float = 0.0
) -> float:
    """The usage after ``elapsed_s`` more seconds, in which ``held_gpu_s`` were used."""
    return usage_gpu_s * decay_factor(elapsed_s, half_life_s) + max(0.0, held_gpu_s)


def held_gpu_seconds(
    intervals: Iterable[tuple[float, float | None]], start: float, end: float
) -> float:
    """GPU-seconds held inside ``[start, end]`` by one-GPU intervals ``(from, to or None)``.

    ``[(0, None), (10, 20), (-5, 3)]`` over ``[0, 30]`` -> 30 + 10 + 3 = 43.
    """
    total = 0.0
    for began, ended in intervals:
        overlap = min(end, ended if ended is not None else end) - max(start, began)
        total += max(0.0, overlap)
    return total
