"""The event loop that ``serve`` runs on.

uvloop runs asyncio's loop, transports and timers in C (libuv). Under the
webhook load of the benchmarks, the server used about 6 % less CPU per request
on uvloop, with a wide spread between rounds (docs/benchmarks.md). Where uvloop
is not installed, such as on Windows, or ``EPMPULSE_EVENT_LOOP=asyncio`` is
set, asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def loop_factory(
    name: str = "uvloop", requested: bool = False
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop constructor, or None for asyncio's default loop.

    With ``requested`` (the setting was given), a missing uvloop is logged.
    """
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if requested:
            log.warning(
                "EPMPULSE_EVENT_LOOP is uvloop, but uvloop is not installed, so "
                "asyncio's loop runs: install it with 'pip install uvloop'"
            )
        return None
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``, for the start-up line."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
