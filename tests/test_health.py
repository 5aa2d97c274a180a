"""/health probes the data dir, so a full or read-only disk shows before a write."""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

import bot.service
import store.store
from bot.service import Service


async def test_health_fails_when_data_dir_cannot_be_written(
    start_service: Callable[..., Awaitable[Service]],
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot.service, "HEALTH_PROBE_SECONDS", 0.0)
    service = await start_service()

    async with http.get(service.url + "/health") as response:
        healthy = response.status
    real_write = store.store.write_atomic

    def disk_full(path: Path, data: bytes, mode: int = 0o640) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.store, "write_atomic", disk_full)
    async with http.get(service.url + "/health") as response:
        failing = response.status
        body = await response.json()
    monkeypatch.setattr(store.store, "write_atomic", real_write)
    async with http.get(service.url + "/health") as response:
        recovered = response.status

    assert healthy == 200
    assert failing == 503
    assert body["status"] == "unhealthy"
    assert "No space left" in body["checks"]["store"]
    assert recovered == 200
