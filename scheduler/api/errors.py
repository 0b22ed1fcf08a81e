"""One error body for every refusal: ``{"error": {"code", "message", "field"}}``.

Bad input is a 4xx that names the field and the reason, never a 500; a database that
cannot be reached is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from scheduler.domain.errors import CorralError, TooManyRequests
from scheduler.services.bootstrap import authenticate

log = logging.getLogger("corral.api")


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(status_code=status, content=body, headers=headers)


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [_printable(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _printable(part: Any) -> str:
    """A key as sent, or quoted when it holds a line break or another unprintable."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _validation(errors: list[Any]) -> JSONResponse:
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":  # its loc ends with a character position
        return _malformed_json(first)
    field = _field(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if field:
        message = f"{field}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(422, "invalid_request", message, field)


def _malformed_json(error: dict[str, Any]) -> JSONResponse:
    loc = tuple(error.get("loc", ()))
    reason = str((error.get("ctx") or {}).get("error") or "malformed")
    where = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
    return error_response(422, "invalid_request", f"the body is not valid JSON: {reason}{where}")


def _undecodable_body() -> JSONResponse:
    """Bytes that are not UTF-8 text are bad input like malformed JSON: the same 422."""
    message = "the body is not valid JSON: it is not UTF-8 text"
    return error_response(422, "invalid_request", message)


async def _unauthenticated(request: Request) -> JSONResponse | None:
    """The 401 a request without a valid token gets, else None.

    FastAPI decodes a JSON body before it runs the dependencies (the token check), so
    without this a malformed body would be answered to anyone.
    """
    try:
        rt = request.app.state.runtime
        await asyncio.to_thread(authenticate, rt, request.headers.get("authorization"))
    except CorralError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.field)
    return None


def install(app: FastAPI) -> None:
    @app.exception_handler(CorralError)
    async def _corral(_: Request, exc: CorralError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("%s", exc.message)
        headers = None
        if isinstance(exc, TooManyRequests):  # whole seconds, rounded up (RFC 9110)
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return error_response(exc.status, exc.code, exc.message, exc.field, headers)

    @app.exception_handler(RequestValidationError)
    async def _request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await _unauthenticated(request) or _validation(list(exc.errors()))

    @app.exception_handler(ValidationError)
    async def _pydantic(_: Request, exc: ValidationError) -> JSONResponse:
        return _validation(list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's only 400: a body it could not decode
            return await _unauthenticated(request) or _undecodable_body()
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal", "internal error; see the server log")
