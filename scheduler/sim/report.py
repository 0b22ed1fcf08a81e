"""How a replay is shown: a side-by-side text table for the terminal, and JSON for scripts.

The table has one column per result, so ``--compare`` reads across; ratios are to the
lower bounds (``summary``). Example (abridged)::

    metric                      fair_share        fifo
    avg JCT (s)                      8,012      13,467
      / lower bound 7,569            1.06x       1.78x
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from scheduler.sim.run import SimResult
from scheduler.sim.summary import Summary

Row = tuple[str, Callable[[SimResult], str]]


def _s(value: float) -> str:
    return f"{value:,.0f}"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _rows(first: Summary) -> list[Row]:
    return [
        ("jobs finished", lambda r: f"{r.summary.jobs:,}"),
        ("  unfinished / refused", lambda r: f"{r.summary.unfinished} / {r.summary.rejected}"),
        ("avg JCT (s)", lambda r: _s(r.summary.jct_s.mean)),
        (f"  / lower bound {_s(first.jct_lower_bound_s)}", lambda r: _x(r.summary.jct_ratio)),
        ("median JCT (s)", lambda r: _s(r.summary.jct_s.median)),
        ("p99 JCT (s)", lambda r: _s(r.summary.jct_s.p99)),
        ("avg queueing (s)", lambda r: _s(r.summary.queueing_s.mean)),
        ("median queueing (s)", lambda r: _s(r.summary.queueing_s.median)),
        ("p99 queueing (s)", lambda r: _s(r.summary.queueing_s.p99)),
        ("avg slowdown", lambda r: f"{r.summary.slowdown.mean:.2f}"),
        ("median / p99 slowdown", lambda r: _slowdowns(r.summary)),
        ("makespan (s)", lambda r: _s(r.summary.makespan_s)),
        (f"  / lower bound {_s(first.makespan_lower_bound_s)}", lambda r: _mk(r.summary)),
        ("GPU allocation", lambda r: _pct(r.summary.gpu_allocation)),
        ("idle while demand (GPU-time)", lambda r: _pct(r.summary.idle_while_demand)),
        ("  (of time with pending jobs)", lambda r: _pct(r.summary.idle_while_waiting)),
        ("guarantee violations", lambda r: _pct(r.summary.guarantee_violation)),
        ("preemptions / jobs preempted", lambda r: _preemptions(r.summary)),
        ("GPU-s lost to preemption", lambda r: _lost(r.summary)),
        ("cycles run / skipped", lambda r: f"{r.stats.cycles:,} / {r.stats.skipped_cycles:,}"),
        ("  wake-ups (the clock alone)", lambda r: f"{r.stats.wake_ups:,}"),
        ("sim's own CPU per event (us)", lambda r: f"{r.stats.own_us_per_event:,.0f}"),
        ("decide CPU per cycle (us)", lambda r: f"{r.stats.decide_us_per_cycle:,.0f}"),
        ("CPU per event, all (us)", lambda r: f"{r.stats.us_per_event:,.0f}"),
        ("wall / CPU time (s)", lambda r: f"{r.stats.wall_s:.1f} / {r.stats.cpu_s:.1f}"),
    ]


def _slowdowns(s: Summary) -> str:
    return f"{s.slowdown.median:.2f} / {s.slowdown.p99:.1f}"


def _mk(s: Summary) -> str:
    return _x(s.makespan_ratio)


def _preemptions(s: Summary) -> str:
    return f"{s.preemptions:,} / {s.preempted_jobs:,}"


def _lost(s: Summary) -> str:
    return f"{_s(s.lost_gpu_s)} ({_pct(s.lost_fraction)})"


def format_table(results: Sequence[SimResult]) -> str:
    """The figures of each result side by side, one column per result."""
    if not results:
        return "no results"
    rows = _rows(results[0].summary)
    header = ["metric", *(r.label for r in results)]
    body = [[name, *(cell(r) for r in results)] for name, cell in rows]
    return _align([header, *body])


def format_queues(result: SimResult) -> str:
    """Per queue: its share of the GPU-time; while it had demand, GPUs held vs fair share."""
    header = ["queue", "share", "held (busy)", "fair share (busy)", "below fair", "violation (s)"]
    body = [
        [
            name,
            _pct(q["share"]),
            f"{q['held_gpus_when_busy']:.1f}",
            f"{q['fair_share_gpus_when_busy']:.1f}",
            f"{q['below_fair_share_gpus_when_busy']:.1f}",
            _s(q["guarantee_violation_s"]),
        ]
        for name, q in result.summary.queues.items()
    ]
    return _align([header, *body])


def _align(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def to_json(results: Sequence[SimResult], setup: dict[str, Any]) -> dict[str, Any]:
    """The setup and every result's summary and engine figures, as plain JSON values."""
    return {"setup": setup, "results": [_result_json(r) for r in results]}


def _result_json(result: SimResult) -> dict[str, Any]:
    summary = asdict(result.summary)
    summary["jct_ratio"] = result.summary.jct_ratio
    summary["makespan_ratio"] = result.summary.makespan_ratio
    stats = asdict(result.stats)
    stats["own_us_per_event"] = result.stats.own_us_per_event
    stats["us_per_event"] = result.stats.us_per_event
    stats["decide_us_per_cycle"] = result.stats.decide_us_per_cycle
    return {
        "label": result.label,
        "policy": result.policy_name,
        "summary": summary,
        "engine": stats,
        "notes": result.notes,
    }
