"""``epmpulse check-config --slack`` against the fake Slack."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.cli import main
from bot.config_check import Problem
from bot.slack_check import check_slack
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_payloads import MAIN_CHANNEL_ID
from tests.server_process import free_port
from tests.slack_service import API_KEY, slack_settings


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


async def check(slack: FakeSlack, tmp_path: Path, **overrides: Any) -> list[Problem]:
    return await check_slack(slack_settings(slack, tmp_path / "data", **overrides))


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


async def test_working_setup_has_no_problems(slack: FakeSlack, tmp_path: Path) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    canvas = await client.canvases_create(
        title="EPM", document_content={"type": "markdown", "markdown": "hi"}
    )

    problems = await check(slack, tmp_path, slack_main_canvas_id=canvas["canvas_id"])

    assert problems == []


async def test_missing_scopes_are_named(slack: FakeSlack, tmp_path: Path) -> None:
    slack.set_scopes(["commands", "chat:write", "channels:read"])

    problem = only(await check(slack, tmp_path))

    assert problem.severity == "error"
    assert "lacks canvases:write, canvases:read" in problem.message
    assert "reinstall the app" in problem.message


async def test_rejected_bot_token(slack: FakeSlack, tmp_path: Path) -> None:
    problem = only(await check(slack, tmp_path, slack_bot_token="xoxb-not-valid"))

    assert problem.setting == "SLACK_BOT_TOKEN"
    assert problem.message.startswith("Slack rejected it (invalid_auth)")


async def test_revoked_bot_token(slack: FakeSlack, tmp_path: Path) -> None:
    slack.revoke_token(slack.bot_token)

    problem = only(await check(slack, tmp_path))

    assert "token_revoked" in problem.message
    assert "reinstall the app" in problem.message


async def test_rejected_app_token(slack: FakeSlack, tmp_path: Path) -> None:
    problem = only(await check(slack, tmp_path, slack_app_token="xapp-1-wrong"))

    assert problem.setting == "SLACK_APP_TOKEN"
    assert "invalid_auth" in problem.message


async def test_bot_not_in_channel(slack: FakeSlack, tmp_path: Path) -> None:
    slack.set_member(MAIN_CHANNEL_ID, False)

    problem = only(await check(slack, tmp_path))

    assert problem.setting == "SLACK_MAIN_CHANNEL_ID"
    assert "not a member of channel #main" in problem.message
    assert "/invite @epmpulse" in problem.message


async def test_unknown_channel(slack: FakeSlack, tmp_path: Path) -> None:
    problem = only(
        await check(
            slack, tmp_path, slack_arcs_channel_id="C0NOPE00001", slack_app_token=None
        )
    )

    assert problem.setting == "SLACK_ARCS_CHANNEL_ID"
    assert "channel C0NOPE00001 not found" in problem.message


async def test_unknown_canvas(slack: FakeSlack, tmp_path: Path) -> None:
    problem = only(await check(slack, tmp_path, slack_main_canvas_id="F0NOPE00001"))

    assert problem.setting == "SLACK_MAIN_CANVAS_ID"
    assert "canvas F0NOPE00001 not found" in problem.message


async def test_unreachable_slack(slack: FakeSlack, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/"

    problem = only(await check(slack, tmp_path, slack_api_url=url))

    assert problem.setting == "SLACK_API_URL"
    assert f"cannot reach Slack at {url}" in problem.message


async def test_missing_bot_token(slack: FakeSlack, tmp_path: Path) -> None:
    problem = only(
        await check(slack, tmp_path, slack_bot_token=None, slack_app_token=None)
    )

    assert problem.setting == "SLACK_BOT_TOKEN"


@pytest.fixture
def slack_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "EPMPULSE_", "EPM_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return {
        "EPMPULSE_DATA_DIR": str(tmp_path / "data"),
        "EPMPULSE_API_KEY": API_KEY,
        "SLACK_MAIN_CHANNEL_ID": MAIN_CHANNEL_ID,
    }


def test_cli_check_config_slack_reports_problem(
    slack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeSlack.in_thread() as slack:
        slack.set_member(MAIN_CHANNEL_ID, False)
        slack_env |= {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_API_URL": slack.base_url,
        }
        for name, value in slack_env.items():
            monkeypatch.setenv(name, value)

        code = main(["check-config", "--slack"])

    assert code == 1
    assert "/invite @epmpulse" in capsys.readouterr().err


def test_cli_check_config_slack_passes(
    slack_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeSlack.in_thread() as slack:
        slack_env |= {
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_API_URL": slack.base_url,
        }
        for name, value in slack_env.items():
            monkeypatch.setenv(name, value)

        code = main(["check-config", "--slack"])

    assert code == 0
    assert "Slack checks passed" in capsys.readouterr().out
