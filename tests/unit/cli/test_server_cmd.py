"""``corral server``'s policy flags: names and durations are checked before it starts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from scheduler.cli.server import _as_duration, _policy_settings
from scheduler.settings import PolicyParams, ServerSettings

from .conftest import Cli


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--policy-ordering", "nope"], "error: unknown ordering 'nope'; known: "),
        (["--policy-preemption", "nope"], "error: unknown preemption 'nope'; known: "),
        (["--policy-backfill", "nope"], "error: unknown backfill 'nope'; known: "),
        (["--policy-admission", "nope"], "error: unknown admission 'nope'; known: "),
        (["--usage-half-life", "a week"], "error: --usage-half-life: not a duration: "),
        (["--usage-half-life", "0"], "error: --usage-half-life: must be longer than 0s"),
        (["--min-runtime", "5 minutes"], "error: --min-runtime: not a duration: "),
        (["--service-loss", "soon"], "error: --service-loss: not a duration: "),
    ],
)
def test_a_bad_policy_flag_is_one_line_at_start(
    corral: Cli, tmp_path: Path, args: list[str], error: str
) -> None:
    result = corral("server", "--data-dir", str(tmp_path), *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(error), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "corral.db").exists()  # refused before anything started


def test_the_flags_fill_the_settings() -> None:
    flags: dict[str, str | None] = {
        "policy_ordering": "o",
        "policy_admission": "a",
        "policy_backfill": "b",
        "policy_preemption": "p",
        "min_runtime": "0",
        "usage_half_life": "1d",
        "service_loss": "2m",
    }
    chosen = _policy_settings(flags)
    assert {k: v for k, v in chosen.items() if k != "params"} == {
        "ordering": "o",
        "admission": "a",
        "backfill": "b",
        "preemption": "p",
    }
    assert (chosen["params"].min_runtime_s, chosen["params"].usage_half_life_s) == (0, 86_400)
    assert chosen["params"].service_loss_s == 120.0
    assert _policy_settings({**flags, "service_loss": "any"})["params"].service_loss_s == math.inf
    rest = PolicyParams()
    assert chosen["params"].las_thresholds_gpu_s == rest.las_thresholds_gpu_s


def test_the_defaults_are_the_settings_defaults(corral: Cli) -> None:
    shown = " ".join(corral("server", "--help").stdout.split())  # help text wraps
    defaults = ServerSettings(data_dir=Path("."), database_url="")
    for flag, value in (
        ("--policy-ordering", defaults.ordering),
        ("--policy-preemption", defaults.preemption),
        ("--policy-backfill", defaults.backfill),
        ("--policy-admission", defaults.admission),
    ):
        assert flag in shown and f"[default: {value}]" in shown
    assert (_as_duration(PolicyParams().usage_half_life_s), _as_duration(300.0)) == ("7d", "5m")
    assert "[default: 7d]" in shown and "[default: 5m]" in shown
