"""SIGTERM behaves like Ctrl-C in every command: MLflow marks a training run failed, partial outputs are
removed, and the champion and earlier outputs stay untouched."""

from __future__ import annotations

import signal


class Terminated(BaseException):
    """SIGTERM, raised as its own type. A KeyboardInterrupt that lands while a C extension runs code through
    CPython 3.11's PyRun_* makes the interpreter end by SIGINT even after the command handled it (exit -2, not 130)."""


STOPPED = (KeyboardInterrupt, Terminated)


def stop_on_sigterm() -> None:
    def stop(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, stop)


def default_sigterm() -> None:
    """The work is over: a SIGTERM while the interpreter shuts down simply ends it, no traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
