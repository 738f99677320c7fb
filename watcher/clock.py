"""Time and crash points: the two things every I/O module needs and no stage should own.

`utcnow()` is the one wall clock (stages take `now` as an argument instead); `crash_point()`
lets the crash tests end the process at a named stage, as kill -9 would.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def crash_point(stage: str) -> None:
    """For crash tests only: WATCHER_CRASH_AT=stage ends the process here, as kill -9 would."""
    if os.environ.get("WATCHER_CRASH_AT") == stage:
        os._exit(137)
