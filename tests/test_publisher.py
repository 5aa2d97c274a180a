"""The board publisher: throttling, one publish in flight, retries, last state."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from canvas.publisher import BoardPublisher, PublishError
from canvas.targets import FileTarget, SlackCanvasTarget
from store.waiting import wait_event
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID

WINDOW = 0.2
# Scheduling slack for a shared machine: a timer may fire this much late.
SLACK = 0.1


class RecordingTarget:
    """A publish target that records what it got, and fails on request."""

    description = "recording target"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.published: list[str] = []
        self.starts: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.errors: list[Exception] = []

    async def publish(self, markdown: str) -> str:
        self.starts.append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.errors:
                raise self.errors.pop(0)
        finally:
            self.in_flight -= 1
        self.published.append(markdown)
        return "recorded"


class State:
    def __init__(self) -> None:
        self.value = 0

    def render(self) -> str:
        return f"state {self.value}"


@pytest.fixture
def state() -> State:
    return State()


@pytest.fixture
def target() -> RecordingTarget:
    return RecordingTarget()


@pytest.fixture
async def publisher(state: State, target: RecordingTarget) -> Any:
    created = BoardPublisher("main", state.render, target, WINDOW)
    yield created
    await created.close()


async def wait_until(condition: Any, timeout: float = 2.0) -> None:
    # Polling, because the conditions read state (a fake's canvas, a list) that
    # signals no event.
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_first_change_is_published_at_once(
    publisher: BoardPublisher, target: RecordingTarget, state: State
) -> None:
    started = time.monotonic()
    state.value = 1

    publisher.notify()
    await wait_until(lambda: target.published)

    assert target.published == ["state 1"]
    assert target.starts[0] - started < SLACK


async def test_stream_is_throttled_and_ends_on_last_state(
    state: State, target: RecordingTarget
) -> None:
    target.delay = 0.05
    publisher = BoardPublisher("main", state.render, target, WINDOW)
    started = time.monotonic()

    while time.monotonic() - started < 1.0:
        state.value += 1
        publisher.notify()
        await asyncio.sleep(0.01)
    await wait_until(lambda: not publisher.pending)
    await publisher.close()

    gaps = [b - a for a, b in zip(target.starts, target.starts[1:], strict=False)]
    assert target.published[-1] == f"state {state.value}"
    assert len(target.published) <= 1.0 / WINDOW + 2
    assert len(target.published) >= 3
    assert min(gaps) >= WINDOW - 0.01
    assert target.max_in_flight == 1


async def test_publish_gap_stays_within_window(
    state: State, target: RecordingTarget
) -> None:
    publisher = BoardPublisher("main", state.render, target, WINDOW)
    started = time.monotonic()

    while time.monotonic() - started < 1.0:
        state.value += 1
        publisher.notify()
        await asyncio.sleep(0.02)
    await wait_until(lambda: not publisher.pending)
    await publisher.close()

    gaps = [b - a for a, b in zip(target.starts, target.starts[1:], strict=False)]
    assert max(gaps) <= WINDOW + SLACK


async def test_slow_publish_is_never_doubled(
    state: State, target: RecordingTarget
) -> None:
    target.delay = WINDOW * 2
    publisher = BoardPublisher("main", state.render, target, WINDOW)

    for _ in range(5):
        state.value += 1
        publisher.notify()
        await asyncio.sleep(WINDOW / 2)
    await wait_until(lambda: not publisher.pending, timeout=5)
    await publisher.close()

    assert target.max_in_flight == 1
    assert target.published[-1] == "state 5"


async def test_quiet_board_is_not_republished(
    publisher: BoardPublisher, target: RecordingTarget
) -> None:
    publisher.notify()
    await wait_until(lambda: not publisher.pending)
    await asyncio.sleep(WINDOW + SLACK)

    assert len(target.published) == 1


async def test_failed_publish_honours_retry_after(
    publisher: BoardPublisher, target: RecordingTarget, state: State
) -> None:
    target.errors = [PublishError("ratelimited", retry_after=0.3)]
    state.value = 7

    publisher.notify()
    await wait_until(lambda: target.published)

    assert target.published == ["state 7"]
    assert target.starts[1] - target.starts[0] >= 0.3
    assert publisher.last_error is None
    assert publisher.failing_since is None


async def test_failure_state_is_visible_until_success(
    publisher: BoardPublisher, target: RecordingTarget
) -> None:
    target.errors = [PublishError("canvas_editing_locked", retry_after=0.3)]

    publisher.notify()
    await wait_until(lambda: len(target.starts) == 1)
    await asyncio.sleep(0.05)

    assert publisher.last_error == "canvas_editing_locked"
    assert publisher.failing_since is not None


async def test_backoff_doubles_without_retry_after(
    publisher: BoardPublisher,
    target: RecordingTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delays: list[float] = []

    # Backoffs are recorded and skipped, and the short waits for the window run.
    async def recording_wait(event: asyncio.Event, timeout: float) -> bool:
        if timeout < 1:
            return await wait_event(event, timeout)
        delays.append(timeout)
        return False

    monkeypatch.setattr(random, "random", lambda: 0.0)
    monkeypatch.setattr("canvas.publisher.wait_event", recording_wait)
    target.errors = [PublishError("HTTP 500"), PublishError("HTTP 500")]
    target.errors.append(RuntimeError("unexpected"))

    publisher.notify()
    await wait_until(lambda: target.published)

    assert delays == [2.0, 4.0, 8.0]


async def test_publish_now_skips_window(state: State, target: RecordingTarget) -> None:
    publisher = BoardPublisher("main", state.render, target, window=30)
    publisher.notify()
    await wait_until(lambda: target.published)
    state.value = 2
    publisher.notify()
    started = time.monotonic()

    result = await publisher.publish_now(timeout=5)
    await publisher.close()

    assert result.ok is True
    assert result.where == "recorded"
    assert target.published[-1] == "state 2"
    assert time.monotonic() - started < 1


async def test_publish_now_reports_failure(
    publisher: BoardPublisher, target: RecordingTarget
) -> None:
    target.errors = [PublishError("invalid_auth", retry_after=5)]

    result = await publisher.publish_now(timeout=2)

    assert result.ok is False
    assert result.error == "invalid_auth"


async def test_publish_now_ends_failure_backoff(
    publisher: BoardPublisher, target: RecordingTarget, state: State
) -> None:
    # Without Retry-After the first backoff is 2 s, the next ones longer.
    target.errors = [PublishError("HTTP 500")]
    publisher.notify()
    await wait_until(lambda: publisher.last_error)
    state.value = 4
    started = time.monotonic()

    result = await publisher.publish_now(timeout=5)

    assert result.ok is True
    assert target.published == ["state 4"]
    assert time.monotonic() - started < 1


async def test_publish_now_during_attempt_skips_backoff(
    publisher: BoardPublisher, target: RecordingTarget
) -> None:
    target.delay = 0.1
    target.errors = [PublishError("HTTP 500")]
    publisher.notify()
    await wait_until(lambda: target.in_flight)
    started = time.monotonic()

    result = await publisher.publish_now(timeout=5)
    await wait_until(lambda: target.published, timeout=1)

    assert result.ok is False
    assert result.error == "HTTP 500"
    assert len(target.starts) == 2
    assert target.starts[1] - started < 1


async def test_publish_now_waits_out_retry_after(
    publisher: BoardPublisher, target: RecordingTarget, state: State
) -> None:
    target.errors = [PublishError("ratelimited", retry_after=0.5)]
    publisher.notify()
    await wait_until(lambda: publisher.last_error)
    state.value = 5

    result = await publisher.publish_now(timeout=5)

    assert result.ok is True
    assert target.published == ["state 5"]
    assert len(target.starts) == 2
    assert target.starts[1] - target.starts[0] >= 0.5


async def test_publish_now_fails_fast_on_long_retry_after(
    publisher: BoardPublisher, target: RecordingTarget
) -> None:
    target.errors = [PublishError("ratelimited", retry_after=30)]
    publisher.notify()
    await wait_until(lambda: publisher.last_error)
    started = time.monotonic()

    result = await publisher.publish_now(timeout=2)

    assert time.monotonic() - started < 0.5
    assert result.ok is False
    assert result.error is not None
    assert result.error.startswith("ratelimited (retrying in ")
    assert result.error.endswith(" s, as Slack requested)")
    assert len(target.starts) == 1


async def test_flush_ends_failure_backoff(
    publisher: BoardPublisher, target: RecordingTarget, state: State
) -> None:
    target.errors = [PublishError("HTTP 500")]
    publisher.notify()
    await wait_until(lambda: publisher.last_error)
    state.value = 6

    flushed = await publisher.flush(timeout=1)

    assert flushed is True
    assert target.published == ["state 6"]


async def test_flush_waits_for_last_publish(
    state: State, target: RecordingTarget
) -> None:
    target.delay = 0.05
    publisher = BoardPublisher("main", state.render, target, window=30)
    publisher.notify()
    await wait_until(lambda: target.published)
    state.value = 3
    publisher.notify()

    flushed = await publisher.flush(timeout=5)
    await publisher.close()

    assert flushed is True
    assert target.published[-1] == "state 3"
    assert publisher.pending is False


async def test_flush_gives_up_after_timeout(
    publisher: BoardPublisher, target: RecordingTarget
) -> None:
    target.errors = [PublishError("down", retry_after=10)]
    publisher.notify()
    await wait_until(lambda: target.starts)

    flushed = await publisher.flush(timeout=0.2)

    assert flushed is False


async def test_flush_of_idle_publisher_returns_at_once(
    publisher: BoardPublisher,
) -> None:
    assert await publisher.flush(timeout=0.01) is True


async def test_on_publish_reports_success_and_failure(
    state: State, target: RecordingTarget
) -> None:
    reports: list[tuple[str, bool]] = []
    target.errors = [PublishError("ratelimited", retry_after=0.05)]
    publisher = BoardPublisher(
        "arcs",
        state.render,
        target,
        WINDOW,
        on_publish=lambda board, ok, seconds: reports.append((board, ok)),
    )

    publisher.notify()
    await wait_until(lambda: target.published)
    await publisher.close()

    assert reports == [("arcs", False), ("arcs", True)]


class MemoryMeta:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get_meta(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def set_meta(self, key: str, value: Any) -> None:
        self.values[key] = value


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def canvas_target(
    slack: FakeSlack, meta: MemoryMeta, canvas_id: str | None = None
) -> SlackCanvasTarget:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    return SlackCanvasTarget(
        client,
        "main",
        meta,
        channel_id=MAIN_CHANNEL_ID,
        canvas_id=canvas_id,
        title="EPM status",
    )


async def test_slack_target_creates_channel_canvas_once(slack: FakeSlack) -> None:
    meta = MemoryMeta()
    target = canvas_target(slack, meta)

    first = await target.publish("**EPM job status** · one")
    second = await target.publish("**EPM job status** · two")

    assert first == second
    assert meta.values == {"canvas_id:main": first}
    assert len(slack.calls_to("conversations.canvases.create")) == 1
    assert len(slack.calls_to("canvases.edit")) == 1
    assert slack.canvas_markdown(first).strip() == "**EPM job status** · two"


async def test_slack_target_passes_retry_after(slack: FakeSlack) -> None:
    target = canvas_target(slack, MemoryMeta(), canvas_id=None)
    canvas_id = await target.publish("one")
    slack.ratelimit("canvases.edit", retry_after=3)

    with pytest.raises(PublishError) as caught:
        await target.publish("two")

    assert caught.value.retry_after == 3
    assert canvas_id in str(caught.value)


async def test_slack_target_retries_locked_canvas_soon(slack: FakeSlack) -> None:
    target = canvas_target(slack, MemoryMeta())
    await target.publish("one")
    slack.fail("canvases.edit", "canvas_editing_locked")

    with pytest.raises(PublishError) as caught:
        await target.publish("two")

    assert caught.value.retry_after == 1.0


async def test_slack_target_names_fix_for_bad_token(slack: FakeSlack) -> None:
    meta = MemoryMeta()
    target = canvas_target(slack, meta)
    target.client.token = "xoxb-not-a-valid-token"

    with pytest.raises(PublishError) as caught:
        await target.publish("one")

    assert "invalid_auth" in str(caught.value)
    assert "SLACK_BOT_TOKEN" in str(caught.value)
    assert "xoxb-not-a-valid-token" not in str(caught.value)


async def test_slack_target_fails_on_server_error(
    slack: FakeSlack,
) -> None:
    target = canvas_target(slack, MemoryMeta())
    await target.publish("one")
    slack.server_error("canvases.edit", status=503)

    with pytest.raises(PublishError, match="503"):
        await target.publish("two")


async def test_publisher_recovers_after_slack_rate_limit(slack: FakeSlack) -> None:
    state = State()
    target = canvas_target(slack, MemoryMeta())
    publisher = BoardPublisher("main", state.render, target, WINDOW)
    publisher.notify()
    await wait_until(lambda: slack.calls_to("conversations.canvases.create"))
    canvas_id = slack.channel_canvas(MAIN_CHANNEL_ID)
    assert canvas_id is not None
    slack.ratelimit("canvases.edit", retry_after=1)
    state.value = 9
    started = time.monotonic()

    publisher.notify()
    await wait_until(lambda: "state 9" in slack.canvas_markdown(canvas_id), timeout=5)
    await publisher.close()

    assert time.monotonic() - started >= 1.0
    assert len(slack.calls_to("canvases.edit")) == 2


async def test_publish_now_honours_slack_retry_after(slack: FakeSlack) -> None:
    state = State()
    target = canvas_target(slack, MemoryMeta())
    publisher = BoardPublisher("main", state.render, target, WINDOW)
    publisher.notify()
    await wait_until(lambda: slack.calls_to("conversations.canvases.create"))
    canvas_id = slack.channel_canvas(MAIN_CHANNEL_ID)
    assert canvas_id is not None
    slack.ratelimit("canvases.edit", retry_after=1)
    publisher.notify()
    await wait_until(lambda: publisher.last_error)
    limited_at = time.monotonic()
    state.value = 8

    result = await publisher.publish_now(timeout=5)
    await publisher.close()

    assert result.ok is True
    assert time.monotonic() - limited_at >= 0.9
    assert len(slack.calls_to("canvases.edit")) == 2
    assert "state 8" in slack.canvas_markdown(canvas_id)


async def test_file_target_replaces_file(tmp_path: Path) -> None:
    path = tmp_path / "canvas" / "main.md"

    async def run_io(func: Any) -> Any:
        return await asyncio.to_thread(func)

    target = FileTarget(path, run_io)

    await target.publish("one\n")
    where = await target.publish("two\n")

    assert where == str(path)
    assert path.read_text(encoding="utf-8") == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["main.md"]
