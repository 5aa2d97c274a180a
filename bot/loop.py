"""The event loop that ``serve`` runs on.

uvloop runs asyncio's loop, transports and timers in C (libuv). Under a webhook
load the loop's own work is a large part of each request, and uvloop cut the
CPU time per request by about a tenth (docs/benchmarks.md). Where uvloop is not
installed, such as on Windows, or ``EPMPULSE_EVENT_LOOP=asyncio`` is set,
asyncio's own loop runs the same code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def loop_factory(
    name: str = "uvloop",
) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Return uvloop's loop constructor, or None for asyncio's default loop."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``, for the start-up line."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
