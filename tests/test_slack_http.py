"""HTTP mode: POST /slack/events on the webhook server, signed as Slack signs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.service import Service
from canvas.home import ACTION_REFRESH
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import (
    USER_ID,
    app_home_opened,
    block_actions,
    event_body,
    interactive_body,
    signed_request,
    slash_command,
    slash_command_body,
    url_verification,
)
from tests.slack_service import SIGNING_SECRET, post_status, running_service

MARKER = "private-text-7f3a"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def service(slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(slack, tmp_path / "data", mode="http") as running:
        yield running


async def send(
    service: Service, body: bytes, headers: dict[str, str]
) -> tuple[int, str, float]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            service.url + "/slack/events", data=body, headers=headers
        ) as response:
            return response.status, await response.text(), time.monotonic() - started


async def test_signed_command_gets_reply(slack: FakeSlack, service: Service) -> None:
    await post_status(service, app="Planning", domain="Actual", status="OK")
    body = slash_command_body(
        slash_command("status", response_url=slack.response_url("http"))
    )

    status, _, seconds = await send(service, body, signed_request(body, SIGNING_SECRET))

    assert status == 200
    assert seconds < 3
    replies = await slack.wait_for(lambda: slack.responses("http"))
    assert "*Planning*" in replies[0]["blocks"][-1]["text"]["text"]


async def test_signed_home_event_publishes_view(
    slack: FakeSlack, service: Service
) -> None:
    body = event_body(app_home_opened())

    status, _, _ = await send(service, body, signed_request(body, SIGNING_SECRET))

    assert status == 200
    await slack.wait_for(lambda: slack.published_views(USER_ID))


async def test_signed_button_click_republishes(
    slack: FakeSlack, service: Service
) -> None:
    body = interactive_body(block_actions(ACTION_REFRESH))

    status, _, _ = await send(service, body, signed_request(body, SIGNING_SECRET))

    assert status == 200
    await slack.wait_for(lambda: slack.published_views(USER_ID))


async def test_url_verification_returns_challenge(service: Service) -> None:
    body = event_body(url_verification("abc123"))

    status, text, _ = await send(service, body, signed_request(body, SIGNING_SECRET))

    assert status == 200
    assert json.loads(text) == {"challenge": "abc123"}


async def test_bad_signature_rejected_without_logging_body(
    slack: FakeSlack, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    body = slash_command_body(
        slash_command(MARKER, response_url=slack.response_url("bad"))
    )

    with caplog.at_level(logging.DEBUG):
        status, _, _ = await send(service, body, signed_request(body, "wrong-secret"))

    assert status == 401
    assert "invalid signature" in caplog.text
    assert MARKER not in caplog.text
    assert slack.responses("bad") == []


async def test_stale_timestamp_rejected_without_logging_body(
    slack: FakeSlack, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    body = slash_command_body(
        slash_command(MARKER, response_url=slack.response_url("stale"))
    )
    headers = signed_request(body, SIGNING_SECRET, timestamp=int(time.time()) - 301)

    with caplog.at_level(logging.DEBUG):
        status, _, _ = await send(service, body, headers)

    assert status == 401
    assert "more than 300 s" in caplog.text
    assert MARKER not in caplog.text


async def test_missing_signature_rejected(service: Service) -> None:
    body = event_body(app_home_opened())

    status, _, _ = await send(service, body, {"Content-Type": "application/json"})

    assert status == 401


async def test_bolt_signature_log_is_silenced(service: Service) -> None:
    bolt_log = logging.getLogger("slack_bolt.RequestVerification")

    assert not bolt_log.isEnabledFor(logging.INFO)


async def test_health_names_events_endpoint(service: Service) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(service.url + "/health") as response:
            health = await response.json()

    assert response.status == 200
    assert health["mode"] == "http"
    assert health["checks"]["slack_events"] == "POST /slack/events"


async def test_repeated_rejections_logged_once(
    slack: FakeSlack, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    body = event_body(app_home_opened())

    with caplog.at_level(logging.WARNING):
        statuses = [
            (await send(service, body, signed_request(body, "wrong")))[0]
            for _ in range(3)
        ]

    assert statuses == [401, 401, 401]
    assert caplog.text.count("rejected a request") == 1


async def test_bad_timestamp_logged_after_missing_headers(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    body = event_body(app_home_opened())
    bad_timestamp = signed_request(body, SIGNING_SECRET)
    bad_timestamp["X-Slack-Request-Timestamp"] = "yesterday"

    with caplog.at_level(logging.WARNING):
        unsigned, _, _ = await send(service, body, {})
        malformed, _, _ = await send(service, body, bad_timestamp)

    assert unsigned == 401
    assert malformed == 401
    assert "header is missing" in caplog.text
    assert "X-Slack-Request-Timestamp header is not a Unix time" in caplog.text


@pytest.mark.parametrize("timestamp", ["9" * 400, "1_700_000_000", "\uff11\uff12"])
async def test_odd_timestamp_rejected_with_log_line(
    service: Service, caplog: pytest.LogCaptureFixture, timestamp: str
) -> None:
    body = event_body(app_home_opened())
    headers = signed_request(body, SIGNING_SECRET)
    headers["X-Slack-Request-Timestamp"] = timestamp

    with caplog.at_level(logging.WARNING):
        status, _, _ = await send(service, body, headers)

    assert status == 401
    assert "header is not a Unix time" in caplog.text
