"""The App Home tab and its buttons through Socket Mode, service in this loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.service import Service
from canvas.home import ACTION_OPEN_CANVAS_PREFIX, ACTION_REFRESH, ACTION_SYNC
from tests.fakes.slack_api import MAX_HOME_BLOCKS, FakeSlack
from tests.fakes.slack_payloads import (
    MAIN_CHANNEL_ID,
    TEAM_ID,
    USER_ID,
    app_home_opened,
    block_actions,
)
from tests.slack_service import get_health, post, post_status, running_service

ACK_DEADLINE = 3.0


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def service(slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Service]:
    async with running_service(slack, tmp_path / "data", max_rows=1000) as running:
        yield running


def view_text(view: dict[str, Any]) -> str:
    texts = []
    for block in view["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        for element in block.get("elements", []):
            text = element.get("text")
            texts.append(text["text"] if isinstance(text, dict) else str(text))
    return "\n".join(texts)


async def open_home(slack: FakeSlack) -> dict[str, Any]:
    before = len(slack.published_views(USER_ID))
    ack = await slack.socket_mode.send_envelope("events_api", app_home_opened())
    assert ack.latency < ACK_DEADLINE
    await slack.wait_for(lambda: len(slack.published_views(USER_ID)) > before)
    return slack.published_views(USER_ID)[-1]


async def click(slack: FakeSlack, action_id: str) -> None:
    ack = await slack.socket_mode.send_envelope("interactive", block_actions(action_id))
    assert ack.latency < ACK_DEADLINE


async def test_opening_home_publishes_board(slack: FakeSlack, service: Service) -> None:
    await post_status(service, app="Planning", domain="Actual", status="Error")

    view = await open_home(slack)

    text = view_text(view)
    assert view["type"] == "home"
    assert text.startswith("EPM job status\nLast update")
    assert ":x: *Actual* · Error for" in text


async def test_messages_tab_is_ignored(slack: FakeSlack, service: Service) -> None:
    ack = await slack.socket_mode.send_envelope(
        "events_api", app_home_opened(tab="messages")
    )

    assert ack.latency < ACK_DEADLINE
    assert slack.published_views(USER_ID) == []


async def test_home_links_board_canvas(slack: FakeSlack, service: Service) -> None:
    # The link needs the canvas id, which the service stores after its first publish.
    await slack.wait_for(lambda: service.publishers["main"].publish_count)
    canvas_id = slack.channel_canvas(MAIN_CHANNEL_ID)

    view = await open_home(slack)

    actions = next(b for b in view["blocks"] if b["type"] == "actions")
    link = actions["elements"][2]
    assert link["action_id"] == ACTION_OPEN_CANVAS_PREFIX + "main"
    assert link["url"] == f"{slack.workspace_url}docs/{TEAM_ID}/{canvas_id}"


async def test_canvas_link_click_is_acknowledged(
    slack: FakeSlack, service: Service
) -> None:
    await click(slack, ACTION_OPEN_CANVAS_PREFIX + "main")


async def test_refresh_republishes_current_board(
    slack: FakeSlack, service: Service
) -> None:
    await open_home(slack)
    await post_status(service, app="FCCS", domain="Actual", status="OK")

    await click(slack, ACTION_REFRESH)

    await slack.wait_for(
        lambda: "*FCCS*" in view_text(slack.published_views(USER_ID)[-1])
    )


async def test_sync_publishes_canvases_then_shows_result(
    slack: FakeSlack, service: Service
) -> None:
    canvas_id = await slack.wait_for(lambda: slack.channel_canvas(MAIN_CHANNEL_ID))
    await open_home(slack)
    edits_before = len(slack.calls_to("canvases.edit"))

    await click(slack, ACTION_SYNC)

    final = await slack.wait_for(
        lambda: next(
            (
                view
                for view in slack.published_views(USER_ID)
                if "Canvases synced" in view_text(view)
            ),
            None,
        )
    )
    assert "Publishing every canvas now" in view_text(
        slack.published_views(USER_ID)[-2]
    )
    assert f"published to <{slack.canvas_url(canvas_id)}|{canvas_id}>" in view_text(
        final
    )
    assert len(slack.calls_to("canvases.edit")) > edits_before


async def test_open_home_tab_follows_board_changes(
    slack: FakeSlack, service: Service
) -> None:
    await open_home(slack)

    await post_status(service, app="ARCS", domain="Rates", status="Loading")

    await slack.wait_for(
        lambda: "*ARCS*" in view_text(slack.published_views(USER_ID)[-1])
    )


async def test_board_over_home_limits_is_summarised(
    slack: FakeSlack, service: Service
) -> None:
    for batch in range(6):
        updates = [
            {
                "app": f"App{batch}{number:02d}",
                "domain": "Actual",
                "status": "Error" if number % 4 == 0 else "OK",
                "message": "rejected rows " * 10,
            }
            for number in range(100)
        ]
        status, answer = await post(
            service, "/api/v1/status/batch", {"updates": updates}
        )
        assert status == 200, answer

    view = await open_home(slack)

    published = slack.calls_to("views.publish")[-1]
    assert published.ok
    assert len(view["blocks"]) <= MAX_HOME_BLOCKS
    assert "too large for the Home tab" in view_text(view)


async def test_rejected_view_shows_in_health_but_stays_healthy(
    slack: FakeSlack, service: Service
) -> None:
    slack.fail("views.publish", "internal_error", times=None)

    ack = await slack.socket_mode.send_envelope("events_api", app_home_opened())
    await slack.wait_for(lambda: slack.calls_to("views.publish"))
    for _ in range(100):
        status, health = await get_health(service)
        if health["checks"]["slack_home"] != "ok":
            break
        await asyncio.sleep(0.01)

    assert ack.latency < ACK_DEADLINE
    assert status == 200
    assert health["checks"]["slack_home"] == "views.publish: internal_error"
