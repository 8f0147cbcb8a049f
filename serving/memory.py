"""Give freed heap back to the operating system after large requests.

Parsing a large book allocates many times its body's size, which Python frees when the answer is sent, but
glibc keeps the freed pages in its arenas, so the server's resident memory ratchets up under mixed
load although nothing leaks. `malloc_trim(0)` returns them, outside the GIL (the load test in
docs/benchmarks.md measures the effect). Trimming runs on a background thread a moment after large
requests, never on the path of a request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

logger = logging.getLogger("bentoml.abm_tiering")


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


class MemoryTrimmer:
    """Calls `malloc_trim` at most every `interval_seconds`, and only after a large request."""

    def __init__(self, interval_seconds: float = 2.0):
        self.interval_seconds = interval_seconds
        self._trim = _malloc_trim()
        self._pending = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.trims = 0

    def start(self) -> None:
        """Start trimming (again, after `stop`); a no-op where there is no malloc_trim or it already runs."""
        if self._trim is None or (self._thread is not None and self._thread.is_alive()):
            return
        self._stopped.clear()
        self._pending.clear()
        self._thread = threading.Thread(target=self._run, name="memory-trimmer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._pending.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=self.interval_seconds + 5)

    def large_request_done(self) -> None:
        self._pending.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._pending.wait()
            if self._stopped.wait(self.interval_seconds):  # let the answer be sent and its objects freed
                return
            self._pending.clear()
            self._trim(0)
            self.trims += 1


# One per worker process: started by the service, told about large bodies by the validation hook too.
trimmer = MemoryTrimmer()
