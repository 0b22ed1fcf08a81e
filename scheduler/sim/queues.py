"""The simulated cluster's queues: weights and guarantees from a VC list or a config mapping.

``queues_from_vc`` reads Philly's ``philly_vc.csv`` (``vc,node num``) and gives each
virtual cluster a guarantee proportional to its nodes and a weight proportional to
them (mean weight 1). Worked example: VCs a (3 nodes) and b (1 node) on 16 GPUs get
guarantees 12 and 4, weights 1.5 and 0.5. Guarantees are whole GPUs that add up to
the capacity (largest remainders round up).

``queues_from_config`` takes the parsed YAML/JSON of ``--queue-config`` (the CLI reads
the file): ``{"queues": [{"name": ..., "weight": ..., "guaranteed_gpus": ...}, ...]}``
or ``{"queues": {name: {...}}}``, each entry validated as a ``QueueSpec``.
A trace queue that no setup names gets weight 1 and no guarantee (``with_trace_queues``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scheduler.domain.snapshot import QueueView, TypeQuota
from scheduler.domain.spec import QueueSpec
from scheduler.sim.rows import BadRow, RowProblem, TraceError, integer, text


def queues_from_vc(path: Path, capacity: int) -> tuple[QueueView, ...]:
    """One queue per VC row, guarantee and weight proportional to its node count."""
    nodes: dict[str, int] = {}
    problems: list[RowProblem] = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)  # header: vc,node num
        for row in reader:
            if not row:
                continue
            try:
                if len(row) != 2:
                    raise BadRow("expected 2 fields: vc,node num")
                record = {"vc": row[0], "node num": row[1]}
                nodes[text(record, "vc")] = integer(record, "node num", minimum=1)
            except BadRow as err:
                problems.append(RowProblem(reader.line_num, str(err)))
    if problems:
        raise TraceError(str(path), problems)
    if not nodes:
        raise ValueError(f"{path}: no VC listed")
    return proportional_queues(nodes, capacity)


def proportional_queues(sizes: Mapping[str, int], capacity: int) -> tuple[QueueView, ...]:
    """Queues with guarantees summing to ``capacity`` and weights of mean 1, by ``sizes``."""
    total = sum(sizes.values())
    exact = {name: capacity * size / total for name, size in sizes.items()}
    guarantees = {name: math.floor(share) for name, share in exact.items()}
    short = capacity - sum(guarantees.values())
    by_remainder = sorted(exact, key=lambda n: (guarantees[n] - exact[n], n))
    for name in by_remainder[:short]:
        guarantees[name] += 1
    mean = total / len(sizes)
    return tuple(
        QueueView(name=name, weight=size / mean, guaranteed_gpus=guarantees[name])
        for name, size in sorted(sizes.items())
    )


def queues_from_config(data: Any) -> tuple[QueueView, ...]:
    """Queue views from a parsed config (see the module docstring); ValueError names the bad one."""
    entries = data.get("queues") if isinstance(data, dict) else data
    if isinstance(entries, dict):
        entries = [{"name": name, **(fields or {})} for name, fields in entries.items()]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("a queue config is {queues: [{name: ..., weight: ...}, ...]}")
    views = []
    for position, entry in enumerate(entries, start=1):
        try:
            spec = QueueSpec.model_validate(entry)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            name = entry.get("name", f"#{position}")
            raise ValueError(f"queue {name}: {where}: {first['msg']}") from None
        views.append(view_of(spec))
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise ValueError("a queue is named twice in the queue config")
    return tuple(views)


def view_of(spec: QueueSpec) -> QueueView:
    return QueueView(
        name=spec.name,
        weight=spec.weight,
        guaranteed_gpus=spec.guaranteed_gpus,
        borrow_limit_gpus=spec.borrow_limit_gpus,
        max_gpus=spec.max_gpus,
        parent=spec.parent,
        type_quotas=tuple(
            TypeQuota(q.gpu_type, q.guaranteed_gpus, q.max_gpus) for q in spec.type_quotas
        ),
    )


def with_trace_queues(
    views: Sequence[QueueView], trace_queues: Iterable[str]
) -> tuple[QueueView, ...]:
    """``views`` plus a default queue (weight 1, no guarantee) for each unnamed trace queue."""
    known = {v.name for v in views}
    extra = sorted(set(trace_queues) - known)
    return tuple(sorted([*views, *(QueueView(name=n) for n in extra)], key=lambda v: v.name))
