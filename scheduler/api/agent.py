"""The agent sync endpoint (a long poll; see ``scheduler.services.agents``)."""

from __future__ import annotations

from fastapi import APIRouter

from scheduler.api.deps import RuntimeDep, Syncer
from scheduler.domain.sync import SyncReply, SyncRequest
from scheduler.domain.views import ErrorResponse
from scheduler.services import access, agents

router = APIRouter(
    prefix="/api/v1/agent",
    tags=["agents"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)


@router.post("/sync", response_model=SyncReply, responses={422: {"model": ErrorResponse}})
async def sync(req: SyncRequest, rt: RuntimeDep, who: Syncer) -> SyncReply:
    access.check_sync(who, req.node.name)
    return await agents.sync(rt, req)
