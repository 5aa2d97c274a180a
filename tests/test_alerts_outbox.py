"""The durable outbox against the fake Slack Web API: pacing, 429s, 5xx,
settings errors, dropped items, coalescing, restarts and the local alerts log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from alerts.component import STATE_KEY, StateSaver
from alerts.outbox import Outbox
from alerts.render import AlertMessage
from alerts.senders import AlertLogSender, SlackSender
from store.store import StatusStore
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import ARCS_CHANNEL_ID, MAIN_CHANNEL_ID


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def sender_for(slack: FakeSlack) -> SlackSender:
    client = AsyncWebClient(
        token=slack.bot_token, base_url=slack.base_url, retry_handlers=[]
    )
    return SlackSender(client)


@pytest.fixture
async def outboxes(slack: FakeSlack) -> AsyncIterator[list[Outbox]]:
    created: list[Outbox] = []
    yield created
    for outbox in created:
        await outbox.stop()


def make_outbox(slack: FakeSlack, outboxes: list[Outbox], **options: Any) -> Outbox:
    options.setdefault("max_backoff", 0.1)
    outbox = Outbox(sender_for(slack), **options)
    outboxes.append(outbox)
    return outbox


def text(value: str) -> AlertMessage:
    return AlertMessage(
        value, [{"type": "section", "text": {"type": "mrkdwn", "text": value}}]
    )


def post_times(slack: FakeSlack) -> list[float]:
    return [call.timestamp for call in slack.calls_to("chat.postMessage")]


# --- delivery ------------------------------------------------------------------


async def test_post_reply_and_update_reach_slack(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    outbox = make_outbox(slack, outboxes, min_interval=0.05)
    await outbox.start()

    outbox.live_messages = lambda: {"m1"}

    outbox.post(MAIN_CHANNEL_ID, "m1", text("parent"))
    assert await outbox.drain(5)
    outbox.reply("m1", "m2", text("reply"))
    outbox.update("m1", text("parent, edited"))
    assert await outbox.drain(5)

    messages = slack.messages(MAIN_CHANNEL_ID)
    assert len(messages) == 1
    assert messages[0].text == "parent, edited"
    assert [reply.text for reply in messages[0].replies] == ["reply"]
    assert len(messages[0].edits) == 1


async def test_one_call_per_second_per_channel(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    outbox = make_outbox(slack, outboxes)
    await outbox.start()

    outbox.post(MAIN_CHANNEL_ID, "m1", text("one"))
    outbox.post(MAIN_CHANNEL_ID, "m2", text("two"))
    outbox.post(ARCS_CHANNEL_ID, "m3", text("other channel"))
    assert await outbox.drain(5)

    main = [
        c.timestamp
        for c in slack.calls_to("chat.postMessage")
        if c.params["channel"] == MAIN_CHANNEL_ID
    ]
    arcs = [
        c.timestamp
        for c in slack.calls_to("chat.postMessage")
        if c.params["channel"] == ARCS_CHANNEL_ID
    ]
    assert main[1] - main[0] >= 0.95
    assert arcs[0] - main[0] < 0.5


async def test_ratelimit_waits_retry_after_and_loses_nothing(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    slack.ratelimit("chat.postMessage", retry_after=1)
    outbox = make_outbox(slack, outboxes, min_interval=0.05)
    await outbox.start()

    outbox.post(MAIN_CHANNEL_ID, "m1", text("first"))
    outbox.post(MAIN_CHANNEL_ID, "m2", text("second"))
    assert await outbox.drain(5)

    times = post_times(slack)
    statuses = [call.status for call in slack.calls_to("chat.postMessage")]
    assert statuses == [429, 200, 200]
    assert times[1] - times[0] >= 1.0
    assert [m.text for m in slack.messages(MAIN_CHANNEL_ID)] == ["first", "second"]


async def test_server_error_is_retried(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    slack.server_error("chat.postMessage", status=503, times=2)
    outbox = make_outbox(slack, outboxes)
    await outbox.start()

    outbox.post(MAIN_CHANNEL_ID, "m1", text("after an outage"))
    assert await outbox.drain(5)

    assert len(slack.calls_to("chat.postMessage")) == 3
    assert [m.text for m in slack.messages(MAIN_CHANNEL_ID)] == ["after an outage"]


async def test_dropped_connection_is_retried(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    slack.drop_connection("chat.postMessage")
    outbox = make_outbox(slack, outboxes)
    await outbox.start()

    outbox.post(MAIN_CHANNEL_ID, "m1", text("after a drop"))
    assert await outbox.drain(5)

    assert [m.text for m in slack.messages(MAIN_CHANNEL_ID)] == ["after a drop"]


async def test_setting_error_keeps_message_until_fixed(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    slack.set_member(MAIN_CHANNEL_ID, False)
    outbox = make_outbox(slack, outboxes)
    await outbox.start()

    outbox.post(MAIN_CHANNEL_ID, "m1", text("waits for the invite"))
    await slack.wait_for(lambda: slack.calls_to("chat.postMessage"))
    await asyncio.sleep(0.05)
    status = outbox.status()
    slack.set_member(MAIN_CHANNEL_ID, True)
    assert await outbox.drain(5)

    assert status.pending == 1
    assert status.failing_since is not None
    assert status.fix is not None and "invite the bot" in status.fix
    assert [m.text for m in slack.messages(MAIN_CHANNEL_ID)] == ["waits for the invite"]


async def test_failing_queue_reports_in_health(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    slack.server_error("chat.postMessage", times=None)
    outbox = make_outbox(slack, outboxes, max_backoff=5)
    await outbox.start()

    outbox.post(MAIN_CHANNEL_ID, "m1", text("stuck"))
    await slack.wait_for(lambda: slack.calls_to("chat.postMessage"))
    await asyncio.sleep(0.05)

    assert outbox.health().startswith("failing: 1 message(s) queued")
    assert "HTTP 500" in outbox.health()


async def test_invalid_message_is_dropped_with_its_thread(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    outbox = make_outbox(slack, outboxes, min_interval=0.05)
    await outbox.start()
    broken = AlertMessage("broken", [{"type": "section"}])

    outbox.post(MAIN_CHANNEL_ID, "m1", broken)
    outbox.reply("m1", "m2", text("reply to the broken one"))
    outbox.post(MAIN_CHANNEL_ID, "m3", text("next alert"))
    assert await outbox.drain(5)

    assert [m.text for m in slack.messages(MAIN_CHANNEL_ID)] == ["next alert"]
    assert slack.orphan_replies == []
    assert len(slack.calls_to("chat.postMessage")) == 2


async def test_edit_of_queued_post_rewrites_it(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    outbox = make_outbox(slack, outboxes, min_interval=0.05)

    outbox.post(MAIN_CHANNEL_ID, "m1", text("old"))
    outbox.update("m1", text("new"))
    await outbox.start()
    assert await outbox.drain(5)

    assert [m.text for m in slack.messages(MAIN_CHANNEL_ID)] == ["new"]
    assert slack.calls_to("chat.update") == []


async def test_edits_of_queued_update_collapse(
    slack: FakeSlack, outboxes: list[Outbox]
) -> None:
    outbox = make_outbox(slack, outboxes, min_interval=0.05)
    outbox.live_messages = lambda: {"m1"}
    await outbox.start()
    outbox.post(MAIN_CHANNEL_ID, "m1", text("v1"))
    assert await outbox.drain(5)
    await outbox.stop()

    for version in ("v2", "v3", "v4"):
        outbox.update("m1", text(version))
    await outbox.start()
    assert await outbox.drain(5)

    assert len(slack.calls_to("chat.update")) == 1
    assert slack.messages(MAIN_CHANNEL_ID)[0].text == "v4"


# --- restarts ------------------------------------------------------------------


async def open_store(path: Path) -> StatusStore:
    store = StatusStore(path)
    await store.open()
    return store


async def test_restart_sends_queued_messages_once(
    slack: FakeSlack, outboxes: list[Outbox], tmp_path: Path
) -> None:
    slack.server_error("chat.postMessage", times=None)
    store = await open_store(tmp_path)
    outbox = make_outbox(slack, outboxes, max_backoff=5)
    saver = StateSaver(store, lambda: {"outbox": outbox.to_json()})
    outbox.on_change = saver.mark_dirty
    await outbox.start()
    outbox.post(MAIN_CHANNEL_ID, "m1", text("parent"))
    outbox.reply("m1", "m2", text("reply"))
    outbox.update("m1", text("parent, edited"))
    await slack.wait_for(lambda: slack.calls_to("chat.postMessage"))
    await outbox.stop()
    await saver.flush(5)
    await store.close()

    slack.clear_faults()
    store = await open_store(tmp_path)
    again = make_outbox(slack, outboxes, min_interval=0.05)
    again.load(store.get_meta(STATE_KEY)["outbox"])
    await again.start()
    assert await again.drain(5)
    await store.close()

    messages = slack.messages(MAIN_CHANNEL_ID)
    assert len(messages) == 1
    assert messages[0].text == "parent, edited"
    assert [reply.text for reply in messages[0].replies] == ["reply"]


async def test_thread_continues_after_restart(
    slack: FakeSlack, outboxes: list[Outbox], tmp_path: Path
) -> None:
    store = await open_store(tmp_path)
    outbox = make_outbox(slack, outboxes, min_interval=0.05)
    saver = StateSaver(store, lambda: {"outbox": outbox.to_json()})
    outbox.on_change = saver.mark_dirty
    outbox.live_messages = lambda: {"m1"}
    await outbox.start()
    outbox.post(MAIN_CHANNEL_ID, "m1", text("parent"))
    assert await outbox.drain(5)
    await outbox.stop()
    await saver.flush(5)
    await store.close()

    store = await open_store(tmp_path)
    again = make_outbox(slack, outboxes, min_interval=0.05)
    again.load(store.get_meta(STATE_KEY)["outbox"])
    await again.start()
    again.reply("m1", "m2", text("after the restart"))
    again.update("m1", text("parent, edited"))
    assert await again.drain(5)
    await store.close()

    messages = slack.messages(MAIN_CHANNEL_ID)
    assert len(messages) == 1
    assert [reply.text for reply in messages[0].replies] == ["after the restart"]
    assert messages[0].text == "parent, edited"


# --- local mode ----------------------------------------------------------------


async def test_alert_log_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts.log"
    outbox = Outbox(AlertLogSender(path, asyncio.to_thread), min_interval=0)
    outbox.live_messages = lambda: {"m1"}
    await outbox.start()

    outbox.post("main", "m1", text("parent"))
    assert await outbox.drain(5)
    outbox.reply("m1", "m2", text("reply"))
    outbox.update("m1", text("edited"))
    assert await outbox.drain(5)
    await outbox.stop()

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["action"] for line in lines] == ["post", "reply", "update"]
    assert lines[1]["thread_ts"] == lines[0]["ts"]
    assert lines[2]["ts"] == lines[0]["ts"]
    assert lines[2]["text"] == "edited"
    assert lines[0]["channel"] == "main"


async def test_alert_log_ts_increase(tmp_path: Path) -> None:
    sender = AlertLogSender(tmp_path / "alerts.log", asyncio.to_thread)

    first = await sender.post("main", "a", None, None)
    second = await sender.post("main", "b", None, None)

    assert float(second) > float(first)
