"""``corral server``'s telemetry windows: durations, in order, checked before it starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.cli.server import _telemetry_settings

from .conftest import Cli


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--keep-samples", "six hours"], "error: --keep-samples: not a duration: "),
        (["--keep-hour-rollups", "0"], "error: --keep-hour-rollups: must be longer than 0s"),
        (
            ["--keep-samples", "2d", "--keep-minute-rollups", "1d"],
            "error: --keep-samples, --keep-minute-rollups, --keep-hour-rollups: each must be",
        ),
    ],
)
def test_a_bad_window_is_one_line_at_start(
    corral: Cli, tmp_path: Path, args: list[str], error: str
) -> None:
    result = corral("server", "--data-dir", str(tmp_path), *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(error), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "corral.db").exists()


def test_the_windows_fill_the_settings_and_default_to_them(corral: Cli) -> None:
    flags = {"keep_samples": "1h", "keep_minute_rollups": "2d", "keep_hour_rollups": "90d"}
    assert _telemetry_settings(flags) == {
        "keep_samples_s": 3600.0,
        "keep_minute_rollups_s": 2 * 86400.0,
        "keep_hour_rollups_s": 90 * 86400.0,
    }
    shown = " ".join(corral("server", "--help").stdout.split())
    for flag, default in (
        ("--keep-samples", "6h"),
        ("--keep-minute-rollups", "7d"),
        ("--keep-hour-rollups", "400d"),
    ):
        assert f"{flag} TEXT" in shown and f"[default: {default}]" in shown, flag
