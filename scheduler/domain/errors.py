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


class Forbidden(CorralError):
    """A valid token whose role may not do this (docs/security.md)."""

    status = 403
    code = "forbidden"


class TooManyRequests(CorralError):
    """Over a rate limit; ``retry_after_s`` says when a retry may pass."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class Unavailable(CorralError):
    status = 503
    code = "unavailable"
