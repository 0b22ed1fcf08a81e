"""``corral top`` under a pseudo-terminal against a live local cluster: it redraws in
place a few times, shows the nodes' GPUs and the running job, quits on ``q`` with exit
0 and leaves the terminal as it found it."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster, corral_argv
from tests.e2e.conftest import cli_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DEADLINE_S = 60.0  # only so that a broken build cannot hang the suite
HEADER = b"corral top"


def _read_until(master: int, output: bytearray, done: object, deadline: float) -> None:
    """Append what the terminal shows to ``output`` until ``done()`` or the deadline."""
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                output += os.read(master, 65536)
            except OSError:  # the child closed the terminal
                return


def _running_job(local: LocalCluster) -> int:
    with local.client() as client:
        job = client.submit(JobSpec(command=["sleep", "300"], resources=Resources(gpus=1)))
        deadline = time.monotonic() + DEADLINE_S
        while client.get_job(job.id).status != "running":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.1)
    return job.id


def test_top_refreshes_in_place_and_quits_on_q(cluster: LocalCluster, tmp_path: Path) -> None:
    job_id = _running_job(cluster)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    proc = subprocess.Popen(
        corral_argv("top", "--interval", "0.3"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**cli_for(cluster, tmp_path).env, "TERM": "xterm-256color"},
        start_new_session=True,
    )
    output = bytearray()
    try:
        deadline = time.monotonic() + DEADLINE_S
        _read_until(master, output, lambda: output.count(HEADER) >= 3, deadline)
        assert output.count(HEADER) >= 3, output.decode(errors="replace")[-2000:]
        assert b"\x1b[?1049h" in output  # the alternate screen: it redraws in place
        text = output.decode(errors="replace")
        assert "node-a" in text and "node-b" in text
        assert f"job {job_id}" in text
        os.write(master, b"q")
        _read_until(master, output, lambda: proc.poll() is not None, deadline)
        assert proc.wait(timeout=DEADLINE_S) == 0
        assert b"Traceback" not in output
        assert termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak mode was undone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_top_once_prints_one_frame(cluster: LocalCluster, tmp_path: Path) -> None:
    out = cli_for(cluster, tmp_path).run("top", "--once")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("corral top") == 1
    assert "node-a" in out.stdout and "queues" in out.stdout
