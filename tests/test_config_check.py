"""``check-config``: every problem at once, each naming its setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.config_check import Problem, check_settings
from bot.settings import Settings

GOOD_KEY = "0123456789abcdef0123456789abcdef"
GOOD_TOKEN = "xoxb-1111-2222-abcdefabcdef"


def problems(monkeypatch: pytest.MonkeyPatch, **variables: str) -> list[Problem]:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return check_settings(Settings(_env_file=None))


def settings_named(found: list[Problem], severity: str = "error") -> list[str]:
    return [p.setting for p in found if p.severity == severity]


def test_local_config_without_key_is_fine(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert problems(monkeypatch) == []


def test_slack_config_is_fine(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    found = problems(
        monkeypatch,
        EPMPULSE_API_KEY=GOOD_KEY,
        SLACK_BOT_TOKEN=GOOD_TOKEN,
        SLACK_MAIN_CHANNEL_ID="C01ABCDEF23",
        SLACK_ARCS_CHANNEL_ID="C02ABCDEF23",
    )

    assert found == []


def test_missing_arcs_channel_warns_without_apps_json(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(
        monkeypatch,
        EPMPULSE_API_KEY=GOOD_KEY,
        SLACK_BOT_TOKEN=GOOD_TOKEN,
        SLACK_MAIN_CHANNEL_ID="C01ABCDEF23",
    )

    assert settings_named(found) == []
    assert settings_named(found, "warning") == ["SLACK_ARCS_CHANNEL_ID"]


def test_every_problem_is_listed_at_once(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = problems(
        monkeypatch,
        EPMPULSE_API_KEY="your_secure_64_character_api_key_here",
        SLACK_BOT_TOKEN="xoxb-your-bot-token-here",
        SLACK_MAIN_CHANNEL_ID="general",
        SLACK_MAIN_CANVAS_ID="F0123456789",
        EPMPULSE_APPS_CONFIG=str(tmp_path / "missing.json"),
        EPMPULSE_TIMEZONE="Mars/Olympus",
    )

    assert settings_named(found) == [
        "EPMPULSE_API_KEY",
        "SLACK_BOT_TOKEN",
        "SLACK_MAIN_CHANNEL_ID",
        "SLACK_MAIN_CANVAS_ID",
        "EPMPULSE_TIMEZONE",
        "EPMPULSE_APPS_CONFIG",
    ]


def test_problem_messages_do_not_show_secrets(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(
        monkeypatch, EPMPULSE_API_KEY="short-secret", SLACK_BOT_TOKEN="xoxp-user-token"
    )

    text = "\n".join(str(p) for p in found)
    assert "short-secret" not in text
    assert "xoxp-user-token" not in text
    assert "EPMPULSE_API_KEY" in text
    assert "SLACK_BOT_TOKEN" in text


def test_production_refuses_generated_key(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, EPMPULSE_ENV="production")

    assert settings_named(found) == ["EPMPULSE_API_KEY"]
    assert "production" in found[0].message


def test_slack_mode_needs_key(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    found = problems(
        monkeypatch, SLACK_BOT_TOKEN=GOOD_TOKEN, SLACK_MAIN_CHANNEL_ID="C01ABCDEF23"
    )

    assert settings_named(found) == ["EPMPULSE_API_KEY"]


def test_short_key_is_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, EPMPULSE_API_KEY=f"{GOOD_KEY},tooshort")

    assert settings_named(found) == ["EPMPULSE_API_KEY"]
    assert "env-2" in found[0].message


def test_slack_mode_needs_main_board(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, EPMPULSE_API_KEY=GOOD_KEY, SLACK_BOT_TOKEN=GOOD_TOKEN)

    assert settings_named(found) == ["SLACK_MAIN_CHANNEL_ID"]


def test_user_token_is_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(
        monkeypatch,
        EPMPULSE_API_KEY=GOOD_KEY,
        SLACK_BOT_TOKEN="xoxp-1111-2222",
        SLACK_MAIN_CHANNEL_ID="C01ABCDEF23",
    )

    assert settings_named(found) == ["SLACK_BOT_TOKEN"]


def test_app_token_without_bot_token_is_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, SLACK_APP_TOKEN="xapp-1-A1-123-abc")

    assert settings_named(found) == ["SLACK_APP_TOKEN"]


def test_remote_plain_http_slack_url_is_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, SLACK_API_URL="http://proxy.internal/api/")

    assert settings_named(found) == ["SLACK_API_URL"]


def test_unknown_log_level_is_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, EPMPULSE_LOG_LEVEL="LOUD")

    assert settings_named(found) == ["EPMPULSE_LOG_LEVEL"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"apps": [{"domains": []}]}', "apps.0.name"),
        ('{"apps": [{"name": "A", "board": "side"}]}', "apps.0.board"),
        ('{"apps": [{"name": "A"}, {"name": "a"}]}', "more than once"),
    ],
)
def test_invalid_apps_json_is_an_error(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    content: str,
    words: str,
) -> None:
    path = tmp_path / "apps.json"
    path.write_text(content, encoding="utf-8")

    found = problems(monkeypatch, EPMPULSE_APPS_CONFIG=str(path))

    assert settings_named(found) == ["EPMPULSE_APPS_CONFIG"]
    assert str(path) in found[0].message
    assert words in found[0].message


def test_unreadable_apps_json_is_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = problems(monkeypatch, EPMPULSE_APPS_CONFIG=str(tmp_path))

    assert settings_named(found) == ["EPMPULSE_APPS_CONFIG"]
    assert "unreadable" in found[0].message


def test_default_apps_json_may_be_absent(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert problems(monkeypatch) == []


def test_arcs_apps_without_arcs_channel_warn(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "apps.json"
    path.write_text(
        json.dumps({"apps": [{"name": "ARCS", "domains": ["Balances"]}]}),
        encoding="utf-8",
    )

    found = problems(
        monkeypatch,
        EPMPULSE_API_KEY=GOOD_KEY,
        SLACK_BOT_TOKEN=GOOD_TOKEN,
        SLACK_MAIN_CHANNEL_ID="C01ABCDEF23",
        EPMPULSE_APPS_CONFIG=str(path),
    )

    assert settings_named(found) == []
    assert settings_named(found, "warning") == ["SLACK_ARCS_CHANNEL_ID"]


def test_check_config_command_lists_problems_and_fails(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-your-bot-token-here")
    monkeypatch.setenv("SLACK_MAIN_CHANNEL_ID", "#general")
    monkeypatch.setenv("EPMPULSE_API_KEY", "your_secure_64_character_api_key_here")
    monkeypatch.setenv("EPMPULSE_APPS_CONFIG", str(tmp_path / "missing.json"))

    code = main(["check-config"])

    err = capsys.readouterr().err
    assert code != 0
    for setting in (
        "SLACK_BOT_TOKEN",
        "SLACK_MAIN_CHANNEL_ID",
        "EPMPULSE_API_KEY",
        "EPMPULSE_APPS_CONFIG",
    ):
        assert f"error: {setting}:" in err
    assert "4 error(s)" in err


def test_check_config_command_reports_invalid_values(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_PORT", "eighty")
    monkeypatch.setenv("EPMPULSE_HISTORY_DAYS", "0")

    code = main(["check-config"])

    err = capsys.readouterr().err
    assert code != 0
    assert "EPMPULSE_PORT" in err
    assert "'eighty'" in err
    assert "EPMPULSE_HISTORY_DAYS" in err


def test_check_config_command_passes_good_config(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_API_KEY", GOOD_KEY)

    code = main(["check-config"])

    assert code == 0
    assert "configuration OK" in capsys.readouterr().out
