"""Errors that use cases raise and the API turns into 4xx replies (never 5xx)."""

from __future__ import annotations


class CorralError(Exception):
    """A request corral refuses; nothing was changed."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class NotFound(CorralError):
    status = 404
    code = "not_found"


class Invalid(CorralError):
    status = 422
    code = "invalid_request"


class Conflict(CorralError):
    status = 409
    code = "conflict"


class Unauthorized(CorralError):
    status = 401
    code = "unauthorized"


class Unavailable(CorralError):
    status = 503
    code = "unavailable"
