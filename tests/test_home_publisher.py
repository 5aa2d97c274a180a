"""HomePublisher against the fake Slack: visits, republish rounds, errors, rate."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from canvas.home_publisher import HomePublisher, HomePublishError, RateLimiter
from tests.fakes.slack_api import FakeSlack

WINDOW = 0.05


class Board:
    """A stand-in for the board: a version number that the views show."""

    def __init__(self) -> None:
        self.version = 0
        self.renders = 0

    def render(self, notice: str | None) -> dict[str, Any]:
        self.renders += 1
        blocks = [section(f"version {self.version}")]
        if notice:
            blocks.append(section(notice))
        return {"type": "home", "blocks": blocks}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def shown(slack: FakeSlack, user: str) -> list[str]:
    views = slack.published_views(user)
    return [b["text"]["text"] for b in views[-1]["blocks"]] if views else []


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def board() -> Board:
    return Board()


@pytest.fixture
async def home(slack: FakeSlack, board: Board) -> AsyncIterator[HomePublisher]:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    publisher = HomePublisher(client, board.render, WINDOW)
    yield publisher
    await publisher.close()


async def test_publish_sends_view_for_user(
    slack: FakeSlack, home: HomePublisher
) -> None:
    await home.publish("U0AAA0001")

    assert shown(slack, "U0AAA0001") == ["version 0"]
    assert home.publish_count == 1


async def test_notify_republishes_recent_visitors(
    slack: FakeSlack, home: HomePublisher, board: Board
) -> None:
    home.opened("U0AAA0001")
    home.opened("U0AAA0002")

    board.version = 1
    home.notify()

    await slack.wait_for(lambda: shown(slack, "U0AAA0002") == ["version 1"])
    await slack.wait_for(lambda: shown(slack, "U0AAA0001") == ["version 1"])


async def test_notify_without_visitors_publishes_nothing(
    slack: FakeSlack, home: HomePublisher
) -> None:
    home.notify()
    await asyncio.sleep(WINDOW * 3)

    assert slack.calls_to("views.publish") == []


async def test_burst_of_changes_collapses_into_one_round(
    slack: FakeSlack, home: HomePublisher, board: Board
) -> None:
    home.opened("U0AAA0001")
    for version in range(1, 21):
        board.version = version
        home.notify()

    await slack.wait_for(lambda: shown(slack, "U0AAA0001") == ["version 20"])
    await asyncio.sleep(WINDOW * 3)

    assert len(slack.calls_to("views.publish")) == 1


async def test_change_during_round_is_published_after_it(
    slack: FakeSlack, home: HomePublisher, board: Board
) -> None:
    home.opened("U0AAA0001")
    slack.hang("views.publish", 0.2)
    board.version = 1
    home.notify()
    await slack.wait_for(lambda: slack.calls_to("views.publish"))

    board.version = 2
    home.notify()

    await slack.wait_for(lambda: shown(slack, "U0AAA0001") == ["version 2"])


async def test_old_visits_are_not_republished(slack: FakeSlack, board: Board) -> None:
    now = [1000.0]
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    home = HomePublisher(
        client, board.render, WINDOW, recent_seconds=60, clock=lambda: now[0]
    )
    home.opened("U0AAA0001")
    now[0] += 30
    home.opened("U0AAA0002")
    now[0] += 40

    assert home.recent_users == ["U0AAA0002"]
    home.notify()
    await slack.wait_for(lambda: slack.published_views("U0AAA0002"))
    await home.close()

    assert slack.published_views("U0AAA0001") == []


async def test_oldest_visitor_dropped_over_max_users(
    slack: FakeSlack, board: Board
) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    home = HomePublisher(client, board.render, WINDOW, max_users=2)

    for user in ("U0AAA0001", "U0AAA0002", "U0AAA0003"):
        home.opened(user)

    assert home.recent_users == ["U0AAA0003", "U0AAA0002"]


async def test_notice_stays_on_that_users_tab(
    slack: FakeSlack, home: HomePublisher, board: Board
) -> None:
    home.opened("U0AAA0001")
    home.opened("U0AAA0002")
    await home.publish("U0AAA0001", notice="synced")

    board.version = 1
    home.notify()

    await slack.wait_for(lambda: shown(slack, "U0AAA0002") == ["version 1"])
    await slack.wait_for(lambda: shown(slack, "U0AAA0001") == ["version 1", "synced"])


async def test_publish_raises_when_slack_rejects_view(
    slack: FakeSlack, home: HomePublisher
) -> None:
    slack.fail("views.publish", "invalid_arguments")

    with pytest.raises(HomePublishError, match="invalid_arguments"):
        await home.publish("U0AAA0001")
    assert home.last_error == "views.publish: invalid_arguments"


async def test_rejected_user_is_forgotten(
    slack: FakeSlack, home: HomePublisher, caplog: pytest.LogCaptureFixture
) -> None:
    home.opened("U0AAA0001")
    slack.fail("views.publish", "user_not_found")

    home.notify()
    await slack.wait_for(lambda: "U0AAA0001" not in home.recent_users)

    assert "user_not_found" in caplog.text


async def test_home_tab_turned_off_forgets_every_visitor(
    slack: FakeSlack, home: HomePublisher, caplog: pytest.LogCaptureFixture
) -> None:
    home.opened("U0AAA0001")
    home.opened("U0AAA0002")
    slack.fail("views.publish", "not_enabled")

    with caplog.at_level(logging.ERROR):
        home.notify()
        await slack.wait_for(lambda: not home.recent_users)

    assert "Home Tab" in caplog.text


async def test_rate_limited_round_resumes_after_retry_after(
    slack: FakeSlack, home: HomePublisher, board: Board
) -> None:
    home.opened("U0AAA0001")
    slack.ratelimit("views.publish", retry_after=1)
    board.version = 1
    started = time.monotonic()

    home.notify()
    await slack.wait_for(lambda: home.last_error == "views.publish: ratelimited")
    await slack.wait_for(lambda: home.publish_count == 1)

    assert time.monotonic() - started >= 1.0
    assert shown(slack, "U0AAA0001") == ["version 1"]
    assert home.last_error is None


async def test_visit_ends_round_pause_after_server_error(
    slack: FakeSlack, home: HomePublisher, board: Board
) -> None:
    home.opened("U0AAA0001")
    home.opened("U0AAA0002")
    # Without Retry-After the round pauses RETRY_SECONDS (30 s).
    slack.server_error("views.publish", status=503)
    board.version = 1
    home.notify()
    await slack.wait_for(lambda: home.last_error is not None)
    started = time.monotonic()

    await home.publish("U0AAA0001")
    await slack.wait_for(lambda: shown(slack, "U0AAA0002") == ["version 1"])

    assert time.monotonic() - started < 1
    assert shown(slack, "U0AAA0001") == ["version 1"]


async def test_visit_does_not_end_retry_after_pause(
    slack: FakeSlack, home: HomePublisher, board: Board
) -> None:
    home.opened("U0AAA0001")
    home.opened("U0AAA0002")
    slack.ratelimit("views.publish", retry_after=1)
    board.version = 1
    started = time.monotonic()
    home.notify()
    await slack.wait_for(lambda: home.last_error == "views.publish: ratelimited")

    await home.publish("U0AAA0001")
    await slack.wait_for(lambda: shown(slack, "U0AAA0002") == ["version 1"])

    assert time.monotonic() - started >= 1.0
    assert len(slack.calls_to("views.publish")) == 3


async def test_rate_limiter_spaces_calls_after_burst() -> None:
    limiter = RateLimiter(per_minute=600, burst=1)
    started = time.monotonic()

    for _ in range(3):
        await limiter.acquire()

    assert time.monotonic() - started >= 0.19


def test_rate_limiter_consume_goes_into_debt() -> None:
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])

    for _ in range(3):
        limiter.consume()

    assert limiter.tokens == -1
    now[0] += 2
    limiter.consume()
    assert limiter.tokens == 0
