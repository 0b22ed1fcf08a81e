"""Trace replay: a job trace through the server's own policy, virtual clock, simulated nodes.

The simulator is the yardstick for policy quality. It never copies a policy: every
cycle builds a ``Snapshot`` as ``scheduler/store/snapshot.py`` would for the same
cluster state and calls ``Policy.decide`` from ``scheduler.policy``. Modules by phase:
``rows``/``traces``/``history`` load jobs, ``cluster`` and ``queues`` shape the
cluster, ``state`` owns the simulated jobs and builds snapshots, ``engine`` runs the
event loop, ``metrics``/``summary`` measure, ``report``/``plots`` show, and ``run``
ties them together (``simulate``). Usage and definitions: ``docs/simulate.md``.

Imports: ``scheduler.domain``, ``scheduler.policy`` and the standard library only
(matplotlib lazily, in ``plots``); never the store or the server's stack.
"""

from scheduler.sim.run import PolicyChoice, SimConfig, SimResult, simulate

__all__ = ["PolicyChoice", "SimConfig", "SimResult", "simulate"]
