"""Test helper: run a call with a time limit, so a hang fails the test instead of the suite."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

HANG_LIMIT = 60.0  # seconds: a call still running after this is a hang, and fails the test
ERROR_WITHIN = 30.0  # seconds: an unreachable database must be reported within this


def bounded(call: Callable[[], object], limit: float = HANG_LIMIT) -> tuple[object, float]:
    """call() in a thread: (its result or the exception it raised, seconds); fails on a hang."""
    box: dict[str, object] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            box["outcome"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["outcome"] = exc
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"still running after {limit:.0f}s: the call hangs instead of failing")
    return box["outcome"], box["seconds"]
