"""Admin alerts about EPMPulse itself: raised once per problem after ten minutes,
cleared with a reply, through the real engine and outbox, and from the real
server when EPM sign-in fails."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from alerts.admin import AdminChecks
from alerts.engine import AlertEngine, AlertSettings
from alerts.outbox import Outbox, OutboxStatus
from alerts.render import render_admin
from alerts.senders import SlackSender
from canvas.publisher import BoardPublisher, PublishError
from store.models import Status
from tests.fakes.epm_pod import FakeEpmPod
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID
from tests.server_process import ServerProcess


class MonotonicClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Publisher:
    failing_since: float | None = None
    last_error: str | None = None


@dataclass
class Recorder:
    raised: list[tuple[str, str]] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    def raise_admin(self, key: str, text: str) -> None:
        self.raised.append((key, text))

    def clear_admin(self, key: str) -> None:
        self.cleared.append(key)


def healthy_queue() -> OutboxStatus:
    return OutboxStatus(0, None, None, None, None)


def test_canvas_problem_raised_after_ten_minutes() -> None:
    clock = MonotonicClock()
    recorder = Recorder()
    publisher = Publisher(clock.now, "canvas F1: Slack answered invalid_auth")
    checks = AdminChecks(recorder, {"main": publisher}, healthy_queue, clock=clock)

    clock.now += 599
    checks.check()
    raised_early = list(recorder.raised)
    clock.now += 1
    checks.check()

    assert raised_early == []
    assert recorder.raised[0][0] == "canvas:main"
    assert "invalid_auth" in recorder.raised[0][1]
    assert "10m" in recorder.raised[0][1]


def test_canvas_problem_cleared_when_publishing_works() -> None:
    recorder = Recorder()
    checks = AdminChecks(recorder, {"main": Publisher()}, healthy_queue)

    checks.check()

    assert "canvas:main" in recorder.cleared


def test_stuck_queue_raises_with_fix() -> None:
    clock = MonotonicClock()
    recorder = Recorder()
    stuck = OutboxStatus(
        3,
        "2026-01-01T00:00:00+00:00",
        clock.now,
        "Slack answered not_in_channel",
        "invite the bot to the channel (/invite @EPMPulse)",
    )
    checks = AdminChecks(recorder, {}, lambda: stuck, clock=clock)

    clock.now += 600
    checks.check()

    key, text = recorder.raised[0]
    assert key == "alert_queue"
    assert "3 waiting" in text
    assert "invite the bot" in text


# --- through the real engine, outbox and publisher -------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


class FlakyTarget:
    def __init__(self) -> None:
        self.failing = True

    @property
    def description(self) -> str:
        return "canvas F0TEST"

    async def publish(self, markdown: str) -> str:
        if self.failing:
            raise PublishError("canvas F0TEST: Slack answered canvas_not_found")
        return "F0TEST"


class Router:
    def channel_of(self, app: str) -> tuple[str, str]:
        return "main", MAIN_CHANNEL_ID

    def admin_channel(self) -> str:
        return MAIN_CHANNEL_ID

    def link(self, board: str) -> str | None:
        return None


async def test_failing_canvas_alerts_once_then_resolves(slack: FakeSlack) -> None:
    clock = MonotonicClock()
    client = AsyncWebClient(
        token=slack.bot_token, base_url=slack.base_url, retry_handlers=[]
    )
    outbox = Outbox(SlackSender(client), min_interval=0.05)
    engine = AlertEngine(
        AlertSettings(alert_on=frozenset({Status.ERROR}), tz=UTC), Router(), outbox
    )
    outbox.live_messages = engine.live_message_ids
    target = FlakyTarget()
    publisher = BoardPublisher("main", lambda: "board", target, 0.01, clock=clock)
    checks = AdminChecks(engine, {"main": publisher}, outbox.status, clock=clock)
    await outbox.start()
    try:
        publisher.notify()
        await slack.wait_for(lambda: publisher.failing_since is not None)
        clock.now += 601
        for _ in range(3):
            checks.check()
        await slack.wait_for(lambda: slack.messages(MAIN_CHANNEL_ID))

        target.failing = False
        await slack.wait_for(lambda: publisher.failing_since is None, timeout=5)
        checks.check()
        await slack.wait_for(lambda: slack.messages(MAIN_CHANNEL_ID)[0].replies)
        assert await outbox.drain(5)
    finally:
        await outbox.stop()
        await publisher.close()
    messages = slack.messages(MAIN_CHANNEL_ID)

    assert len(messages) == 1
    assert "canvas_not_found" in messages[0].edits[0]["text"]
    assert "epmpulse check-config --slack" in messages[0].edits[0]["text"]
    assert messages[0].text.startswith(":white_check_mark: Resolved")
    assert "Resolved at" in messages[0].replies[0].text


# --- from the real server --------------------------------------------------------


@pytest.fixture
def pod() -> Iterator[FakeEpmPod]:
    with FakeEpmPod.in_thread() as fake:
        yield fake


def read_alerts(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_server_alerts_admins_when_epm_sign_in_fails(
    pod: FakeEpmPod, tmp_path: Path
) -> None:
    apps = tmp_path / "apps.json"
    apps.write_text(
        json.dumps(
            {
                "apps": [
                    {
                        "name": "Planning",
                        "domains": ["Actual"],
                        "epm": {
                            "url": pod.url,
                            "product": "planning",
                            "application": "Vision",
                        },
                    }
                ]
            }
        )
    )
    pod.add_job("planning", 101, [(-1, "Processing")])
    env = {
        "EPMPULSE_APPS_CONFIG": str(apps),
        "EPM_USERNAME": pod.username,
        "EPM_PASSWORD": "wrong-password",
        "EPM_POLL_SECONDS": "1",
    }
    data_dir = tmp_path / "data"
    log_path = data_dir / "alerts.log"
    with ServerProcess(data_dir, env) as server:
        body = {"app": "Planning", "domain": "Actual", "status": "Loading"}
        body["job_id"] = "101"
        assert server.post(body).status_code == 200
        deadline = time.monotonic() + 10
        while not read_alerts(log_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # further failed polls must not repeat the alert
        alerts = read_alerts(log_path)
        server_log = server.log()

    assert len(alerts) == 1
    assert alerts[0]["channel"] == "main"
    assert "EPMPulse needs attention" in alerts[0]["text"]
    assert "rejected the Basic credentials" in alerts[0]["text"]
    assert "Check EPM_USERNAME and EPM_PASSWORD" in alerts[0]["text"]
    assert "wrong-password" not in alerts[0]["text"]
    assert "wrong-password" not in server_log


def test_admin_alert_is_rendered_escaped() -> None:
    message = render_admin(
        "EPM answered <!channel>",
        raised_at="2026-01-01T00:00:00+00:00",
        tz=UTC,
        now=datetime(2026, 1, 1, tzinfo=UTC),
    )

    assert "<!channel>" not in message.text
    assert "&lt;!channel&gt;" in message.text
