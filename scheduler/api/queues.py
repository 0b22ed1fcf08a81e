"""Queue endpoints."""

from __future__ import annotations

from fastapi import APIRouter

from scheduler.api.deps import People, RuntimeDep, Staff
from scheduler.domain.spec import QueuePatch, QueueSpec, Text
from scheduler.domain.views import ErrorResponse, QueueInfo, QueueList
from scheduler.services import queues

router = APIRouter(
    prefix="/api/v1/queues",
    tags=["queues"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)


@router.get("", response_model=QueueList)
def list_queues(rt: RuntimeDep, _: People) -> QueueList:
    return queues.list_queues(rt)


@router.post(
    "", status_code=201, response_model=QueueInfo, responses={409: {"model": ErrorResponse}}
)
def create(spec: QueueSpec, rt: RuntimeDep, _: Staff) -> QueueInfo:
    return queues.create_queue(rt, spec)


@router.get("/{name}", response_model=QueueInfo, responses={404: {"model": ErrorResponse}})
def show(name: Text, rt: RuntimeDep, _: People) -> QueueInfo:
    return queues.get_queue(rt, name)


@router.patch("/{name}", response_model=QueueInfo, responses={404: {"model": ErrorResponse}})
def update(name: Text, patch: QueuePatch, rt: RuntimeDep, _: Staff) -> QueueInfo:
    return queues.update_queue(rt, name, patch)
