"""Attempt output, shipped by agents in chunks at byte offsets.

Appending is idempotent: a chunk at an offset the server already holds is skipped
(or trimmed to its new tail); a chunk past the end (a gap) is ignored, and the agent
resends from the acknowledged length (``AttemptPartRow.log_bytes``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.sync import MAX_LOG_CHUNK_BYTES
from scheduler.store.models import AttemptPartRow, LogChunkRow


def append_log(session: Session, part: AttemptPartRow, offset: int, data: bytes) -> None:
    held = part.log_bytes
    if not data or offset > held or offset + len(data) <= held:
        return
    tail = data[held - offset :]
    session.add(LogChunkRow(part_id=part.id, offset=held, data=tail))
    part.log_bytes = held + len(tail)


def read_log(session: Session, part: AttemptPartRow, offset: int, limit_bytes: int) -> bytes:
    """Up to ``limit_bytes`` of the part's output from byte ``offset``."""
    end = offset + limit_bytes
    stmt = (
        select(LogChunkRow)
        .where(
            LogChunkRow.part_id == part.id,
            LogChunkRow.offset < end,
            LogChunkRow.offset > offset - MAX_LOG_CHUNK_BYTES,  # chunks are never longer
        )
        .order_by(LogChunkRow.offset)
    )
    out = bytearray()
    for chunk in session.scalars(stmt):
        chunk_end = chunk.offset + len(chunk.data)
        if chunk_end <= offset:
            continue
        lo = max(offset, chunk.offset) - chunk.offset
        hi = min(end, chunk_end) - chunk.offset
        out += chunk.data[lo:hi]
    return bytes(out)
