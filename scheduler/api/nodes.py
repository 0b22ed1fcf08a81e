"""Node endpoints: list, show, drain, undrain."""

from __future__ import annotations

from fastapi import APIRouter

from scheduler.api.deps import People, RuntimeDep, Staff
from scheduler.domain.spec import Text
from scheduler.domain.views import DrainRequest, ErrorResponse, NodeInfo, NodeList
from scheduler.services import nodes

router = APIRouter(
    prefix="/api/v1/nodes",
    tags=["nodes"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)


@router.get("", response_model=NodeList)
def list_nodes(rt: RuntimeDep, _: People) -> NodeList:
    return nodes.list_nodes(rt)


@router.get("/{name}", response_model=NodeInfo, responses={404: {"model": ErrorResponse}})
def show(name: Text, rt: RuntimeDep, _: People) -> NodeInfo:
    return nodes.get_node(rt, name)


@router.post("/{name}/drain", response_model=NodeInfo, responses={404: {"model": ErrorResponse}})
def drain(name: Text, rt: RuntimeDep, _: Staff, body: DrainRequest | None = None) -> NodeInfo:
    return nodes.set_drained(rt, name, True, (body or DrainRequest()).reason)


@router.post("/{name}/undrain", response_model=NodeInfo, responses={404: {"model": ErrorResponse}})
def undrain(name: Text, rt: RuntimeDep, _: Staff) -> NodeInfo:
    return nodes.set_drained(rt, name, False)
