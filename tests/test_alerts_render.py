"""Alert renderers: Slack's Block Kit limits, headlines and escaping."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alerts.render import (
    MAX_SECTION_CHARS,
    render_admin,
    render_change_reply,
    render_flapping_notice,
    render_group,
)
from alerts.state import Group, Line
from tests.fakes.slack_api import MAX_MESSAGE_BLOCKS, check_blocks

NOW = datetime(2025, 7, 1, 14, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def line(domain: str = "Actual", status: str = "Error", **extra: object) -> Line:
    values: dict[str, object] = {
        "app": "Planning",
        "domain": domain,
        "status": status,
        "job_id": "42",
        "message": "Load failed",
        "at": NOW.isoformat(),
        "since": NOW.isoformat(),
    }
    values.update(extra)
    return Line(**values)  # type: ignore[arg-type]


def group(*lines: Line) -> Group:
    return Group(
        id="m1",
        channel="C1",
        board="main",
        opened_at=NOW.isoformat(),
        last_added_at=NOW.isoformat(),
        lines=list(lines),
    )


def test_single_failure_headline_and_zone() -> None:
    message = render_group(group(line()), tz=NEW_YORK, now=NOW, link=None)

    assert message.text.startswith(":x: EPM job failed: Planning · Actual")
    assert "10:00 EDT" in message.text


def test_link_goes_in_context() -> None:
    message = render_group(
        group(line()), tz=UTC, now=NOW, link="https://acme.slack.test/docs/T1/F1"
    )

    assert message.blocks is not None
    context = message.blocks[-1]
    assert context["type"] == "context"
    assert "<https://acme.slack.test/docs/T1/F1|Open the status board>" in repr(context)


def test_large_bundle_fits_block_kit_limits() -> None:
    lines = [line(f"Domain{index}", message="x" * 300) for index in range(400)]

    message = render_group(group(*lines), tz=UTC, now=NOW, link=None)

    assert message.blocks is not None
    assert check_blocks(message.blocks, "/blocks", MAX_MESSAGE_BLOCKS) == []
    assert len(message.text) <= MAX_SECTION_CHARS
    assert "more section(s) of rows" in repr(message.blocks[-2])


def test_messages_pass_block_validation() -> None:
    messages = [
        render_group(group(line(), line("Budget")), tz=UTC, now=NOW, link=None),
        render_flapping_notice(
            "Planning",
            "Actual",
            flips=6,
            window_seconds=3600,
            tz=UTC,
            now=NOW,
            link=None,
        ),
        render_admin("Broken.", raised_at=NOW.isoformat(), tz=UTC, now=NOW),
    ]

    for message in messages:
        assert check_blocks(message.blocks, "/blocks", MAX_MESSAGE_BLOCKS) == []


def test_stuck_line_shows_running_time_and_limit() -> None:
    stuck = line(
        status="Loading", stuck_limit=3600.0, since="2025-07-01T11:30:00+00:00"
    )

    message = render_group(group(stuck), tz=UTC, now=NOW, link=None)

    assert message.text.startswith(":rotating_light: EPM job stuck")
    assert "Loading for 2h 30m (max runtime 1h 00m)" in message.text


def test_recovered_line_hides_old_message() -> None:
    recovered = line(status="OK", state="recovered", took=125.0)

    message = render_group(group(recovered), tz=UTC, now=NOW, link=None)

    assert message.text.startswith(":white_check_mark: Recovered")
    assert "took 2m" in message.text
    assert "Load failed" not in message.text


def test_change_reply_names_both_statuses() -> None:
    reply = render_change_reply(line(status="Loading"), "Error", tz=UTC, now=NOW)

    assert "Error → Loading at 14:00 UTC" in reply


def test_names_and_job_are_escaped() -> None:
    message = render_group(
        group(line(domain="<@U123>", job_id="<!here>")), tz=UTC, now=NOW, link=None
    )

    assert "<@U123>" not in message.text + repr(message.blocks)
    assert "<!here>" not in message.text + repr(message.blocks)


def test_bundle_headline_counts_in_singular_and_plural() -> None:
    one_open = group(line("Actual"), line("Forecast", state="recovered"))
    two_open = group(line("Actual"), line("Forecast"))

    single = render_group(one_open, tz=UTC, now=NOW, link=None)
    plural = render_group(two_open, tz=UTC, now=NOW, link=None)

    assert "1 EPM job needs attention (1 recovered or moved on)" in single.text
    assert "2 EPM jobs need attention" in plural.text
