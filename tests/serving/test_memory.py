"""Freed heap goes back to the OS after large requests, off the request path."""

from __future__ import annotations

import time

import pytest

from serving.memory import MemoryTrimmer


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_trims_once_after_large_requests_and_not_before():
    trimmer = MemoryTrimmer(interval_seconds=0.05)
    if trimmer._trim is None:
        pytest.skip("this C library has no malloc_trim (not glibc)")
    trimmer.start()
    try:
        time.sleep(0.2)
        assert trimmer.trims == 0  # nothing large happened: nothing to give back
        for _ in range(5):  # a burst is one trim, not five
            trimmer.large_request_done()
        assert wait_for(lambda: trimmer.trims == 1)
        time.sleep(0.2)
        assert trimmer.trims == 1
        trimmer.large_request_done()
        assert wait_for(lambda: trimmer.trims == 2)
    finally:
        trimmer.stop()
    trimmer.start()  # a service built again in the same process starts it again
    trimmer.stop()
