"""Failure alerts end to end: the real ``epmpulse serve`` against the fake Slack
Web API, with short limits. Each test uses its own app names, so the tests share
one server and one channel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID, TEAM_ID
from tests.server_process import ServerProcess

BUNDLE_SECONDS = 1.0


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with FakeSlack.in_thread() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.base_url,
        "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
        "EPMPULSE_TIMEZONE": "America/New_York",
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.3",
        "EPMPULSE_RATE_LIMIT_POST": "100000 per minute",
        "EPMPULSE_ALERT_BUNDLE_SECONDS": str(BUNDLE_SECONDS),
        "EPMPULSE_FLAP_THRESHOLD": "2",
    }
    data_dir = tmp_path_factory.mktemp("alerts") / "data"
    with ServerProcess(data_dir, env) as process:
        slack.wait_for_sync(lambda: slack.channel_canvas(MAIN_CHANNEL_ID))
        yield process


def status(app: str, domain: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"app": app, "domain": domain, "status": value, **extra}


def send(server: ServerProcess, *updates: dict[str, Any]) -> None:
    for update in updates:
        response = server.post(update)
        assert response.status_code == 200, response.text


def about(slack: FakeSlack, app: str) -> list[Message]:
    """Top-level messages of the main channel that name ``app``."""
    return [m for m in slack.messages(MAIN_CHANNEL_ID) if f"{app} ·" in m.text]


def wait_quiet(slack: FakeSlack, seconds: float) -> None:
    """Wait until no Web API call has arrived for ``seconds``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        calls = len(slack.calls)
        time.sleep(seconds)
        if len(slack.calls) == calls:
            return
    raise AssertionError("Slack calls did not stop")


def test_failure_posts_alert_with_facts_and_canvas_link(
    slack: FakeSlack, server: ServerProcess
) -> None:
    send(
        server,
        status("Planning", "Actual", "Error", job_id="42", message="3 rows rejected"),
    )

    messages = slack.wait_for_sync(lambda: about(slack, "Planning"), timeout=5)
    canvas_id = slack.channel_canvas(MAIN_CHANNEL_ID)
    text = messages[0].text + repr(messages[0].blocks)

    assert "Planning · Actual" in text
    assert "EPM job failed" in text
    assert "job 42" in text
    assert "3 rows rejected" in text
    assert " EST" in text or " EDT" in text
    assert f"docs/{TEAM_ID}/{canvas_id}" in text


def test_outside_text_cannot_mention_channel(
    slack: FakeSlack, server: ServerProcess
) -> None:
    send(server, status("Escaped", "Actual", "Error", message="<!channel> look"))

    messages = slack.wait_for_sync(lambda: about(slack, "Escaped"), timeout=5)

    assert "<!channel>" not in messages[0].text
    assert "&lt;!channel&gt; look" in messages[0].text


def test_updates_edit_one_parent_and_reply_in_thread(
    slack: FakeSlack, server: ServerProcess
) -> None:
    send(server, status("FCCS", "Consol", "Error", job_id="7"))
    slack.wait_for_sync(lambda: about(slack, "FCCS"), timeout=5)

    send(
        server,
        status("FCCS", "Consol", "Loading", job_id="7", message="retrying"),
        status("FCCS", "Consol", "Error", job_id="7", message="failed again"),
        status("FCCS", "Consol", "OK", job_id="7"),
    )
    slack.wait_for_sync(lambda: len(about(slack, "FCCS")[0].replies) == 3, timeout=8)
    wait_quiet(slack, 1.2)
    messages = about(slack, "FCCS")
    replies = [reply.text for reply in messages[0].replies]

    assert len(messages) == 1
    assert "Error → Loading" in replies[0]
    assert "Loading → Error" in replies[1]
    assert "recovered" in replies[2]
    assert messages[0].text.startswith(":white_check_mark: Recovered")
    assert len(messages[0].edits) >= 1


def test_recovery_without_alert_posts_nothing(
    slack: FakeSlack, server: ServerProcess
) -> None:
    send(
        server,
        status("Quiet", "Actual", "Loading", job_id="1"),
        status("Quiet", "Actual", "OK", job_id="1"),
    )
    time.sleep(BUNDLE_SECONDS + 1.0)

    assert about(slack, "Quiet") == []
    assert not any("Quiet" in reply.text for reply in slack.orphan_replies)


def test_failures_in_one_burst_share_one_parent(
    slack: FakeSlack, server: ServerProcess
) -> None:
    batch = {
        "updates": [status("Close", domain, "Error") for domain in ("A", "B", "C")]
    }
    response = server.post(batch, "/api/v1/status/batch")
    assert response.status_code == 200, response.text

    slack.wait_for_sync(lambda: about(slack, "Close"), timeout=5)
    wait_quiet(slack, 1.2)
    messages = about(slack, "Close")
    text = repr(messages[0].blocks)

    assert len(messages) == 1
    assert "3 EPM jobs need attention" in messages[0].text
    for domain in ("A", "B", "C"):
        assert f"Close · {domain}" in text


def test_flapping_row_sends_one_notice_then_stays_quiet(
    slack: FakeSlack, server: ServerProcess
) -> None:
    flips = ["Error", "OK", "Error", "OK", "Error", "OK", "Error"]
    for value in flips:
        send(server, status("Flappy", "Load", value))

    slack.wait_for_sync(lambda: about(slack, "Flappy"), timeout=5)
    wait_quiet(slack, BUNDLE_SECONDS + 0.5)
    messages = about(slack, "Flappy")

    assert len(messages) == 1
    assert "Flapping" in messages[0].text
    assert messages[0].replies == []


def test_ratelimited_alert_is_delayed_not_lost(
    slack: FakeSlack, server: ServerProcess
) -> None:
    wait_quiet(slack, 0.5)
    slack.ratelimit("chat.postMessage", retry_after=1)

    send(server, status("Limited", "Actual", "Error"))
    slack.wait_for_sync(lambda: about(slack, "Limited"), timeout=8)
    wait_quiet(slack, 1.2)
    calls = [
        call
        for call in slack.calls_to("chat.postMessage")
        if "Limited ·" in str(call.params.get("text"))
    ]

    assert [call.status for call in calls] == [429, 200]
    assert calls[1].timestamp - calls[0].timestamp >= 1.0
    assert len(about(slack, "Limited")) == 1


def test_health_reports_alert_queue(server: ServerProcess) -> None:
    body = server.get("/health").json()

    assert body["checks"]["alerts"].startswith("ok")
