"""deploy/systemd: the units pass ``systemd-analyze verify``; install.sh is idempotent.

``systemd-analyze verify`` checks every key and value of a unit and that the
``ExecStart`` binary exists and is executable. The units start
``/opt/corral/venv/bin/corral``, which a test machine lacks, so the tests verify the
units as ``install.sh --corral PATH`` installs them, pointing at this checkout's
``corral``. A bad value is only a warning for systemd (exit 0), so any diagnostic
line about a unit fails the test too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = ROOT / "deploy" / "systemd"
INSTALL = SYSTEMD_DIR / "install.sh"
UNITS = ("corral-server.service", "corral-agent.service")
CORRAL = Path(sys.executable).with_name("corral")
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (Debian: the systemd package)"
)


def install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, check=False, timeout=60
    )


def verify(unit_dir: Path, *units: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", "--man=no", *(f"./{unit}" for unit in units)],
        cwd=unit_dir,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    """Both units installed under a staging root, starting this checkout's corral."""
    result = install("--prefix", str(tmp_path), "--corral", str(CORRAL))
    assert result.returncode == 0, result.stderr
    return tmp_path


@needs_analyze
def test_units_pass_systemd_analyze_verify(staged: Path) -> None:
    assert CORRAL.exists(), f"{CORRAL} is missing: pip install -e . first"
    result = verify(staged / "etc" / "systemd" / "system", *UNITS)
    diagnostics = [line for line in result.stderr.splitlines() if "corral-" in line]
    assert result.returncode == 0, result.stderr
    assert diagnostics == [], "\n".join(diagnostics)


@needs_analyze
def test_verify_catches_a_bad_unit(staged: Path) -> None:
    """The check above can fail: a misspelt key is reported."""
    unit_dir = staged / "etc" / "systemd" / "system"
    unit = unit_dir / "corral-agent.service"
    unit.write_text(unit.read_text().replace("Restart=always", "Restrt=always"))
    result = verify(unit_dir, "corral-agent.service")
    assert "Unknown key 'Restrt'" in result.stderr


def test_install_creates_units_settings_and_state_dirs(staged: Path) -> None:
    for unit in UNITS:
        text = (staged / "etc" / "systemd" / "system" / unit).read_text()
        assert f"ExecStart={CORRAL} " in text
        assert "/opt/corral/venv" not in text
    assert (staged / "etc" / "corral" / "server.env").read_text() == (
        SYSTEMD_DIR / "server.env.example"
    ).read_text()
    assert (staged / "etc" / "corral" / "agent.env").is_file()
    assert (staged / "var" / "lib" / "corral").is_dir()
    assert (staged / "var" / "lib" / "corral-agent").is_dir()


def test_install_twice_keeps_edited_settings(staged: Path) -> None:
    settings = staged / "etc" / "corral" / "agent.env"
    settings.write_text("CORRAL_SERVER=http://edited:8470\n")
    again = install("--prefix", str(staged), "--corral", str(CORRAL))
    assert again.returncode == 0, again.stderr
    assert settings.read_text() == "CORRAL_SERVER=http://edited:8470\n"
    assert f"keep: {settings}" in again.stdout


def test_install_one_role(tmp_path: Path) -> None:
    result = install("--prefix", str(tmp_path), "--role", "agent")
    assert result.returncode == 0, result.stderr
    installed = sorted(p.name for p in (tmp_path / "etc" / "systemd" / "system").iterdir())
    assert installed == ["corral-agent.service"]
    assert not (tmp_path / "etc" / "corral" / "server.env").exists()


def test_dry_run_prints_the_steps_and_changes_nothing(tmp_path: Path) -> None:
    result = install("--prefix", str(tmp_path / "root"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "root").exists()
    assert f"+ install -d -m 750 {tmp_path}/root/etc/corral" in result.stdout
    assert "corral-server.service" in result.stdout


def test_dry_run_without_prefix_shows_the_user_step() -> None:
    result = install("--dry-run", "--role", "server")
    assert result.returncode == 0, result.stderr
    # either the user exists here, or the step that creates it is shown, not run
    assert "useradd --system" in result.stdout or "ok: user corral exists" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--role", "gpu"), "error: --role: must be server, agent or both, not 'gpu'"),
        (("--corral", "bin/corral"), "error: --corral: must be an absolute path"),
        (("--frobnicate",), "error: unknown option: --frobnicate"),
    ],
)
def test_bad_options_are_one_error_line(args: tuple[str, ...], message: str) -> None:
    result = install(*args, "--dry-run")
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.splitlines()) == 1
