"""/epmpulse through Socket Mode, against the service running in this loop."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.service import Service
from tests.fakes.slack_api import MAX_MESSAGE_BLOCKS, FakeSlack, check_blocks
from tests.fakes.slack_payloads import slash_command
from tests.slack_service import post, post_status, running_service

ACK_DEADLINE = 3.0


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def apps_json(tmp_path: Path) -> Path:
    path = tmp_path / "apps.json"
    apps = [
        {"name": "Planning", "domains": ["Actual", "Budget"]},
        {
            "name": "FCCS",
            "display_name": "Financial Consolidation",
            "domains": ["Actual"],
        },
    ]
    path.write_text(json.dumps({"apps": apps}))
    return path


@pytest.fixture
async def service(
    slack: FakeSlack, tmp_path: Path, apps_json: Path
) -> AsyncIterator[Service]:
    async with running_service(
        slack, tmp_path / "data", apps_config=apps_json
    ) as running:
        yield running


async def command(
    slack: FakeSlack, text: str, replies: int = 1
) -> list[dict[str, Any]]:
    """Send /epmpulse ``text``; check the ack deadline and return the replies."""
    name = f"r{time.monotonic_ns()}"
    payload = slash_command(text, response_url=slack.response_url(name))
    ack = await slack.socket_mode.send_envelope("slash_commands", payload)
    assert ack.latency < ACK_DEADLINE
    return await slack.wait_for(
        lambda: (r := slack.responses(name)) and len(r) >= replies and r
    )


def reply_text(reply: dict[str, Any]) -> str:
    texts = []
    for block in reply["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [element["text"] for element in block.get("elements", [])]
    return "\n".join(texts)


async def test_empty_command_shows_status(slack: FakeSlack, service: Service) -> None:
    await post_status(service, app="Planning", domain="Actual", status="Error")

    replies = await command(slack, "")

    assert replies[0]["response_type"] == "ephemeral"
    assert ":x: *Actual* · Error for" in reply_text(replies[0])
    assert check_blocks(replies[0]["blocks"], "/blocks", MAX_MESSAGE_BLOCKS) == []


async def test_status_lists_failures_and_running_first(
    slack: FakeSlack, service: Service
) -> None:
    await post_status(service, app="Planning", domain="Actual", status="OK")
    await post_status(service, app="FCCS", domain="Actual", status="Loading")

    text = reply_text((await command(slack, "status"))[0])

    assert text.index("*Financial Consolidation*") < text.index("*Planning*")


async def test_status_of_app_by_display_name(
    slack: FakeSlack, service: Service
) -> None:
    await post_status(service, app="FCCS", domain="Actual", status="OK")

    reply = (await command(slack, 'status "financial consolidation"'))[0]

    assert reply["blocks"][0]["text"]["text"] == (
        "EPM job status: Financial Consolidation"
    )
    assert "Planning" not in reply_text(reply)


async def test_status_of_unknown_app_suggests_close_match(
    slack: FakeSlack, service: Service
) -> None:
    reply = (await command(slack, "status Planing"))[0]

    assert reply_text(reply) == (
        ":warning: Unknown app `Planing`. Did you mean *Planning*? "
        "Known apps: Planning, FCCS."
    )


async def test_history_shows_last_ten_by_default(
    slack: FakeSlack, service: Service
) -> None:
    for number in range(12):
        await post_status(
            service, app="Planning", domain="Actual", status="OK", job_id=f"J{number}"
        )

    text = reply_text((await command(slack, "history planning actual"))[0])

    assert "History of Planning / Actual" in text
    assert re.findall(r"job (J\d+)", text) == [f"J{n}" for n in range(11, 1, -1)]
    assert "Showing the last 10" in text


async def test_history_with_count(slack: FakeSlack, service: Service) -> None:
    for number in range(4):
        await post_status(
            service, app="Planning", domain="Actual", status="OK", job_id=f"J{number}"
        )

    text = reply_text((await command(slack, "history Planning Actual 2"))[0])

    assert text.count("job J") == 2


async def test_history_rejects_bad_count(slack: FakeSlack, service: Service) -> None:
    text = reply_text((await command(slack, "history Planning Actual 0"))[0])

    assert "`0` is not a count: use a whole number from 1 to 100." in text
    assert "`/epmpulse help`" in text


async def test_history_needs_app_and_domain(slack: FakeSlack, service: Service) -> None:
    text = reply_text((await command(slack, "history Planning"))[0])

    assert "`history` needs an app and a domain" in text


async def test_history_of_unknown_domain(slack: FakeSlack, service: Service) -> None:
    text = reply_text((await command(slack, "history Planning Actuals"))[0])

    assert text == (
        ":warning: Unknown domain `Actuals`. Did you mean *Actual*? "
        "Known domains: Actual, Budget."
    )


async def test_sync_publishes_canvases_and_reports(
    slack: FakeSlack, service: Service
) -> None:
    edits_before = len(slack.calls_to("canvases.edit"))

    replies = await command(slack, "sync", replies=2)

    canvas_id = slack.channel_canvas("C0MAIN00001")
    assert replies[0]["text"] == "Publishing every canvas now…"
    assert f"published to <{slack.canvas_url(canvas_id)}|{canvas_id}>" in reply_text(
        replies[1]
    )
    assert len(slack.calls_to("canvases.edit")) > edits_before


async def test_help_lists_subcommands(slack: FakeSlack, service: Service) -> None:
    text = reply_text((await command(slack, "help"))[0])

    for usage in ("status [app]", "history <app> <domain> [n]", "sync", "help"):
        assert f"`/epmpulse {usage}`" in text


async def test_unknown_subcommand_shows_error_and_help(
    slack: FakeSlack, service: Service
) -> None:
    text = reply_text((await command(slack, "statsu"))[0])

    assert text.startswith(":warning: Unknown subcommand `statsu`.")
    assert "`/epmpulse status [app]`" in text


async def test_failure_becomes_apology_and_logged_traceback(
    slack: FakeSlack, service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenCatalog:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("catalog exploded")

    service.catalog = BrokenCatalog()  # type: ignore[assignment]

    with caplog.at_level(logging.ERROR):
        text = reply_text((await command(slack, "status"))[0])

    assert "Sorry, `/epmpulse status` failed because of an internal error" in text
    assert "catalog exploded" in caplog.text
    assert "Traceback" in caplog.text


async def test_ack_does_not_wait_for_busy_store(
    slack: FakeSlack, service: Service
) -> None:
    await post_status(service, app="Planning", domain="Actual", status="OK")
    busy = asyncio.ensure_future(service.store.run_in_writer(lambda: time.sleep(1.0)))
    name = "busy"

    ack = await slack.socket_mode.send_envelope(
        "slash_commands",
        slash_command("history Planning Actual", response_url=slack.response_url(name)),
    )
    acked_at = time.monotonic()
    await slack.wait_for(lambda: slack.responses(name))
    await busy

    assert ack.latency < 0.5
    assert time.monotonic() - acked_at > 0.5


async def test_command_needs_no_auth_test_call(
    slack: FakeSlack, service: Service
) -> None:
    slack.hang("auth.test", 5.0, times=None)

    await command(slack, "help")

    assert len(slack.calls_to("auth.test")) == 1


async def test_batch_row_appears_in_status(slack: FakeSlack, service: Service) -> None:
    status, _ = await post(
        service,
        "/api/v1/status/batch",
        {"updates": [{"app": "Planning", "domain": "Budget", "status": "Warning"}]},
    )

    assert status == 200
    assert ":warning: *Budget*" in reply_text((await command(slack, "status"))[0])


async def test_watch_without_pull_mode_explains(
    slack: FakeSlack, service: Service
) -> None:
    text = reply_text((await command(slack, "watch Planning Actual 1234"))[0])

    assert text.startswith(":warning: Pull mode is off")


async def test_watch_needs_app_domain_and_job(
    slack: FakeSlack, service: Service
) -> None:
    text = reply_text((await command(slack, "watch Planning"))[0])

    assert "`watch` needs an app, a domain and the EPM job id" in text
    assert "`/epmpulse watch <app> <domain> <job_id>`" in text
