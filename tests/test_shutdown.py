"""Background loops stop when cancelled, even as their wake-up event is set."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from store.waiting import wait_event


async def _loop_forever(event: asyncio.Event) -> None:
    # The shape of every background loop here: clear, wait with a timeout, repeat.
    while True:
        event.clear()
        await wait_event(event, 10)


async def test_cancel_as_event_is_set_stops_the_loop() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(_loop_forever(event))
    await asyncio.sleep(0.01)

    event.set()
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(2):
            await task


async def test_wait_event_reports_set_and_timeout() -> None:
    event = asyncio.Event()

    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 0.01) is True


async def test_stop_right_after_updates_does_not_hang(
    start_service: Callable[..., Awaitable[object]],
) -> None:
    from datetime import UTC, datetime

    from bot.service import Service
    from store.models import Status, Update

    for round_number in range(3):
        service = await start_service()
        assert isinstance(service, Service)
        now = datetime.now(UTC)
        await service.store.apply(
            [Update("Planning", f"Row{round_number}", Status.ERROR, now, now)]
        )

        async with asyncio.timeout(15):
            await service.stop()

        assert service.runner is None
