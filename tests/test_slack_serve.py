"""End to end: the real ``epmpulse serve`` process against the fake Slack.

Socket Mode and HTTP mode each run every subcommand, open the Home tab and click
each button; Slack's 3-second acknowledgement deadline is checked on every one.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from canvas.home import ACTION_OPEN_CANVAS_PREFIX, ACTION_REFRESH, ACTION_SYNC
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import (
    MAIN_CHANNEL_ID,
    USER_ID,
    app_home_opened,
    block_actions,
    event_body,
    interactive_body,
    signed_request,
    slash_command,
    slash_command_body,
)
from tests.server_process import ServerProcess

ACK_DEADLINE = 3.0
SIGNING_SECRET = "e2e-signing-secret-0123"
MARKER = "private-text-e2e-51c9"

# Each subcommand with a phrase its reply must contain. "Plan" is no app but is
# close to one, so the reply suggests it.
SUBCOMMANDS = [
    ("", ":x: *Actual* · Error"),
    ("status", ":x: *Actual* · Error"),
    ("status planning", "EPM job status: Planning"),
    ("status Plan", "Did you mean *Planning*?"),
    ("history Planning Actual", "History of Planning / Actual"),
    ("history Planning Actual 1", "Last 1 update(s), newest first"),
    ("sync", "board published to <"),
    ("help", "`/epmpulse history <app> <domain> [n]`"),
    ("bogus", "Unknown subcommand `bogus`."),
]
BUTTONS = [ACTION_REFRESH, ACTION_SYNC, ACTION_OPEN_CANVAS_PREFIX + "main"]


def slack_env(slack: FakeSlack) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_API_URL": slack.base_url,
        "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
        "EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.2",
    }


def reply_text(reply: dict[str, Any]) -> str:
    texts = [reply.get("text", "")]
    for block in reply.get("blocks", []):
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [element.get("text", "") for element in block.get("elements", [])]
    return "\n".join(str(text) for text in texts)


def view_text(view: dict[str, Any]) -> str:
    return reply_text({"blocks": view["blocks"]})


def wait_for_view(slack: FakeSlack, count: int, phrase: str = "") -> dict[str, Any]:
    return slack.wait_for_sync(
        lambda: (
            (views := slack.published_views(USER_ID))
            and len(views) >= count
            and phrase in view_text(views[-1])
            and views[-1]
        ),
        timeout=10,
    )


def post_error_row(server: ServerProcess) -> None:
    for status in ("Loading", "Error"):
        body = {"app": "Planning", "domain": "Actual", "status": status}
        response = server.post({**body, "message": f"step {status}"})
        assert response.status_code == 200, response.text


# --- Socket Mode ------------------------------------------------------------------


@pytest.fixture(scope="module")
def socket_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FakeSlack, ServerProcess]]:
    with FakeSlack.in_thread() as slack:
        env = slack_env(slack) | {"SLACK_APP_TOKEN": slack.app_token}
        data_dir = tmp_path_factory.mktemp("socket") / "data"
        with ServerProcess(data_dir, env) as server:
            slack.socket_mode.wait_connected_sync(timeout=15)
            slack.wait_for_sync(
                lambda: (
                    server.get("/health").json()["checks"].get("slack_socket")
                    == "connected"
                ),
                timeout=10,
            )
            post_error_row(server)
            yield slack, server


def send_command(slack: FakeSlack, text: str, name: str) -> float:
    payload = slash_command(text, response_url=slack.response_url(name))
    return slack.socket_mode.send_envelope_sync("slash_commands", payload).latency


@pytest.mark.parametrize(("text", "phrase"), SUBCOMMANDS)
def test_socket_subcommand(
    socket_server: tuple[FakeSlack, ServerProcess], text: str, phrase: str
) -> None:
    slack, _ = socket_server
    name = f"socket-{text or 'empty'}".replace(" ", "-")

    latency = send_command(slack, text, name)

    replies = slack.wait_for_sync(lambda: slack.responses(name), timeout=10)
    slack.wait_for_sync(
        lambda: any(phrase in reply_text(r) for r in slack.responses(name)), timeout=10
    )
    assert latency < ACK_DEADLINE
    assert replies[0]["response_type"] == "ephemeral"


def test_socket_home_tab_and_buttons(
    socket_server: tuple[FakeSlack, ServerProcess],
) -> None:
    slack, _ = socket_server
    before = len(slack.published_views(USER_ID))

    opened = slack.socket_mode.send_envelope_sync("events_api", app_home_opened())
    view = wait_for_view(slack, before + 1, "EPM job status")
    clicks = [
        slack.socket_mode.send_envelope_sync("interactive", block_actions(action))
        for action in BUTTONS
    ]
    synced = wait_for_view(slack, before + 4, "Canvases synced")

    assert opened.latency < ACK_DEADLINE
    assert [ack.latency < ACK_DEADLINE for ack in clicks] == [True, True, True]
    assert ":x: *Actual* · Error" in view_text(view)
    assert "published to <" in view_text(synced)


def test_socket_command_during_webhook_burst(
    socket_server: tuple[FakeSlack, ServerProcess],
) -> None:
    slack, server = socket_server
    statuses: list[int] = []
    stop = threading.Event()

    def burst(worker: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = server.session.headers["Authorization"]
            for number in range(60):
                if stop.is_set():
                    return
                body = {
                    "app": f"Burst{worker}",
                    "domain": f"D{number % 10}",
                    "status": "Loading" if number % 2 else "OK",
                    "job_id": str(number),
                }
                response = session.post(
                    server.url + "/api/v1/status", json=body, timeout=10
                )
                statuses.append(response.status_code)

    workers = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    try:
        slack.wait_for_sync(lambda: len(statuses) >= 20, timeout=10)
        latencies = [
            send_command(slack, "status", f"burst-{number}") for number in range(3)
        ]
        during_burst = len(statuses) < 240
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

    assert during_burst
    assert max(latencies) < ACK_DEADLINE
    assert set(statuses) == {200}


def test_socket_health_and_start_log(
    socket_server: tuple[FakeSlack, ServerProcess],
) -> None:
    slack, server = socket_server

    health = server.get("/health").json()

    log = server.log()
    assert health["checks"]["slack_socket"] == "connected"
    assert "mode socket: connected to Slack team EPMPulse Test as epmpulse" in log
    assert "Socket Mode connected" in log
    # Socket Mode's websocket runs on uvloop where it is installed (bot/loop.py).
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert f"loop={loop}, " in log
    assert "WARNING slack_bolt" not in log
    assert slack.bot_token not in log
    assert slack.app_token not in log


# --- HTTP mode --------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FakeSlack, ServerProcess]]:
    with FakeSlack.in_thread() as slack:
        env = slack_env(slack) | {"SLACK_SIGNING_SECRET": SIGNING_SECRET}
        data_dir = tmp_path_factory.mktemp("http") / "data"
        with ServerProcess(data_dir, env) as server:
            post_error_row(server)
            yield slack, server


def post_signed(
    server: ServerProcess,
    body: bytes,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
) -> tuple[int, float]:
    headers = signed_request(body, secret, timestamp)
    started = time.monotonic()
    response = requests.post(
        server.url + "/slack/events", data=body, headers=headers, timeout=10
    )
    return response.status_code, time.monotonic() - started


@pytest.mark.parametrize(("text", "phrase"), SUBCOMMANDS)
def test_http_subcommand(
    http_server: tuple[FakeSlack, ServerProcess], text: str, phrase: str
) -> None:
    slack, server = http_server
    name = f"http-{text or 'empty'}".replace(" ", "-")
    body = slash_command_body(
        slash_command(text, response_url=slack.response_url(name))
    )

    status, seconds = post_signed(server, body)

    slack.wait_for_sync(
        lambda: any(phrase in reply_text(r) for r in slack.responses(name)), timeout=10
    )
    assert status == 200
    assert seconds < ACK_DEADLINE


def test_http_home_tab_and_buttons(
    http_server: tuple[FakeSlack, ServerProcess],
) -> None:
    slack, server = http_server
    before = len(slack.published_views(USER_ID))

    opened = post_signed(server, event_body(app_home_opened()))
    wait_for_view(slack, before + 1, "EPM job status")
    clicks = [
        post_signed(server, interactive_body(block_actions(action)))
        for action in BUTTONS
    ]
    synced = wait_for_view(slack, before + 4, "Canvases synced")

    assert opened[0] == 200
    assert opened[1] < ACK_DEADLINE
    assert [status for status, _ in clicks] == [200, 200, 200]
    assert max(seconds for _, seconds in clicks) < ACK_DEADLINE
    assert "published to <" in view_text(synced)


def test_http_rejects_bad_signature_and_stale_timestamp(
    http_server: tuple[FakeSlack, ServerProcess],
) -> None:
    slack, server = http_server
    body = slash_command_body(
        slash_command(MARKER, response_url=slack.response_url("forged"))
    )

    forged, _ = post_signed(server, body, secret="not-the-secret")
    stale, _ = post_signed(server, body, timestamp=int(time.time()) - 600)
    time.sleep(0.2)

    log = server.log()
    assert forged == 401
    assert stale == 401
    assert "rejected a request to /slack/events" in log
    assert "invalid signature" in log
    assert "more than 300 s" in log
    assert MARKER not in log
    assert slack.responses("forged") == []


def test_http_start_log_names_mode(
    http_server: tuple[FakeSlack, ServerProcess],
) -> None:
    slack, server = http_server

    log = server.log()

    assert "mode http: connected to Slack team EPMPulse Test as epmpulse" in log
    assert "Slack events are served at POST /slack/events" in log
    assert SIGNING_SECRET not in log
