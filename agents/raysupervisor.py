"""One node of a job's Ray cluster: the process the runner starts for a ``ray: true`` attempt.

``python -m agents.raysupervisor --attempt-id N --rank R ... -- ENTRYPOINT...`` is the
leader of the attempt's session, so everything it starts (``ray start --block`` and
the Ray daemons it spawns, Ray's workers, the entrypoint) is in that session, and the
runner's stop and the orphan sweep reach all of it (``agents.orphans``).

Rank 0 (the head): start ``ray start --head``, wait for its GCS, publish the
rendezvous (``agents.raycluster``), wait until ``CORRAL_NUM_NODES`` nodes are alive
(the gang), then run the entrypoint in a process group of its own with
``RAY_ADDRESS``, the cluster's token and ``CORRAL_STOP_FILE``. When it exits: mark
the rendezvous ended, tear Ray down, exit with the entrypoint's code.
Other ranks: wait for the head's address, join with ``ray start --address``, and keep
the node up until the head marks the rendezvous ended (exit 0). A stop does not end
it at once: the head's workload may need this node to checkpoint, so it waits for the
head for most of the grace period. A worker whose Ray node dies on its own keeps
waiting too: the head decides how the attempt ends, and a lost head is the server's
to notice (its node is lost, the attempt is stopped).

Stopping (the runner sends SIGTERM to this process only, SIGKILL to the whole session
after the grace period): the head creates the stop file (Ray Train workers check it
between steps, checkpoint and return), sends SIGTERM to the entrypoint's group, waits
for it until ``grace - TEARDOWN_RESERVE_S``, then tears Ray down. Ray's daemons are
never signalled before the entrypoint is done: a checkpoint on stop needs them.
Every Ray process started is listed in ``--state-file`` (pid and start time), kept
current while the node runs, for the agent and the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from agents import raycluster as rc
from agents.orphans import proc_stat, session_members
from scheduler.domain.sync import AttemptLaunch

EXIT_OK, EXIT_FAILED, EXIT_STOPPED = 0, 1, 143
RAY_STATE_FILE = "ray.json"  # in the agent's attempt dir
POLL_S = 0.2
STATE_REFRESH_S = 2.0
GCS_START_TIMEOUT_S = 120.0
TEARDOWN_TIMEOUT_S = 10.0  # SIGTERM to `ray start --block` until SIGKILL to what is left
TEARDOWN_RESERVE_S = 5.0  # of the grace period, kept for tearing Ray down


_STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[corral-ray +{time.monotonic() - _STARTED:.1f}s] {text}", flush=True)


@dataclass
class Node:
    """The Ray node this supervisor runs; ``stop_requested`` is set by SIGTERM."""

    plan: rc.NodePlan
    rendezvous: Path
    state_file: Path | None
    grace_s: float
    join_timeout_s: float
    ray: subprocess.Popen[bytes] | None = None
    temp_dir: Path | None = None
    stop_requested: bool = False
    entry_pgid: int | None = None
    _recorded_at: float = field(default=0.0)

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def start_ray(self, argv: list[str], env: dict[str, str]) -> None:
        say(f"starting Ray {'head' if self.plan.is_head else 'worker'}: {' '.join(argv[1:4])}")
        self.ray = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)

    def ray_alive(self) -> bool:
        return self.ray is not None and self.ray.poll() is None

    def record(self, force: bool = False) -> None:
        """List this session's Ray processes (not us, not the entrypoint) in the state file."""
        if self.state_file is None or (
            not force and time.monotonic() - self._recorded_at < STATE_REFRESH_S
        ):
            return
        self._recorded_at = time.monotonic()
        me = os.getpid()
        pids = []
        for pid in session_members(os.getsid(0)):
            stat = proc_stat(pid)
            if pid != me and stat is not None and stat.pgrp != self.entry_pgid:
                pids.append({"pid": pid, "start_ticks": stat.start_ticks})
        known = _read_state(self.state_file)
        merged = {(p["pid"], p["start_ticks"]): p for p in [*known, *pids]}
        state = {"temp_dir": str(self.temp_dir or ""), "pids": list(merged.values())}
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.state_file)

    def teardown(self) -> None:
        """Stop ``ray start --block`` (it stops its daemons), then SIGKILL what is left."""
        self.record(force=True)
        if self.ray is not None and self.ray.poll() is None:
            self.ray.send_signal(signal.SIGTERM)
            try:
                self.ray.wait(TEARDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                say("Ray did not stop within its time; killing it")
        me = os.getpid()
        for pid in session_members(os.getsid(0)):
            if pid != me:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self.ray is not None:
            self.ray.wait()
        if self.temp_dir is not None:
            rc.remove_temp_dir(self.temp_dir)
        say("Ray stopped")


def _read_state(path: Path) -> list[dict[str, int]]:
    try:
        return list(json.loads(path.read_text())["pids"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def remove_leftovers(state_file: Path) -> None:
    """Remove the Ray temp dir of a supervisor that could not (it was SIGKILLed)."""
    try:
        temp_dir = str(json.loads(state_file.read_text()).get("temp_dir") or "")
    except (OSError, ValueError, AttributeError):
        return
    if Path(temp_dir).name.startswith("corral-ray-"):
        rc.remove_temp_dir(Path(temp_dir))


def wait_until_alive(node: Node, address: str, want: int, timeout_s: float) -> str | None:
    """Poll the GCS until ``want`` nodes are alive; None, or why not."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        if node.stop_requested:
            return "stopped while forming the cluster"
        if not node.ray_alive():
            return "the Ray head exited while forming the cluster"
        try:
            seen = rc.count_alive_nodes(address)
        except Exception:  # the GCS is not up yet; Ray raises several kinds
            seen = 0
        node.record()
        if seen >= want:
            return None
        time.sleep(POLL_S * 5)
    return f"only {seen} of {want} Ray nodes came up within {timeout_s:g} s"


def run_head(node: Node, entrypoint: Sequence[str]) -> int:
    """Form the cluster, run the entrypoint, tear down; the entrypoint's exit code."""
    plan = node.plan
    rc.clear_rendezvous(node.rendezvous)
    ip = rc.node_ip(os.environ.get("CORRAL_HEAD_HOST") or "localhost")
    token = rc.new_token()
    os.environ.update(rc.auth_env(token))  # count_alive_nodes reads the token here
    node.temp_dir = rc.make_temp_dir(plan)
    argv, address = rc.head_command(plan, ip, node.temp_dir)
    node.start_ray(argv, rc.ray_env(dict(os.environ), token))
    why = wait_until_alive(node, address, 1, GCS_START_TIMEOUT_S)
    if why is None:
        rc.publish_head(node.rendezvous, rc.HeadInfo(plan.attempt_id, address, token))
        say(f"head at {address}; waiting for {plan.num_nodes} node(s)")
        why = wait_until_alive(node, address, plan.num_nodes, node.join_timeout_s)
    if why is not None:
        say(why)
        code = EXIT_STOPPED if node.stop_requested else EXIT_FAILED
        rc.mark_ended(node.rendezvous, code)
        node.teardown()
        return code
    say(f"all {plan.num_nodes} node(s) up; running {' '.join(entrypoint)}")
    env = rc.ray_env(dict(os.environ), token, address)
    env["CORRAL_STOP_FILE"] = str(node.rendezvous / rc.STOP_FILE)
    code = run_entrypoint(node, entrypoint, env)
    rc.mark_ended(node.rendezvous, code)
    node.teardown()
    return code


def run_entrypoint(node: Node, argv: Sequence[str], env: dict[str, str]) -> int:
    """Run the entrypoint in its own process group; relay a stop; its exit code."""
    entry = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, process_group=0)
    node.entry_pgid = entry.pid
    deadline: float | None = None
    while entry.poll() is None:
        if node.stop_requested and deadline is None:
            (node.rendezvous / rc.STOP_FILE).touch()
            _killpg(entry.pid, signal.SIGTERM)
            deadline = time.monotonic() + max(node.grace_s - TEARDOWN_RESERVE_S, 1.0)
            say("stop requested: the workload was asked to checkpoint and exit")
        elif deadline is not None and time.monotonic() >= deadline:
            say("the workload did not exit in time; killing it")
            _killpg(entry.pid, signal.SIGKILL)
            deadline = float("inf")
        node.record()
        time.sleep(POLL_S)
    code = entry.returncode
    _killpg(entry.pid, signal.SIGKILL)  # what the entrypoint left in its group
    say(f"the entrypoint exited with code {code}")
    return code if code >= 0 else 128 - code


def run_worker(node: Node) -> int:
    """Join the head's cluster and stay until the head ends or the agent stops us."""
    plan = node.plan
    deadline = time.monotonic() + node.join_timeout_s
    head = None
    while head is None:
        if node.stop_requested or rc.head_ended(node.rendezvous):
            return EXIT_STOPPED if node.stop_requested else EXIT_OK
        if time.monotonic() >= deadline:
            say(f"no Ray head published within {node.join_timeout_s:g} s")
            return EXIT_FAILED
        head = rc.read_head(node.rendezvous, plan.attempt_id)
        time.sleep(POLL_S)
    ip = rc.node_ip(os.environ.get("CORRAL_HEAD_HOST") or "localhost")
    node.temp_dir = rc.make_temp_dir(plan)
    argv = rc.worker_command(plan, ip, node.temp_dir, head.address)
    node.start_ray(argv, rc.ray_env(dict(os.environ), head.token))
    wait_for_head_end(node)
    node.teardown()
    return EXIT_STOPPED if node.stop_requested else EXIT_OK


def wait_for_head_end(node: Node) -> None:
    """Keep this node up until the head ends the attempt, or for most of the grace
    period after a stop: the head's workload may need this node to checkpoint."""
    reported = False
    deadline: float | None = None
    while not rc.head_ended(node.rendezvous):
        if not node.ray_alive() and not reported:
            say("this Ray node exited; waiting for the head to end the attempt")
            reported = True
        if node.stop_requested and deadline is None:
            wait_s = max(node.grace_s - TEARDOWN_RESERVE_S, 0.0)
            say(f"stop requested: keeping this node up for the head (at most {wait_s:g} s)")
            deadline = time.monotonic() + wait_s
        if deadline is not None and time.monotonic() >= deadline:
            say("the head did not end in time")
            return
        node.record()
        time.sleep(POLL_S)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def parse_args(argv: Sequence[str]) -> tuple[Node, list[str]]:
    args = list(argv)
    split = args.index("--") if "--" in args else len(args)
    p = argparse.ArgumentParser(prog="python -m agents.raysupervisor")
    p.add_argument("--attempt-id", type=int, required=True)
    p.add_argument("--attempt-number", type=int, required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--gpus", default="", help="comma-separated GPU indices")
    p.add_argument("--cpus", type=float)
    p.add_argument("--memory-mib", type=int)
    p.add_argument("--grace-s", type=float, default=30.0)
    p.add_argument("--join-timeout-s", type=float, default=300.0)
    p.add_argument("--state-file", type=Path)
    opts = p.parse_args(args[:split])
    gpus = [int(i) for i in opts.gpus.split(",") if i.strip()]
    plan = rc.node_plan(opts.attempt_id, opts.rank, opts.nodes, gpus, opts.cpus, opts.memory_mib)
    checkpoint_dir = os.environ.get("CORRAL_CHECKPOINT_DIR") or os.getcwd()
    rendezvous = rc.rendezvous_dir(checkpoint_dir, opts.attempt_number)
    node = Node(plan, rendezvous, opts.state_file, opts.grace_s, opts.join_timeout_s)
    return node, args[split + 1 :]


def supervisor_argv(launch: AttemptLaunch, state_file: Path) -> list[str]:
    """The argv that runs ``launch`` as its node of a per-job Ray cluster."""
    argv = [
        sys.executable,
        "-m",
        "agents.raysupervisor",
        f"--attempt-id={launch.attempt_id}",
        f"--attempt-number={launch.attempt_number}",
        f"--rank={launch.node_rank}",
        f"--nodes={launch.num_nodes}",
        f"--gpus={','.join(map(str, launch.gpu_indices))}",
        f"--grace-s={launch.grace_period_s}",
        f"--state-file={state_file}",
    ]
    if launch.cpus:
        argv.append(f"--cpus={launch.cpus}")
    if launch.memory_mib:
        argv.append(f"--memory-mib={launch.memory_mib}")
    return [*argv, "--", *launch.argv]


def main(argv: Sequence[str] | None = None) -> int:
    node, entrypoint = parse_args(sys.argv[1:] if argv is None else argv)
    if os.getsid(0) != os.getpid():
        say("must lead its own session (the runner starts it so): it stops what is in it")
        return EXIT_FAILED
    signal.signal(signal.SIGTERM, node.on_sigterm)
    if node.plan.is_head and not entrypoint:
        say("no entrypoint given after --")
        return EXIT_FAILED
    try:
        return run_head(node, entrypoint) if node.plan.is_head else run_worker(node)
    except Exception as err:  # never leave Ray behind, whatever went wrong
        say(f"failed: {type(err).__name__}: {err}")
        if node.plan.is_head:
            rc.mark_ended(node.rendezvous, EXIT_FAILED)
        node.teardown()
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
