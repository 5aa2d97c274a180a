"""/health and the log follow the Socket Mode connection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import bot.slack_app
from bot.service import Service
from tests.fakes.slack_api import FakeSlack
from tests.slack_service import get_health, running_service

Health = tuple[int, dict[str, Any]]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def service(
    slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Service]:
    # A minute of downtime and slack_sdk's 10 s reconnect interval, scaled down.
    monkeypatch.setattr(bot.slack_app, "SOCKET_UNHEALTHY_AFTER_SECONDS", 0.5)
    monkeypatch.setattr(bot.slack_app, "SOCKET_CHECK_SECONDS", 0.05)
    monkeypatch.setattr(bot.slack_app, "SOCKET_PING_SECONDS", 0.2)
    async with running_service(slack, tmp_path / "data") as running:
        yield running


async def wait_for_health(
    service: Service, predicate: Callable[[int, dict[str, Any]], bool]
) -> Health:
    deadline = time.monotonic() + 5
    while True:
        status, body = await get_health(service)
        if predicate(status, body):
            return status, body
        if time.monotonic() > deadline:
            raise AssertionError(f"/health never matched: {status} {body}")
        await asyncio.sleep(0.05)


def socket_state(body: dict[str, Any]) -> str:
    return str(body["checks"]["slack_socket"])


async def test_health_reports_socket_connected(service: Service) -> None:
    status, body = await wait_for_health(
        service, lambda _, body: socket_state(body) == "connected"
    )

    assert status == 200
    assert body["mode"] == "socket"


async def test_health_unhealthy_after_socket_down_too_long(
    slack: FakeSlack, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail("apps.connections.open", "internal_error", times=None)

    with caplog.at_level(logging.INFO):
        await slack.socket_mode.drop_connections()
        status, body = await wait_for_health(service, lambda status, _: status == 503)
        await slack.wait_for(lambda: "disconnected for more than" in caplog.text)

    assert socket_state(body).startswith("disconnected for")
    assert body["status"] == "unhealthy"
    assert "Socket Mode connection lost" in caplog.text
    assert "Socket Mode has been disconnected for more than" in caplog.text


async def test_health_recovers_after_reconnect(
    slack: FakeSlack, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    slack.fail("apps.connections.open", "internal_error", times=None)
    await slack.socket_mode.drop_connections()
    await wait_for_health(service, lambda status, _: status == 503)

    with caplog.at_level(logging.INFO):
        slack.clear_faults()
        status, _ = await wait_for_health(
            service, lambda _, body: socket_state(body) == "connected"
        )

    assert status == 200
    assert "Socket Mode reconnected (connection 2" in caplog.text


async def test_disconnect_request_reconnects_and_is_logged(
    slack: FakeSlack, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        await slack.socket_mode.disconnect("refresh_requested")
        await slack.socket_mode.wait_connected(count=2)
        await slack.wait_for(lambda: "reconnected (connection 2" in caplog.text)

    status, body = await get_health(service)
    assert status == 200
    assert socket_state(body) == "connected"
