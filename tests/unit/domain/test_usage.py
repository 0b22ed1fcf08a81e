"""Decayed usage: ``usage * 2^(-dt/half_life) + GPU-seconds held in the window``."""

from __future__ import annotations

import pytest

from scheduler.domain.usage import decay_factor, decayed_usage, held_gpu_seconds

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S


@pytest.mark.parametrize(
    ("elapsed_s", "factor"),
    [
        (0.0, 1.0),
        (WEEK_S, 0.5),
        (2 * WEEK_S, 0.25),
        (WEEK_S / 2, 2**-0.5),
        (-5.0, 1.0),  # a clock that went back decays nothing
    ],
)
def test_the_decay_halves_every_half_life(elapsed_s: float, factor: float) -> None:
    assert decay_factor(elapsed_s, WEEK_S) == pytest.approx(factor)


def test_the_worked_example_of_the_module() -> None:
    """4 GPUs for a day, then nothing: 345 600 GPU-s, 172 800 a week later, 86 400 after two."""
    after_day = decayed_usage(0.0, DAY_S, WEEK_S, held_gpu_s=4 * DAY_S)
    assert after_day == 345_600
    assert decayed_usage(after_day, WEEK_S, WEEK_S) == pytest.approx(172_800)
    assert decayed_usage(after_day, 2 * WEEK_S, WEEK_S) == pytest.approx(86_400)


def test_passes_compose_like_one_long_pass() -> None:
    """Decay is multiplicative: two 30 s passes decay as much as one of 60 s."""
    once = decayed_usage(1000.0, 60.0, 3600.0)
    twice = decayed_usage(decayed_usage(1000.0, 30.0, 3600.0), 30.0, 3600.0)
    assert twice == pytest.approx(once)


def test_held_time_is_added_after_the_decay() -> None:
    # 100 GPU-s decayed over one half-life is 50, plus 8 GPUs for 60 s
    assert decayed_usage(100.0, 60.0, 60.0, held_gpu_s=8 * 60.0) == pytest.approx(530.0)
    assert decayed_usage(100.0, 0.0, 60.0, held_gpu_s=-3.0) == 100.0  # never negative


def test_held_gpu_seconds_count_only_the_overlap_with_the_window() -> None:
    intervals = [
        (0.0, None),  # held through the whole window: 30
        (10.0, 20.0),  # started and ended inside it: 10
        (-5.0, 3.0),  # started before it: 3
        (25.0, None),  # started inside, still held: 5
        (-10.0, -1.0),  # over before the window: 0
        (40.0, None),  # starts after it: 0
    ]
    assert held_gpu_seconds(intervals, 0.0, 30.0) == 48.0
    assert held_gpu_seconds([], 0.0, 30.0) == 0.0
