"""The client's one error type and the words of every failure, apart from any HTTP stack.

Both clients, ``scheduler.client`` (httpx, typed views) and the light one that
``corral submit`` uses (``scheduler.cli.lightclient``, the standard library), turn a
refusal, a timeout or an unreachable server into the same ``CorralError`` with the
same message through the functions here. The CLI catches it without importing either
(``corral --help`` and the parsing of a job stay light).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

UNAUTHORIZED_HINT = "pass --token or set CORRAL_TOKEN"


class CorralError(Exception):
    """A request that failed: refused by the server (``status``/``code`` set) or unsent."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        if field and not message.startswith(f"{field}:"):
            message = f"{field}: {message}"
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


def error_from_reply(status: int, content: bytes, reason: str) -> CorralError:
    """A 4xx/5xx reply as a ``CorralError``: the server's ``{"error": {...}}`` body names
    the code, the field and the reason; any other body is quoted, cut to one short line."""
    body = _error_body(content)
    if body is None:
        text = " ".join(content.decode("utf-8", errors="replace").split())[:200]
        if status == 401:
            text = f"unauthorized: {UNAUTHORIZED_HINT}"
        return CorralError(f"HTTP {status}: {text or reason}", status=status)
    code, message, field = body
    if code == "unauthorized":
        message = f"{message} ({UNAUTHORIZED_HINT})"
    return CorralError(message, status=status, code=code, field=field)


def _error_body(content: bytes) -> tuple[str, str, str | None] | None:
    """``(code, message, field)`` of an error body shaped as ``docs/api.md`` says, else None."""
    try:
        loaded: Any = json.loads(content)
    except ValueError:
        return None
    error = loaded.get("error") if isinstance(loaded, dict) else None
    if not isinstance(error, dict):
        return None
    code, message, field = error.get("code"), error.get("message"), error.get("field")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    return code, message, field if isinstance(field, str) else None


def unreachable(server: str, exc: BaseException | None = None) -> CorralError:
    """The server could not be reached: refused, unresolvable, or its certificate failed."""
    bad_cert = certificate_error(exc)
    if bad_cert is not None:
        return CorralError(
            f"the certificate of {server} could not be verified ({bad_cert}); "
            "pass the CA that signed it with --ca FILE or CORRAL_CA"
        )
    return CorralError(f"cannot reach the corral server at {server} (is it running?)")


def timed_out(server: str, timeout_s: float) -> CorralError:
    """Connected, but no answer came in time."""
    return CorralError(f"the corral server at {server} did not answer within {timeout_s:g}s")


def unexpected_reply(server: str, method: str, path: str, status: int) -> CorralError:
    """A 2xx whose body is not the view asked for: another program, or another version."""
    return CorralError(
        f"unexpected reply from {server} to {method} {path} "
        f"(is it a corral server of this version?)",
        status=status,
    )


def certificate_error(exc: BaseException | None) -> str | None:
    """The reason a TLS certificate check failed, when that is why ``exc`` happened."""
    if exc is None:
        return None
    import ssl

    seen = 0
    while exc is not None and seen < 10:  # an HTTP stack wraps the ssl error it got
        if isinstance(exc, ssl.SSLCertVerificationError):
            return str(exc.verify_message or exc.reason or "verify failed")
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def tls_context(ca: str | None) -> ssl.SSLContext:
    """How to check an https server: against ``ca`` (a PEM file) or the system's CAs."""
    import ssl

    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise CorralError(f"cannot read the CA file {ca}: {exc}") from exc
