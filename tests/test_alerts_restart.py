"""Alerts survive restarts of the real server: a queue built while Slack fails is
sent exactly once after a kill, threads continue after a clean restart, and a
damaged saved state does not stop the alerts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alerts.component import STATE_KEY
from store.store import StatusStore
from tests.conftest import ApiClient, StartService
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID
from tests.server_process import ServerProcess


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.in_thread() as fake:
        yield fake


def slack_env(slack: FakeSlack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.base_url,
        "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.3",
        "EPMPULSE_RATE_LIMIT_POST": "100000 per minute",
        "EPMPULSE_ALERT_BUNDLE_SECONDS": "0.2",
    }


def status(app: str, domain: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"app": app, "domain": domain, "status": value, **extra}


def send(server: ServerProcess, *updates: dict[str, Any]) -> None:
    for update in updates:
        response = server.post(update)
        assert response.status_code == 200, response.text


def alerts(slack: FakeSlack) -> list[Message]:
    return [m for m in slack.messages(MAIN_CHANNEL_ID) if "Planning ·" in m.text]


def wait_quiet(slack: FakeSlack, seconds: float) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        calls = len(slack.calls)
        time.sleep(seconds)
        if len(slack.calls) == calls:
            return
    raise AssertionError("Slack calls did not stop")


def test_killed_server_sends_queued_alerts_once_after_restart(
    slack: FakeSlack, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    slack.server_error("chat.postMessage", times=None)
    slack.server_error("chat.update", times=None)

    with ServerProcess(data_dir, slack_env(slack)) as first:
        send(
            first,
            status("Planning", "Actual", "Error", job_id="1"),
            status("Planning", "Budget", "Error", job_id="2"),
        )
        # The bundle goes to the queue, and Slack responds with HTTP 500.
        slack.wait_for_sync(lambda: slack.calls_to("chat.postMessage"), timeout=5)
        send(
            first,
            status("Planning", "Actual", "Loading", job_id="1"),
            status("Planning", "Budget", "OK", job_id="2"),
        )
        slack.wait_for_sync(
            lambda: "failing" in first.get("/health").json()["checks"]["alerts"]
        )
        first.kill()
    assert alerts(slack) == []

    slack.clear_faults()
    with ServerProcess(data_dir, slack_env(slack)) as second:
        slack.wait_for_sync(
            lambda: alerts(slack) and len(alerts(slack)[0].replies) == 2, timeout=8
        )
        wait_quiet(slack, 1.5)
        health = second.get("/health").json()
    messages = alerts(slack)
    replies = [reply.text for reply in messages[0].replies]
    blocks = repr(messages[0].blocks)

    assert len(messages) == 1
    assert "Error → Loading" in replies[0]
    assert "recovered" in replies[1]
    assert "Planning · Actual" in blocks
    assert "Planning · Budget" in blocks
    assert "recovered" in blocks
    assert slack.orphan_replies == []
    assert health["checks"]["alerts"] == "ok"


def test_thread_continues_after_clean_restart(slack: FakeSlack, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir, slack_env(slack)) as first:
        send(first, status("Planning", "Actual", "Error", job_id="9"))
        slack.wait_for_sync(lambda: alerts(slack), timeout=5)
        assert first.stop() == 0

    with ServerProcess(data_dir, slack_env(slack)) as second:
        send(second, status("Planning", "Actual", "OK", job_id="9"))
        slack.wait_for_sync(lambda: alerts(slack)[0].replies, timeout=5)
        wait_quiet(slack, 1.2)
    messages = alerts(slack)

    assert len(messages) == 1
    assert "recovered" in messages[0].replies[0].text
    assert messages[0].text.startswith(":white_check_mark: Recovered")


async def test_invalid_saved_state_starts_fresh(
    start_service: StartService, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StatusStore(data_dir)
    await store.open()
    await store.set_meta(STATE_KEY, {"engine": {"rows": [{"unknown": 1}]}})
    await store.close()

    service = await start_service(alert_bundle_seconds=0.05)
    async with aiohttp.ClientSession() as http:
        api = ApiClient(http, service.url)
        reply = await api.post("/api/v1/status", status("Planning", "Actual", "Error"))
    log_path = data_dir / "alerts.log"
    for _ in range(100):
        if log_path.exists():
            break
        await asyncio.sleep(0.05)

    assert reply.status == 200
    assert "saved alert state" in caplog.text
    assert "Planning · Actual" in log_path.read_text()
