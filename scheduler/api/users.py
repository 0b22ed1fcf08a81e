"""User endpoints (admins only): create, list, show, update (role, queues), delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from scheduler.api.deps import Admin, RuntimeDep
from scheduler.domain.auth import Name, UserList, UserPatch, UserSpec, UserView
from scheduler.domain.errors import Conflict
from scheduler.domain.views import ErrorResponse
from scheduler.store import users
from scheduler.store.models import utcnow

router = APIRouter(
    prefix="/api/v1/users",
    tags=["users"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}


@router.get("", response_model=UserList)
def list_users(rt: RuntimeDep, _: Admin) -> UserList:
    with rt.db.read() as session:
        return UserList(users=users.list_users(session))


@router.post(
    "",
    status_code=201,
    response_model=UserView,
    responses={**NOT_FOUND, 409: {"model": ErrorResponse}},
)
def create(spec: UserSpec, rt: RuntimeDep, _: Admin) -> UserView:
    """A user with its role and the queues it may submit to (each must exist)."""
    with rt.db.write() as session:
        row = users.create_user(session, spec.name, spec.role.value, spec.queues, utcnow())
        return users.user_view(session, row)


@router.get("/{name}", response_model=UserView, responses=NOT_FOUND)
def show(name: Name, rt: RuntimeDep, _: Admin) -> UserView:
    with rt.db.read() as session:
        return users.user_view(session, users.get_user(session, name))


@router.patch("/{name}", response_model=UserView, responses=NOT_FOUND)
def update(name: Name, patch: UserPatch, rt: RuntimeDep, _: Admin) -> UserView:
    """A new role (its tokens follow at once) or a new set of queues (replaces the old)."""
    role = patch.role.value if patch.role is not None else None
    with rt.db.write() as session:
        row = users.update_user(session, name, role, patch.queues)
        return users.user_view(session, row)


@router.delete(
    "/{name}", response_model=UserView, responses={**NOT_FOUND, 409: {"model": ErrorResponse}}
)
def delete(name: Name, rt: RuntimeDep, who: Admin) -> UserView:
    """The user, its memberships and its tokens go; its jobs stay. Returns what it was."""
    if name == who.name:
        raise Conflict("an admin cannot delete itself", field="name", code="self")
    with rt.db.write() as session:
        view = users.user_view(session, users.get_user(session, name))
        users.delete_user(session, name)
        return view
