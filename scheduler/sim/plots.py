"""PNG plots of replays and an HTML page that shows them with the table (matplotlib, lazily).

``write_plots(results, directory)`` writes, for any number of results (one per policy):
``queue_length.png`` (pending jobs over time), ``allocation.png`` (GPUs allocated over
time), ``jct_cdf.png`` (JCT CDF, log scale) and per result ``share_<label>.png`` (each
busy queue's GPUs held, solid, against its fair share, dashed), plus ``index.html``.
matplotlib is an optional dependency (``pip install 'corral[sim]'``); without it
``write_plots`` raises ``PlotsUnavailable``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scheduler.sim.report import format_table
from scheduler.sim.run import SimResult

DAY_S = 86_400.0
TOP_QUEUES = 6  # queues drawn in a share plot: those that held the most GPU-time


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable(
            "plots need matplotlib: pip install 'corral[sim]' (or matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(results: Sequence[SimResult], directory: Path) -> list[Path]:
    """Write the PNGs and ``index.html`` into ``directory``; returns their paths."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    written = [
        _over_time(plt, results, directory / "queue_length.png", "pending_jobs", "pending jobs"),
        _over_time(plt, results, directory / "allocation.png", "allocated_gpus", "GPUs allocated"),
        _jct_cdf(plt, results, directory / "jct_cdf.png"),
    ]
    written += [_shares(plt, r, directory / f"share_{_slug(r.label)}.png") for r in results]
    written.append(_index(results, written, directory / "index.html"))
    return written


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)


def _days(result: SimResult) -> list[float]:
    t = result.series.t
    start = t[0] if t else 0.0
    return [(x - start) / DAY_S for x in t]


def _over_time(plt: Any, results: Sequence[SimResult], path: Path, field: str, ylabel: str) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4))
    for result in results:
        ax.plot(_days(result), getattr(result.series, field), label=result.label, lw=0.8)
    if field == "allocated_gpus" and results:
        ax.axhline(results[0].summary.gpus, color="grey", ls=":", label="capacity")
    ax.set(xlabel="days since the first submission", ylabel=ylabel)
    ax.legend(loc="upper right", fontsize="small")
    return _save(plt, fig, path)


def _jct_cdf(plt: Any, results: Sequence[SimResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for result in results:
        jct = [max(x, 1.0) for x in result.jct_s]
        if jct:
            n = len(jct)
            ax.step(jct, [(i + 1) / n for i in range(n)], where="post", label=result.label)
    ax.set_xscale("log")
    ax.set(xlabel="job completion time (s)", ylabel="fraction of jobs", ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")
    return _save(plt, fig, path)


def _shares(plt: Any, result: SimResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4))
    days = _days(result)
    busiest = sorted(result.series.held, key=lambda q: -sum(result.series.held[q]))
    for index, name in enumerate(busiest[:TOP_QUEUES]):
        color = f"C{index}"
        ax.plot(days, result.series.held[name], color=color, lw=0.8, label=f"{name} held")
        ax.plot(days, result.series.fair[name], color=color, lw=0.8, ls="--")
    ax.set(
        xlabel="days since the first submission",
        ylabel="GPUs (solid: held, dashed: fair share)",
        title=f"per-queue share: {result.label}",
    )
    ax.legend(loc="upper right", fontsize="small", ncol=2)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _index(results: Sequence[SimResult], images: Sequence[Path], path: Path) -> Path:
    table = html.escape(format_table(results))
    figures = "\n".join(f'<p><img src="{html.escape(p.name)}" alt="{p.stem}"></p>' for p in images)
    path.write_text(
        "<!doctype html>\n<meta charset='utf-8'><title>corral simulate</title>\n"
        f"<h1>corral simulate</h1>\n<pre>{table}</pre>\n{figures}\n",
        encoding="utf-8",
    )
    return path
