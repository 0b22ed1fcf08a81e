"""Token endpoints (admins only): create (the secret is in this reply only), list, revoke.

A user's token carries the user's role; a node's token (``node``) has role ``agent``
and may only sync as that node. Revocation takes effect on the next request.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query

from scheduler.api.deps import Admin, RuntimeDep
from scheduler.domain.auth import Name, Role, TokenCreated, TokenList, TokenSpec, TokenView
from scheduler.domain.views import ErrorResponse
from scheduler.store import tokens, users
from scheduler.store.models import utcnow

router = APIRouter(
    prefix="/api/v1/tokens",
    tags=["tokens"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)
MAX_ID = 2**31 - 1


@router.get("", response_model=TokenList)
def list_tokens(
    rt: RuntimeDep, _: Admin, user: Annotated[Name | None, Query()] = None
) -> TokenList:
    """Every token (or one user's), revoked and expired ones too; never a secret."""
    with rt.db.read() as session:
        return TokenList(tokens=tokens.list_tokens(session, user))


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
def create(spec: TokenSpec, rt: RuntimeDep, _: Admin) -> TokenCreated:
    now = utcnow()
    expires_at = now + timedelta(seconds=spec.expires_in_s) if spec.expires_in_s else None
    with rt.db.write() as session:
        if spec.user is not None:
            user = users.get_user(session, spec.user)
            owner, role, user_id, node = user.name, user.role, user.id, None
        else:
            owner, role, user_id, node = str(spec.node), Role.AGENT.value, None, spec.node
        name = spec.name or f"{owner}-{now.strftime('%Y%m%d%H%M%S%f')}"
        secret = tokens.create_token(
            session, name, role, now, user_id=user_id, node_name=node, expires_at=expires_at
        )
        row = tokens.verify(session, secret, now)
        assert row is not None  # just made
        view = tokens.token_view(row, spec.user)
    return TokenCreated(**view.model_dump(), token=secret)


@router.post(
    "/{token_id}/revoke", response_model=TokenView, responses={404: {"model": ErrorResponse}}
)
def revoke(token_id: Annotated[int, Path(ge=1, le=MAX_ID)], rt: RuntimeDep, _: Admin) -> TokenView:
    """The token stops working at once; revoking it again changes nothing."""
    with rt.db.write() as session:
        row = tokens.revoke(session, token_id, utcnow())
        return tokens.token_view(row, tokens.owner_name(session, row) if row.user_id else None)
