"""Run the EPMPulse service in the test's event loop against the fake Slack."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from bot.service import Service
from bot.settings import Settings
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID

API_KEY = "test-key-0123456789abcdef"
SIGNING_SECRET = "test-signing-secret-0123"


def slack_settings(
    slack: FakeSlack, data_dir: Path, mode: str = "socket", **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "host": "127.0.0.1",
        "port": 0,
        "api_key": API_KEY,
        "apps_config": None,
        "slack_bot_token": slack.bot_token,
        "slack_api_url": slack.base_url,
        "slack_main_channel_id": MAIN_CHANNEL_ID,
        "canvas_debounce_seconds": 0.05,
    }
    if mode == "socket":
        values["slack_app_token"] = slack.app_token
    else:
        values["slack_signing_secret"] = SIGNING_SECRET
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_service(
    slack: FakeSlack, data_dir: Path, mode: str = "socket", **overrides: Any
) -> AsyncIterator[Service]:
    """Start the service; in Socket Mode, wait until it has connected."""
    service = Service(slack_settings(slack, data_dir, mode, **overrides))
    await service.start()
    try:
        if mode == "socket":
            await slack.socket_mode.wait_connected()
        yield service
    finally:
        await service.stop()


async def post(service: Service, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            service.url + path,
            json=body,
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            return response.status, await response.json()


async def post_status(service: Service, **body: Any) -> None:
    status, answer = await post(service, "/api/v1/status", body)
    assert status == 200, answer


async def get_health(service: Service) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(service.url + "/health") as response:
            return response.status, await response.json()
