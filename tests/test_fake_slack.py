"""The Slack fakes, driven by the real slack_sdk and slack_bolt clients.

These tests pin the protocol details that EPMPulse's own tests rely on: if a fake
drifts from what the SDK sends or expects, it fails here first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import (
    FixedValueRetryIntervalCalculator,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.slack_api import MAX_CANVAS_MARKDOWN_CHARS, FakeSlack
from tests.fakes.slack_payloads import (
    ARCS_CHANNEL_ID,
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
from tests.fakes.slack_socket import AckTimeoutError, FakeSocketMode

FAST_RETRY = FixedValueRetryIntervalCalculator(fixed_internal=0.01)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)


def markdown(text: str) -> dict[str, str]:
    return {"type": "markdown", "markdown": text}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


async def api_error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as excinfo:
        await call
    return excinfo.value


# Authentication.


async def test_auth_test_returns_identity(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    response = await client.auth_test()

    assert response["team_id"] == slack.team_id
    assert response["user_id"] == slack.bot_user_id
    assert response["bot_id"] == slack.bot_id
    assert response["url"] == slack.workspace_url


async def test_auth_test_sends_granted_scopes(client: AsyncWebClient) -> None:
    response = await client.auth_test()

    scopes = set(response.headers["X-OAuth-Scopes"].split(","))
    assert scopes == {
        "commands",
        "chat:write",
        "canvases:write",
        "canvases:read",
        "channels:read",
    }


async def test_unknown_token_is_invalid_auth(slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-wrong", base_url=slack.base_url)

    error = await api_error(client.auth_test())

    assert error.response.status_code == 200
    assert error.response["error"] == "invalid_auth"


async def test_missing_token_is_not_authed(slack: FakeSlack) -> None:
    client = AsyncWebClient(base_url=slack.base_url)

    error = await api_error(client.auth_test())

    assert error.response["error"] == "not_authed"


async def test_token_param_is_accepted(slack: FakeSlack) -> None:
    client = AsyncWebClient(base_url=slack.base_url)

    response = await client.api_call("auth.test", params={"token": slack.bot_token})

    assert response["ok"] is True


async def test_bot_method_rejects_app_token(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.app_token, base_url=slack.base_url)

    error = await api_error(client.chat_postMessage(channel=MAIN_CHANNEL_ID, text="x"))

    assert error.response["error"] == "not_allowed_token_type"


async def test_connections_open_rejects_bot_token(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    error = await api_error(client.apps_connections_open(app_token=slack.bot_token))

    assert error.response["error"] == "not_allowed_token_type"


async def test_missing_scope_names_needed_scope(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.set_scopes(["chat:write"])

    error = await api_error(client.canvases_create(document_content=markdown("x")))

    assert error.response["error"] == "missing_scope"
    assert error.response["needed"] == "canvases:write"


async def test_unknown_method(client: AsyncWebClient) -> None:
    error = await api_error(client.api_call("canvases.frobnicate"))

    assert error.response["error"] == "unknown_method"


# Canvases.


async def test_canvas_round_trip(slack: FakeSlack, client: AsyncWebClient) -> None:
    created = await client.canvases_create(
        title="EPM Pulse", document_content=markdown("## Jobs\nnone yet")
    )
    canvas_id = created["canvas_id"]
    await client.canvases_edit(
        canvas_id=canvas_id,
        changes=[{"operation": "replace", "document_content": markdown("## FCCS")}],
    )
    content = await client.api_call(
        "canvases.getContent", json={"canvas_id": canvas_id}
    )

    assert canvas_id.startswith("F")
    assert content["content"] == "## FCCS"
    assert slack.canvas_markdown(canvas_id) == "## FCCS"
    assert slack.canvases[canvas_id].title == "EPM Pulse"


async def test_edit_rejects_two_changes(client: AsyncWebClient) -> None:
    canvas_id = (await client.canvases_create(document_content=markdown("a")))[
        "canvas_id"
    ]
    change = {"operation": "insert_at_end", "document_content": markdown("b")}

    error = await api_error(
        client.canvases_edit(canvas_id=canvas_id, changes=[change, change])
    )

    assert error.response["error"] == "invalid_arguments"


async def test_edit_rejects_non_markdown_content(client: AsyncWebClient) -> None:
    canvas_id = (await client.canvases_create(document_content=markdown("a")))[
        "canvas_id"
    ]
    change = {
        "operation": "replace",
        "document_content": {"type": "blocks", "markdown": "b"},
    }

    error = await api_error(client.canvases_edit(canvas_id=canvas_id, changes=[change]))

    assert error.response["error"] == "invalid_arguments"


# aiohttp warns about any request body over 1 MiB, which this test must send.
@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")
async def test_edit_rejects_markdown_over_one_mib(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    canvas_id = (await client.canvases_create(document_content=markdown("a")))[
        "canvas_id"
    ]
    huge = "x" * (MAX_CANVAS_MARKDOWN_CHARS + 1)
    change = {"operation": "replace", "document_content": markdown(huge)}

    error = await api_error(client.canvases_edit(canvas_id=canvas_id, changes=[change]))

    assert error.response["error"] == "canvas_too_large"
    assert slack.canvas_markdown(canvas_id) == "a"


async def test_edit_unknown_canvas_not_found(client: AsyncWebClient) -> None:
    change = {"operation": "replace", "document_content": markdown("b")}

    error = await api_error(client.canvases_edit(canvas_id="F0NOPE", changes=[change]))

    assert error.response["error"] == "canvas_not_found"


async def test_edit_after_delete_not_found(client: AsyncWebClient) -> None:
    canvas_id = (await client.canvases_create(document_content=markdown("a")))[
        "canvas_id"
    ]
    await client.canvases_delete(canvas_id=canvas_id)
    change = {"operation": "replace", "document_content": markdown("b")}

    error = await api_error(client.canvases_edit(canvas_id=canvas_id, changes=[change]))

    assert error.response["error"] == "canvas_not_found"


async def test_insert_operations_and_rename(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    canvas_id = (await client.canvases_create(document_content=markdown("middle")))[
        "canvas_id"
    ]
    for operation, text in (("insert_at_start", "top"), ("insert_at_end", "end")):
        await client.canvases_edit(
            canvas_id=canvas_id,
            changes=[{"operation": operation, "document_content": markdown(text)}],
        )
    await client.canvases_edit(
        canvas_id=canvas_id,
        changes=[{"operation": "rename", "title_content": markdown("Prod")}],
    )

    assert slack.canvas_markdown(canvas_id) == "top\nmiddle\nend"
    assert slack.canvases[canvas_id].title == "Prod"


async def test_channel_canvas_id_recoverable(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    first = await client.conversations_canvases_create(
        channel_id=MAIN_CHANNEL_ID, document_content=markdown("## Jobs")
    )
    error = await api_error(
        client.conversations_canvases_create(
            channel_id=MAIN_CHANNEL_ID, document_content=markdown("## Again")
        )
    )
    info = await client.conversations_info(channel=MAIN_CHANNEL_ID)

    assert error.response["error"] == "channel_canvas_already_exists"
    assert info["channel"]["properties"]["canvas"]["file_id"] == first["canvas_id"]
    assert info["channel"]["is_member"] is True
    assert slack.channel_canvas(MAIN_CHANNEL_ID) == first["canvas_id"]


async def test_channel_canvas_unknown_channel(client: AsyncWebClient) -> None:
    error = await api_error(
        client.conversations_canvases_create(
            channel_id="C0UNKNOWN01", document_content=markdown("x")
        )
    )

    assert error.response["error"] == "channel_not_found"


async def test_concurrent_edit_is_locked(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    canvas_id = (await client.canvases_create(document_content=markdown("a")))[
        "canvas_id"
    ]
    slack.set_edit_duration(0.3)

    async def edit(text: str) -> str:
        try:
            await client.canvases_edit(
                canvas_id=canvas_id,
                changes=[{"operation": "replace", "document_content": markdown(text)}],
            )
        except SlackApiError as e:
            return str(e.response["error"])
        return "ok"

    first = asyncio.create_task(edit("first"))
    await slack.wait_for(lambda: canvas_id in slack.edits_in_progress)
    second = await edit("second")

    assert second == "canvas_editing_locked"
    assert await first == "ok"
    assert slack.canvas_markdown(canvas_id) == "first"


# Fault switches with the SDK's retry handlers.


async def test_ratelimit_without_handler_raises_429(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.ratelimit("auth.test", retry_after=7)

    error = await api_error(client.auth_test())

    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "7"
    assert error.response["error"] == "ratelimited"


async def test_ratelimit_retried_by_handler(slack: FakeSlack) -> None:
    client = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.base_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler()],
    )
    slack.ratelimit("canvases.create", retry_after=0)

    response = await client.canvases_create(document_content=markdown("a"))

    assert response["ok"] is True
    assert [c.status for c in slack.calls_to("canvases.create")] == [429, 200]


async def test_server_error_retried_by_handler(slack: FakeSlack) -> None:
    client = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.base_url,
        retry_handlers=[AsyncServerErrorRetryHandler(interval_calculator=FAST_RETRY)],
    )
    slack.server_error("auth.test", status=503)

    response = await client.auth_test()

    assert response["ok"] is True
    assert [c.status for c in slack.calls_to("auth.test")] == [503, 200]


async def test_server_error_without_handler_raises(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.server_error("auth.test", status=500)

    error = await api_error(client.auth_test())

    assert error.response.status_code == 500


async def test_dropped_connection_retried(
    slack: FakeSlack,
) -> None:
    client = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.base_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(interval_calculator=FAST_RETRY)
        ],
    )
    slack.drop_connection("auth.test")

    response = await client.auth_test()

    assert response["ok"] is True
    assert [c.status for c in slack.calls_to("auth.test")] == [None, 200]


async def test_hang_delays_answer(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.hang("auth.test", 0.3)

    started = time.monotonic()
    await client.auth_test()

    assert time.monotonic() - started >= 0.3


async def test_hang_past_client_timeout(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, timeout=1)
    slack.hang("auth.test", 30)

    with pytest.raises(TimeoutError):
        await client.auth_test()


async def test_fail_injects_error_once(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    canvas_id = (await client.canvases_create(document_content=markdown("a")))[
        "canvas_id"
    ]
    slack.fail("canvases.edit", "canvas_editing_locked")
    change = {"operation": "replace", "document_content": markdown("b")}

    error = await api_error(client.canvases_edit(canvas_id=canvas_id, changes=[change]))
    retried = await client.canvases_edit(canvas_id=canvas_id, changes=[change])

    assert error.response["error"] == "canvas_editing_locked"
    assert retried["ok"] is True


async def test_fault_until_cleared(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail("auth.test", "fatal_error", times=None)
    for _ in range(3):
        await api_error(client.auth_test())
    slack.clear_faults()

    response = await client.auth_test()

    assert response["ok"] is True


# Home tab.


async def test_views_publish_records_view(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    view = {"type": "home", "blocks": [section("All jobs green")]}

    response = await client.views_publish(user_id=USER_ID, view=view)

    assert response["view"]["type"] == "home"
    assert slack.published_views(USER_ID)[-1]["blocks"] == view["blocks"]


async def test_views_publish_over_100_blocks_fails(client: AsyncWebClient) -> None:
    view = {"type": "home", "blocks": [section(f"row {i}") for i in range(101)]}

    error = await api_error(client.views_publish(user_id=USER_ID, view=view))

    assert error.response["error"] == "invalid_arguments"
    assert error.response["response_metadata"]["messages"] == [
        "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"
    ]


@pytest.mark.parametrize(
    ("block", "pointer"),
    [
        (section("x" * 3001), "/view/blocks/0/text/text"),
        (
            {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},
            "/view/blocks/0/text/text",
        ),
        (
            {"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}},
            "/view/blocks/0/text/type",
        ),
    ],
)
async def test_views_publish_rejects_invalid_block(
    client: AsyncWebClient, block: dict[str, Any], pointer: str
) -> None:
    view = {"type": "home", "blocks": [block]}

    error = await api_error(client.views_publish(user_id=USER_ID, view=view))

    assert error.response["error"] == "invalid_arguments"
    assert pointer in error.response["response_metadata"]["messages"][0]


async def test_views_publish_rejects_modal(client: AsyncWebClient) -> None:
    view = {"type": "modal", "blocks": [section("x")]}

    error = await api_error(client.views_publish(user_id=USER_ID, view=view))

    assert error.response["error"] == "invalid_arguments"


async def test_views_publish_view_too_large(client: AsyncWebClient) -> None:
    view = {"type": "home", "blocks": [section("x")], "private_metadata": "m" * 260_000}

    error = await api_error(client.views_publish(user_id=USER_ID, view=view))

    assert error.response["error"] == "view_too_large"


# Messages.


async def test_post_message_thread_reply(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    parent = await client.chat_postMessage(channel=ARCS_CHANNEL_ID, text="FCCS failed")
    reply = await client.chat_postMessage(
        channel=ARCS_CHANNEL_ID, text="FCCS recovered", thread_ts=parent["ts"]
    )

    messages = slack.messages(ARCS_CHANNEL_ID)
    assert float(reply["ts"]) > float(parent["ts"])
    assert parent["channel"] == ARCS_CHANNEL_ID
    assert [m.text for m in messages] == ["FCCS failed"]
    assert [r.text for r in messages[0].replies] == ["FCCS recovered"]
    assert messages[0].replies[0].thread_ts == parent["ts"]


async def test_post_message_not_in_channel(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.add_channel("C0OTHER0001", "other", is_member=False)

    error = await api_error(client.chat_postMessage(channel="C0OTHER0001", text="x"))

    assert error.response["error"] == "not_in_channel"


async def test_post_message_unknown_channel(client: AsyncWebClient) -> None:
    error = await api_error(client.chat_postMessage(channel="C0NOPE00001", text="x"))

    assert error.response["error"] == "channel_not_found"


async def test_post_message_over_50_blocks(client: AsyncWebClient) -> None:
    blocks = [section(f"row {i}") for i in range(51)]

    error = await api_error(
        client.chat_postMessage(channel=MAIN_CHANNEL_ID, text="x", blocks=blocks)
    )

    assert error.response["error"] == "invalid_blocks"


async def test_chat_update_keeps_edit_history(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel=MAIN_CHANNEL_ID, text="running")
    await client.chat_update(channel=MAIN_CHANNEL_ID, ts=posted["ts"], text="done")

    message = slack.messages(MAIN_CHANNEL_ID)[0]
    assert message.text == "done"
    assert message.edits == [{"text": "running", "blocks": None}]


async def test_chat_update_unknown_ts(client: AsyncWebClient) -> None:
    error = await api_error(
        client.chat_update(channel=MAIN_CHANNEL_ID, ts="1.000001", text="x")
    )

    assert error.response["error"] == "message_not_found"


async def test_response_url_sink_records_posts(slack: FakeSlack) -> None:
    webhook = AsyncWebhookClient(url=slack.response_url("status"))

    response = await webhook.send(text="All green", response_type="ephemeral")

    assert response.status_code == 200
    assert response.body == "ok"
    assert slack.responses("status") == [
        {"text": "All green", "response_type": "ephemeral"}
    ]


# Socket Mode.


async def test_socket_hello_envelope_ack_latency(slack: FakeSlack) -> None:
    web_client = AsyncWebClient(base_url=slack.base_url)
    socket_client = SocketModeClient(app_token=slack.app_token, web_client=web_client)

    async def acknowledge(client: Any, request: SocketModeRequest) -> None:
        response = SocketModeResponse(request.envelope_id, payload={"text": "hi"})
        await client.send_socket_mode_response(response)

    socket_client.socket_mode_request_listeners.append(acknowledge)
    try:
        await socket_client.connect()
        await slack.socket_mode.wait_connected()
        ack = await slack.socket_mode.send_envelope(
            "slash_commands", slash_command(response_url=slack.response_url("c"))
        )
    finally:
        await socket_client.close()

    assert slack.socket_mode.sent[0]["type"] == "hello"
    assert ack.payload == {"text": "hi"}
    assert 0 <= ack.latency < 3
    assert slack.calls_to("apps.connections.open")[0].token == slack.app_token


async def test_socket_disconnect_triggers_reconnect(slack: FakeSlack) -> None:
    web_client = AsyncWebClient(base_url=slack.base_url)
    socket_client = SocketModeClient(app_token=slack.app_token, web_client=web_client)
    try:
        await socket_client.connect()
        await slack.socket_mode.wait_connected()
        await slack.socket_mode.disconnect("refresh_requested")
        await slack.socket_mode.wait_connected(count=2)
        await slack.wait_for(lambda: slack.socket_mode.open_connections == 1)
    finally:
        await socket_client.close()

    assert len(slack.calls_to("apps.connections.open")) == 2


async def test_dropped_socket_reconnects(slack: FakeSlack) -> None:
    web_client = AsyncWebClient(base_url=slack.base_url)
    socket_client = SocketModeClient(
        app_token=slack.app_token, web_client=web_client, ping_interval=0.1
    )
    try:
        await socket_client.connect()
        await slack.socket_mode.wait_connected()
        await slack.socket_mode.drop_connections()
        await slack.socket_mode.wait_connected(count=2)
    finally:
        await socket_client.close()

    assert slack.socket_mode.connection_count == 2


async def test_connections_open_returns_hosted_url(slack: FakeSlack) -> None:
    client = AsyncWebClient(base_url=slack.base_url)

    response = await client.apps_connections_open(app_token=slack.app_token)

    assert response["url"].startswith(f"ws://127.0.0.1:{slack.port}/link?")


async def test_connections_open_returns_attached_url(slack: FakeSlack) -> None:
    client = AsyncWebClient(base_url=slack.base_url)
    async with FakeSocketMode() as standalone:
        slack.attach_socket_mode(standalone)
        response = await client.apps_connections_open(app_token=slack.app_token)

    assert response["url"].startswith(f"{standalone.url}?")


async def test_envelope_without_ack_times_out() -> None:
    async with FakeSocketMode() as socket_mode:
        socket_client = SocketModeClient(
            app_token="xapp-1-unused", web_client=AsyncWebClient(base_url="")
        )
        socket_client.wss_uri = socket_mode.url
        try:
            await socket_client.connect()
            await socket_mode.wait_connected()
            with pytest.raises(AckTimeoutError):
                await socket_mode.send_envelope("events_api", {}, timeout=0.2)
        finally:
            await socket_client.close()


async def test_send_envelope_without_client_raises(slack: FakeSlack) -> None:
    with pytest.raises(ConnectionError):
        await slack.socket_mode.send_envelope("events_api", {})


async def test_bolt_socket_mode_slash_command(slack: FakeSlack) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    )

    @app.command("/epmpulse")
    async def status(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack(f"checking {command['text']}")
        await respond("FCCS: green")

    handler = AsyncSocketModeHandler(app, slack.app_token)
    try:
        await handler.connect_async()
        await slack.socket_mode.wait_connected()
        ack = await slack.socket_mode.send_envelope(
            "slash_commands",
            slash_command("status FCCS", response_url=slack.response_url("cmd")),
        )
        await slack.wait_for(lambda: slack.responses("cmd"))
    finally:
        await handler.close_async()

    assert ack.payload is not None
    assert ack.payload["text"] == "checking status FCCS"
    assert slack.responses("cmd")[0]["text"] == "FCCS: green"


async def test_bolt_socket_mode_home_and_button(slack: FakeSlack) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    )
    clicks: list[str] = []

    @app.event("app_home_opened")
    async def home(client: AsyncWebClient, event: dict[str, Any]) -> None:
        view = {"type": "home", "blocks": [section("All jobs green")]}
        await client.views_publish(user_id=event["user"], view=view)

    @app.action("refresh")
    async def refresh(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        clicks.append(body["view"]["type"])

    handler = AsyncSocketModeHandler(app, slack.app_token)
    try:
        await handler.connect_async()
        await slack.socket_mode.wait_connected()
        await slack.socket_mode.send_envelope("events_api", app_home_opened())
        await slack.wait_for(lambda: slack.published_views(USER_ID))
        await slack.socket_mode.send_envelope("interactive", block_actions("refresh"))
        await slack.wait_for(lambda: clicks)
    finally:
        await handler.close_async()

    assert slack.published_views(USER_ID)[0]["type"] == "home"
    assert clicks == ["home"]


# HTTP mode helpers.


def test_signed_request_passes_signature_check() -> None:
    body = slash_command_body(slash_command("status", response_url="http://127.0.0.1/"))

    headers = signed_request(body, "s3cret")

    verifier = SignatureVerifier("s3cret")
    assert verifier.is_valid_request(body, headers)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"


async def test_bolt_accepts_signed_http_bodies(slack: FakeSlack) -> None:
    app = AsyncApp(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.base_url),
        signing_secret="s3cret",
    )
    seen: list[str] = []

    @app.command("/epmpulse")
    async def status(ack: Any, command: dict[str, Any]) -> None:
        await ack()
        seen.append(command["text"])

    @app.action("refresh")
    async def refresh(ack: Any) -> None:
        await ack()
        seen.append("refresh")

    @app.event("app_home_opened")
    async def home(event: dict[str, Any]) -> None:
        seen.append(event["tab"])

    command = slash_command("status", response_url=slack.response_url("http"))
    bodies = [
        slash_command_body(command),
        interactive_body(block_actions("refresh")),
        event_body(app_home_opened()),
    ]
    statuses = []
    for body in bodies:
        request = AsyncBoltRequest(
            body=body.decode(), headers=signed_request(body, "s3cret")
        )
        statuses.append((await app.async_dispatch(request)).status)
    await slack.wait_for(lambda: len(seen) == 3)

    assert statuses == [200, 200, 200]
    assert sorted(seen) == ["home", "refresh", "status"]


def test_signed_request_other_secret_invalid() -> None:
    body = event_body(app_home_opened())
    headers = signed_request(body, "other-secret")

    assert not SignatureVerifier("s3cret").is_valid_request(body, headers)


# Thread runner.


def test_thread_runner_serves_sync_client() -> None:
    with FakeSlack.in_thread() as slack:
        client = WebClient(token=slack.bot_token, base_url=slack.base_url)
        created = client.canvases_create(document_content=markdown("## Jobs"))
        client.canvases_access_set(
            canvas_id=created["canvas_id"],
            access_level="read",
            channel_ids=[MAIN_CHANNEL_ID],
        )
        markdown_seen = slack.wait_for_sync(
            lambda: slack.canvas_markdown(created["canvas_id"])
        )

    assert markdown_seen == "## Jobs"
    assert slack.calls_to("canvases.access.set")[0].params["channel_ids"] == (
        MAIN_CHANNEL_ID
    )


def test_thread_runner_socket_mode() -> None:
    with FakeSlack.in_thread() as slack:

        async def run_client() -> str:
            web_client = AsyncWebClient(base_url=slack.base_url)
            socket_client = SocketModeClient(
                app_token=slack.app_token, web_client=web_client
            )

            async def acknowledge(client: Any, request: SocketModeRequest) -> None:
                await client.send_socket_mode_response(
                    SocketModeResponse(request.envelope_id)
                )

            socket_client.socket_mode_request_listeners.append(acknowledge)
            try:
                await socket_client.connect()
                await asyncio.to_thread(slack.socket_mode.wait_connected_sync)
                ack = await asyncio.to_thread(
                    slack.socket_mode.send_envelope_sync,
                    "events_api",
                    app_home_opened(),
                )
            finally:
                await socket_client.close()
            return json.dumps(ack.message)

        ack_message = json.loads(asyncio.run(run_client()))

    assert set(ack_message) == {"envelope_id"}
