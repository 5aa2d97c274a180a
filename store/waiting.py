"""Waiting for an event with a timeout, without losing a cancellation."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; return whether it
    was set.

    On Python 3.11, asyncio.wait_for can swallow a cancellation that arrives just
    as the event is set, which keeps a background task alive after its stop().
    asyncio.timeout does not have that race.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
