"""Where a local corral keeps its files, shared by the server and the CLI.

``DATA_DIR`` holds the SQLite database, ``admin.token`` (mode 600), ``server.json``
(the URL of the server last started on it) and ``checkpoints/``. Its default is
``$CORRAL_DATA_DIR``, else ``$XDG_DATA_HOME/corral``, else ``~/.local/share/corral``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ADMIN_TOKEN_FILE = "admin.token"
SERVER_INFO_FILE = "server.json"


def default_data_dir() -> Path:
    explicit = os.environ.get("CORRAL_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "corral"


def admin_token_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_TOKEN_FILE


def server_info_path(data_dir: Path) -> Path:
    return data_dir / SERVER_INFO_FILE


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 600, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_server_info(data_dir: Path) -> dict[str, object] | None:
    """The ``server.json`` a local server wrote: ``{"url": ..., "pid": ...}``, or None."""
    try:
        loaded = json.loads(server_info_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def read_admin_token(data_dir: Path) -> str | None:
    try:
        token = admin_token_path(data_dir).read_text().strip()
    except OSError:
        return None
    return token or None
