"""Who may call the API: roles, users, tokens and audit events as the API speaks them.

Four roles (docs/security.md has the full table):

- ``admin``: everything, including users, tokens and the audit log;
- ``operator``: nodes, queues and any job; not users, tokens or the audit log;
- ``user``: submits to the queues it is a member of; sees and cancels its own jobs;
  reads the cluster's aggregate state (nodes, queues, usage, metrics);
- ``agent``: syncs as the one node its token is bound to, and nothing else.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scheduler.domain.spec import NAME_RE, parse_duration_s

MAX_TOKEN_LIFETIME_S = 10 * 365 * 86400
Name = Annotated[str, Field(pattern=NAME_RE, max_length=128)]


class Role(StrEnum):
    ADMIN = "admin"  # everything
    OPERATOR = "operator"  # nodes, queues, any job
    USER = "user"  # its own jobs, in its queues
    AGENT = "agent"  # one node's sync


PEOPLE = (Role.ADMIN, Role.OPERATOR, Role.USER)  # the roles a user may have
STAFF = (Role.ADMIN, Role.OPERATOR)  # may act on anyone's jobs


def _a_person(role: Role | None) -> Role | None:
    if role is not None and role not in PEOPLE:
        raise ValueError("a user is admin, operator or user (an agent gets a node token)")
    return role


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserSpec(_Input):
    name: Name
    role: Role = Role.USER
    queues: list[Name] = Field(default_factory=list, max_length=1000)

    _person = field_validator("role")(_a_person)


class UserPatch(_Input):
    role: Role | None = None
    queues: list[Name] | None = Field(default=None, max_length=1000)

    _person = field_validator("role")(_a_person)


class TokenSpec(_Input):
    """A token for a user (``user``) or for one node's agent (``node``), not both."""

    user: Name | None = None
    node: Name | None = None
    name: Name | None = Field(default=None, description="default: the user or node, a suffix")
    expires_in_s: int | None = Field(
        default=None, ge=1, le=MAX_TOKEN_LIFETIME_S, description="e.g. 30d; default: never"
    )

    _duration = field_validator("expires_in_s", mode="before")(parse_duration_s)

    @model_validator(mode="after")
    def _one_owner(self) -> TokenSpec:
        if (self.user is None) == (self.node is None):
            raise ValueError("give exactly one of user (a person's token) or node (an agent's)")
        return self


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UserView(_View):
    id: int
    name: str
    role: str
    queues: list[str] = Field(default_factory=list)
    created_at: datetime


class UserList(_View):
    users: list[UserView]


class TokenView(_View):
    """A token as listed: never its secret."""

    id: int
    name: str
    role: str
    user: str | None = None
    node: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class TokenCreated(TokenView):
    token: str = Field(description="the secret: shown this once, stored only as a digest")


class TokenList(_View):
    tokens: list[TokenView]


class AuditEventView(_View):
    id: int
    at: datetime
    who: str | None = Field(default=None, description="the caller's name; null: no valid token")
    role: str | None = None
    method: str
    path: str
    target: str | None = None
    status: int = Field(description="the HTTP status answered")


class AuditList(_View):
    events: list[AuditEventView]
