"""This host's facts and load, read with psutil. Memory in MiB, CPU in percent of all cores."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import psutil

from scheduler import __version__
from scheduler.domain.sync import GpuFacts, HostSample, NodeFacts

MIB = 1024 * 1024
MAX_HOSTNAME_LEN = 255


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    cpus: int  # logical CPUs, at least 1
    memory_total_mib: int


def host_facts() -> HostFacts:
    hostname = socket.gethostname()[:MAX_HOSTNAME_LEN] or "localhost"
    cpus = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    return HostFacts(
        hostname=hostname, cpus=cpus, memory_total_mib=psutil.virtual_memory().total // MIB
    )


def node_facts(name: str, gpus: list[GpuFacts]) -> NodeFacts:
    """What a sync says about this node: its name, this host's facts, its GPUs."""
    facts = host_facts()
    return NodeFacts(
        name=name,
        hostname=facts.hostname,
        cpus=facts.cpus,
        memory_total_mib=facts.memory_total_mib,
        gpus=gpus,
        agent_version=__version__,
    )


class HostProbe:
    """Takes host samples; CPU percent is measured between two consecutive samples."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)  # the first reading only starts the measurement

    def sample(self) -> HostSample:
        memory = psutil.virtual_memory()
        return HostSample(
            cpu_pct=psutil.cpu_percent(interval=None),
            memory_used_mib=max(memory.total - memory.available, 0) // MIB,
            load1=os.getloadavg()[0],
        )
