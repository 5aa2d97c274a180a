"""Which Slack surfaces run in each mode, and what the start log says."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.service import Service
from bot.settings import Settings
from bot.slack_app import SlackApp
from tests.fakes.slack_api import FakeSlack
from tests.slack_service import API_KEY, SIGNING_SECRET, running_service


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


async def events_status(service: Service) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(service.url + "/slack/events", data=b"{}") as response:
            return response.status


def slack_apps(service: Service) -> list[SlackApp]:
    return [c for c in service.components if isinstance(c, SlackApp)]


async def test_both_set_uses_socket_mode_and_says_so(
    slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with running_service(
            slack, tmp_path / "data", slack_signing_secret=SIGNING_SECRET
        ) as service:
            status = await events_status(service)

    assert service.settings.mode == "socket"
    assert "are both set: using Socket Mode" in caplog.text
    assert status == 404
    assert slack.socket_mode.connection_count == 1


async def test_http_mode_opens_no_socket(slack: FakeSlack, tmp_path: Path) -> None:
    async with running_service(slack, tmp_path / "data", mode="http") as service:
        status = await events_status(service)

    assert status == 401
    assert slack.calls_to("apps.connections.open") == []


async def test_publish_only_mode_says_commands_are_off(
    slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with running_service(
            slack, tmp_path / "data", mode="http", slack_signing_secret=None
        ) as service:
            status = await events_status(service)

    assert service.settings.mode == "publish-only"
    assert "the slash command and App Home are off" in caplog.text
    assert status == 404
    assert slack_apps(service) == []


async def test_mode_logged_with_team_and_user(
    slack: FakeSlack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with running_service(slack, tmp_path / "data", mode="http"):
            pass

    assert caplog.text.count("mode http: connected to Slack team EPMPulse Test") == 1


async def test_local_mode_has_no_slack_app(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        port=0,
        api_key=API_KEY,
        apps_config=None,
    )
    service = Service(settings)
    await service.start()
    try:
        status = await events_status(service)
    finally:
        await service.stop()

    assert settings.mode == "local"
    assert status == 404
    assert slack_apps(service) == []
