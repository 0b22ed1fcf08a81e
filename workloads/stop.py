"""How a workload learns that corral wants it to stop: SIGTERM, or the stop file.

A plain attempt gets SIGTERM from the agent; the handler only sets a flag that the
training loop reads between steps (it then checkpoints and exits). In a per-job Ray
cluster the training runs in Ray's worker processes, which a signal to the driver
does not reach; the agent's Ray supervisor therefore creates the attempt's stop file
(``CORRAL_STOP_FILE``, on the shared checkpoint storage) before it signals the
driver, and every worker checks for it between steps. The driver's own handler
creates the file too, so a driver stopped some other way stops its workers alike.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType

STOP_FILE_ENV = "CORRAL_STOP_FILE"


class StopSignal:
    """``requested()`` once SIGTERM arrived here (after ``install``) or the file exists."""

    def __init__(self, stop_file: str | None = None) -> None:
        self.stop_file = stop_file
        self._flag = threading.Event()

    def install(self) -> None:
        """Handle SIGTERM (and SIGINT) in this process: set the flag, create the file.

        Call from the main thread, after ``ray.init`` (which installs its own handler).
        """
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.request()

    def request(self) -> None:
        self._flag.set()
        if self.stop_file:
            try:
                Path(self.stop_file).parent.mkdir(parents=True, exist_ok=True)
                Path(self.stop_file).touch()
            except OSError:
                pass  # the flag still stops this process's loop

    def requested(self) -> bool:
        return self._flag.is_set() or bool(self.stop_file and os.path.exists(self.stop_file))
