"""Simulated nodes: the cluster's shape, who holds each GPU, and the node views of a snapshot.

``SimCluster`` owns the allocation of every GPU. Invariant: a GPU is held by at most
one job (``allocate`` refuses a GPU that is not free, as the server's unique index
does), ``free_gpus`` and the per-type histograms always match the holders, and the
``NodeView`` of a node is rebuilt only when its allocation changes, so a snapshot costs
O(nodes) to assemble, not O(GPUs).

Shapes: ``parse_shape("64x8")`` is 64 nodes of 8 GPUs (type ``GPU``);
``"48x8:V100,16x4:T4"`` mixes types. ``load_cluster_spec`` reads a CSV
``name_prefix,count,gpus,gpu_type[,memory_mib]``, one node group per row.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from scheduler.domain.snapshot import GpuRef, GpuView, NodeView, ResourceRequest
from scheduler.domain.status import NodeState
from scheduler.sim.rows import BadRow, RowProblem, TraceError, integer, text

DEFAULT_GPU_TYPE = "GPU"
DEFAULT_MEMORY_MIB = 81_920
SPEC_COLUMNS = ("name_prefix", "count", "gpus", "gpu_type")
_SHAPE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*(?::\s*([A-Za-z0-9._-]+))?\s*$")


@dataclass(frozen=True)
class NodeGroup:
    """``count`` identical nodes named ``{name_prefix}{n:03d}``."""

    name_prefix: str
    count: int
    gpus: int  # per node
    gpu_type: str = DEFAULT_GPU_TYPE
    memory_mib: int = DEFAULT_MEMORY_MIB

    def node_names(self) -> Iterator[str]:
        width = max(3, len(str(self.count - 1)))
        return (f"{self.name_prefix}{n:0{width}d}" for n in range(self.count))


@dataclass(frozen=True)
class ClusterSpec:
    groups: tuple[NodeGroup, ...]

    @property
    def total_gpus(self) -> int:
        return sum(g.count * g.gpus for g in self.groups)

    @property
    def node_count(self) -> int:
        return sum(g.count for g in self.groups)

    def describe(self) -> str:
        """``64x8 GPU`` or ``48x8 V100 + 16x4 T4``."""
        return " + ".join(f"{g.count}x{g.gpus} {g.gpu_type}" for g in self.groups)


def parse_shape(shape: str) -> ClusterSpec:
    """``"64x8"`` -> 64 nodes of 8 GPUs; comma-separated groups, each ``NxG[:TYPE]``."""
    groups = []
    for number, part in enumerate(shape.split(","), start=1):
        match = _SHAPE.match(part)
        if match is None:
            raise ValueError(f"cluster shape {part.strip()!r} is not NODESxGPUS[:TYPE], e.g. 64x8")
        count, gpus, gpu_type = int(match[1]), int(match[2]), match[3] or DEFAULT_GPU_TYPE
        prefix = "node-" if len(shape.split(",")) == 1 else f"g{number}-"
        groups.append(NodeGroup(prefix, count, gpus, gpu_type))
    return _checked(groups, shape)


def load_cluster_spec(path: Path) -> ClusterSpec:
    """Node groups from a CSV ``name_prefix,count,gpus,gpu_type[,memory_mib]``."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in SPEC_COLUMNS if c not in header]
        if missing:
            raise TraceError(str(path), [RowProblem(1, f"missing column(s) {', '.join(missing)}")])
        reader.fieldnames = header
        outcomes: list[tuple[int, NodeGroup | str]] = []
        for record in reader:
            try:
                outcomes.append((reader.line_num, _group(record)))
            except BadRow as err:
                outcomes.append((reader.line_num, str(err)))
    problems = [RowProblem(row, o) for row, o in outcomes if isinstance(o, str)]
    if problems:
        raise TraceError(str(path), problems)
    return _checked([o for _, o in outcomes if isinstance(o, NodeGroup)], str(path))


def _group(record: dict[str, str | None]) -> NodeGroup:
    if any(record.get(c) is None for c in SPEC_COLUMNS):
        raise BadRow(f"expected the columns {', '.join(SPEC_COLUMNS)}")
    fields = {k: (v or "") for k, v in record.items() if isinstance(k, str)}
    memory = fields.get("memory_mib", "").strip()
    return NodeGroup(
        name_prefix=text(fields, "name_prefix"),
        count=integer(fields, "count", minimum=1),
        gpus=integer(fields, "gpus", minimum=1),
        gpu_type=text(fields, "gpu_type"),
        memory_mib=integer(fields, "memory_mib", minimum=1) if memory else DEFAULT_MEMORY_MIB,
    )


def _checked(groups: Sequence[NodeGroup], source: str) -> ClusterSpec:
    if not groups:
        raise ValueError(f"{source}: no nodes")
    names = [name for g in groups for name in g.node_names()]
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: node names collide; give each group its own name_prefix")
    if any(g.count < 1 or g.gpus < 1 for g in groups):
        raise ValueError(f"{source}: every group needs at least 1 node of at least 1 GPU")
    return ClusterSpec(tuple(groups))


def shape_request(
    gpus: int, nodes: int | None, gpu_type: str | None, spec: ClusterSpec
) -> ResourceRequest:
    """The gang request of a job of ``gpus`` GPUs in all (``nodes`` when the trace fixes it).

    Without ``nodes``, a job that fits the largest matching node stays on one node;
    a larger one takes the fewest nodes that split it evenly: 12 GPUs on 8-GPU nodes is
    2 nodes x 6, 16 is 2 x 8, 24 is 3 x 8 (a prime like 13 becomes 13 x 1).
    """
    if nodes is not None:
        return ResourceRequest(gpus=gpus // nodes, nodes=nodes, gpu_type=gpu_type)
    wanted = None if gpu_type is None else gpu_type.casefold()
    sizes = [g.gpus for g in spec.groups if wanted in (None, g.gpu_type.casefold())]
    largest = max(sizes, default=0)
    if largest == 0 or gpus <= largest:
        return ResourceRequest(gpus=gpus, nodes=1, gpu_type=gpu_type)
    count = -(-gpus // largest)
    while gpus % count:
        count += 1
    return ResourceRequest(gpus=gpus // count, nodes=count, gpu_type=gpu_type)


class _Node:
    __slots__ = ("free", "free_views", "gpu_type", "gpu_views", "holders", "name", "size")

    def __init__(self, name: str, group: NodeGroup) -> None:
        self.name = name
        self.gpu_type = group.gpu_type
        self.size = group.gpus
        self.holders: list[int | None] = [None] * group.gpus
        self.free = group.gpus
        self.free_views = [
            GpuView(i, f"GPU-{name}-{i}", group.gpu_type, group.memory_mib)
            for i in range(group.gpus)
        ]
        self.gpu_views = list(self.free_views)  # the free view object whenever free

    def hold(self, index: int, holder: int | None) -> None:
        self.holders[index] = holder
        free = self.free_views[index]
        if holder is None:
            self.gpu_views[index] = free
        else:
            self.gpu_views[index] = GpuView(
                index=index,
                uuid=free.uuid,
                gpu_type=free.gpu_type,
                memory_mib=free.memory_mib,
                allocated_to=holder,
            )

    def view(self) -> NodeView:
        return NodeView(name=self.name, state=NodeState.UP, gpus=tuple(self.gpu_views))


class SimCluster:
    """Every node of a ``ClusterSpec``, all up and healthy, sorted by name (as the store)."""

    def __init__(self, spec: ClusterSpec) -> None:
        pairs = sorted((name, g) for g in spec.groups for name in g.node_names())
        self.spec = spec
        self._nodes = [_Node(name, group) for name, group in pairs]
        self._index = {node.name: i for i, node in enumerate(self._nodes)}
        self._views = [node.view() for node in self._nodes]
        self._tuple: tuple[NodeView, ...] | None = None
        self.capacity = spec.total_gpus
        self.free_gpus = self.capacity
        largest = max(g.gpus for g in spec.groups)
        self.free_hist: dict[str, list[int]] = {}  # type -> [nodes with f free GPUs for f]
        self.idle_nodes: dict[str, int] = {}  # type -> nodes with every GPU free
        self.idle_gpus: dict[str, int] = {}  # type -> GPUs on those nodes
        for node in self._nodes:
            self.free_hist.setdefault(node.gpu_type, [0] * (largest + 1))
            self.idle_nodes.setdefault(node.gpu_type, 0)
            self.idle_gpus.setdefault(node.gpu_type, 0)
            self._account(node, +1)

    def views(self) -> tuple[NodeView, ...]:
        if self._tuple is None:
            self._tuple = tuple(self._views)
        return self._tuple

    def could_fit(self, request: ResourceRequest) -> bool:
        """Whether enough nodes have enough free GPUs of the type for ``request`` now.

        A necessary condition for any placement (GPU memory is not checked, nodes need
        not be idle): when no pending request passes it, a cycle cannot place anything.
        """
        wanted = None if request.gpu_type is None else request.gpu_type.casefold()
        nodes = 0
        for gpu_type, hist in self.free_hist.items():
            if wanted is None or gpu_type.casefold() == wanted:
                nodes += sum(hist[request.gpus :])
                if nodes >= request.nodes:
                    return True
        return False

    def allocate(self, job_id: int, gpus: Iterable[GpuRef]) -> None:
        """Give these GPUs to ``job_id``; ValueError (and no change) if one is not free."""
        refs = list(gpus)
        if len(set(refs)) != len(refs):
            raise ValueError(f"job {job_id}: a GPU is named twice in {refs}")
        for ref in refs:
            if self._holder(ref) is not None:
                raise ValueError(f"job {job_id}: GPU {ref.node}:{ref.index} is not free")
        self._set(refs, job_id)

    def release(self, gpus: Iterable[GpuRef]) -> None:
        """Free these GPUs; ValueError (and no change) if one is free already."""
        refs = list(gpus)
        if any(self._holder(ref) is None for ref in refs):
            raise ValueError(f"releasing a free GPU among {refs}")
        self._set(refs, None)

    def _holder(self, ref: GpuRef) -> int | None:
        position = self._index.get(ref.node)
        if position is None:
            raise ValueError(f"no node {ref.node!r} in the simulated cluster")
        holders = self._nodes[position].holders
        if not 0 <= ref.index < len(holders):
            raise ValueError(f"node {ref.node} has no GPU {ref.index}")
        return holders[ref.index]

    def _set(self, refs: list[GpuRef], holder: int | None) -> None:
        touched: dict[int, _Node] = {}
        for ref in refs:
            position = self._index[ref.node]
            node = touched.setdefault(position, self._nodes[position])
            self._account(node, -1)
            node.hold(ref.index, holder)
            node.free += 1 if holder is None else -1
            self.free_gpus += 1 if holder is None else -1
            self._account(node, +1)
        for position, node in touched.items():
            self._views[position] = node.view()
        if touched:
            self._tuple = None

    def _account(self, node: _Node, sign: int) -> None:
        self.free_hist[node.gpu_type][node.free] += sign
        if node.free == node.size:
            self.idle_nodes[node.gpu_type] += sign
            self.idle_gpus[node.gpu_type] += sign * node.size
