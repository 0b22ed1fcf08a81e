"""The client's one error type, apart from the client: the CLI catches it without
importing the HTTP stack (``corral --help`` and the parsing of a job stay light)."""

from __future__ import annotations


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
