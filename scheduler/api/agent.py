"""The agent sync endpoint (a long poll; see ``scheduler.services.agents``)."""

from __future__ import annotations

from fastapi import APIRouter, Response

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
async def sync(req: SyncRequest, rt: RuntimeDep, who: Syncer) -> Response:
    """The reply is built as a ``SyncReply`` already: it is sent as it is, not checked
    against the model a second time (every node syncs every few seconds)."""
    access.check_sync(who, req.node.name)
    reply = await agents.sync(rt, req)
    return Response(reply.model_dump_json(), media_type="application/json")
