"""Settings from the environment and .env, API keys, and the generated local key."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from bot.keys import (
    KeyConfigError,
    client_key,
    generated_key_path,
    keys_file_permission_problem,
    keys_from_settings,
    load_or_generate_key,
    read_keys_file,
)
from bot.settings import Settings

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"


def settings() -> Settings:
    return Settings(_env_file=None)


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "expected"),
    [
        ("EPMPULSE_ENV", "staging", "env", "staging"),
        ("EPMPULSE_DEBUG", "true", "debug", True),
        ("EPMPULSE_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("EPMPULSE_PORT", "18900", "port", 18900),
        ("EPMPULSE_LOG_LEVEL", "WARNING", "log_level", "WARNING"),
        ("EPMPULSE_DATA_DIR", "/srv/epmpulse", "data_dir", Path("/srv/epmpulse")),
        (
            "EPMPULSE_APPS_CONFIG",
            "/etc/apps.json",
            "apps_config",
            Path("/etc/apps.json"),
        ),
        ("EPMPULSE_API_KEYS_FILE", "/etc/keys", "api_keys_file", Path("/etc/keys")),
        ("EPMPULSE_TIMEZONE", "America/New_York", "timezone", "America/New_York"),
        ("EPMPULSE_CANVAS_DEBOUNCE_SECONDS", "5", "canvas_debounce_seconds", 5.0),
        ("EPMPULSE_CANVAS_DEBOUNCE_SECONDS", "1m", "canvas_debounce_seconds", 60.0),
        (
            "SLACK_API_URL",
            "http://127.0.0.1:9/api/",
            "slack_api_url",
            "http://127.0.0.1:9/api/",
        ),
        (
            "SLACK_MAIN_CHANNEL_ID",
            "C01ABCDEF23",
            "slack_main_channel_id",
            "C01ABCDEF23",
        ),
        ("SLACK_MAIN_CANVAS_ID", "F01ABCDEF23", "slack_main_canvas_id", "F01ABCDEF23"),
        (
            "SLACK_ARCS_CHANNEL_ID",
            "C02ABCDEF23",
            "slack_arcs_channel_id",
            "C02ABCDEF23",
        ),
        ("SLACK_ARCS_CANVAS_ID", "F02ABCDEF23", "slack_arcs_canvas_id", "F02ABCDEF23"),
    ],
)
def test_variable_is_read(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    raw: str,
    attribute: str,
    expected: Any,
) -> None:
    monkeypatch.setenv(name, raw)

    assert getattr(settings(), attribute) == expected


@pytest.mark.parametrize(
    ("name", "attribute"),
    [
        ("EPMPULSE_API_KEY", "api_key"),
        ("SLACK_BOT_TOKEN", "slack_bot_token"),
        ("SLACK_APP_TOKEN", "slack_app_token"),
        ("SLACK_SIGNING_SECRET", "slack_signing_secret"),
    ],
)
def test_secret_variable_is_read_and_hidden(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, name: str, attribute: str
) -> None:
    monkeypatch.setenv(name, "xoxb-1234567890-secret")

    loaded = settings()

    assert getattr(loaded, attribute).get_secret_value() == "xoxb-1234567890-secret"
    assert "xoxb-1234567890-secret" not in repr(loaded)


def test_defaults(clean_env: None) -> None:
    loaded = settings()

    assert loaded.env == "development"
    assert loaded.debug is False
    assert loaded.host == "127.0.0.1"
    assert loaded.port == 18800
    assert loaded.log_level == "INFO"
    assert loaded.data_dir == Path("data")
    assert loaded.apps_config_path == Path("config/apps.json")
    assert loaded.apps_config_required is False
    assert loaded.slack_api_url == "https://slack.com/api/"
    assert loaded.timezone == "UTC"
    assert loaded.canvas_debounce_seconds == 2.0
    assert loaded.mode == "local"


def test_dotenv_file_is_read(clean_env: None, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        'EPMPULSE_PORT="18999"\nSLACK_MAIN_CHANNEL_ID=C01ABCDEF23\n', encoding="utf-8"
    )

    loaded = Settings()

    assert loaded.port == 18999
    assert loaded.slack_main_channel_id == "C01ABCDEF23"


def test_environment_wins_over_dotenv(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("EPMPULSE_PORT=18999\n", encoding="utf-8")
    monkeypatch.setenv("EPMPULSE_PORT", "18001")

    assert Settings().port == 18001


def test_debug_raises_log_level(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPMPULSE_DEBUG", "1")
    monkeypatch.setenv("EPMPULSE_LOG_LEVEL", "WARNING")

    assert settings().effective_log_level == "DEBUG"


def test_blank_values_count_as_unset(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", " ")
    monkeypatch.setenv("SLACK_MAIN_CHANNEL_ID", "")

    loaded = settings()

    assert loaded.slack_bot_token is None
    assert loaded.slack_main_channel_id is None
    assert loaded.mode == "local"


@pytest.mark.parametrize(
    ("variables", "mode"),
    [
        ({}, "local"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "publish-only"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, "http"),
        (
            {
                "SLACK_BOT_TOKEN": "xoxb-1",
                "SLACK_APP_TOKEN": "xapp-1",
                "SLACK_SIGNING_SECRET": "s",
            },
            "socket",
        ),
    ],
)
def test_mode_follows_tokens(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    mode: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    assert settings().mode == mode


@pytest.mark.parametrize("env", ["production", "PROD", " Production "])
def test_production_is_recognised(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    monkeypatch.setenv("EPMPULSE_ENV", env)

    assert settings().is_production is True


def test_secret_values_include_each_key(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPMPULSE_API_KEY", f"{KEY_A},{KEY_B}")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-123-456-abc")

    values = settings().secret_values()

    assert KEY_A in values
    assert KEY_B in values
    assert "xoxb-123-456-abc" in values


def test_comma_separated_keys_are_labelled_by_position(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPMPULSE_API_KEY", f" {KEY_A} ,, {KEY_B}")

    keys = keys_from_settings(settings())

    assert [(k.label, k.secret) for k in keys] == [("env-1", KEY_A), ("env-2", KEY_B)]


def test_keys_file_adds_labelled_keys(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"planning:{KEY_B}\n", encoding="utf-8")
    monkeypatch.setenv("EPMPULSE_API_KEY", KEY_A)
    monkeypatch.setenv("EPMPULSE_API_KEYS_FILE", str(keys_file))

    keys = keys_from_settings(settings())

    assert [k.label for k in keys] == ["env-1", "planning"]


def test_generated_key_is_private(
    clean_env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    loaded = Settings(_env_file=None, data_dir=tmp_path / "data")

    key = load_or_generate_key(loaded)

    path = generated_key_path(loaded)
    assert path == tmp_path / "data" / "secrets" / "api_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text(encoding="utf-8").strip() == key.secret
    assert len(key.secret) >= 32
    assert key.secret not in caplog.text
    assert str(path) in caplog.text


def test_generated_key_is_reused(clean_env: None, tmp_path: Path) -> None:
    loaded = Settings(_env_file=None, data_dir=tmp_path / "data")

    first = load_or_generate_key(loaded)
    second = load_or_generate_key(loaded)

    assert first.secret == second.secret
    assert client_key(loaded) == first.secret


def test_client_key_prefers_configured_key(clean_env: None, tmp_path: Path) -> None:
    loaded = Settings(_env_file=None, data_dir=tmp_path / "data", api_key=KEY_A)
    load_or_generate_key(loaded)

    assert client_key(loaded) == KEY_A


def test_client_key_without_any_key(clean_env: None, tmp_path: Path) -> None:
    loaded = Settings(_env_file=None, data_dir=tmp_path / "data")

    assert client_key(loaded) is None


async def test_local_service_generates_key(
    start_service: Any, tmp_path: Path, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    service = await start_service(api_key=None)

    key = (data_dir / "secrets" / "api_key").read_text(encoding="utf-8").strip()
    assert service.keyring.match(f"Bearer {key}") == "generated"
    assert key not in caplog.text


async def test_start_log_names_env_and_debug(
    start_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot")

    await start_service(env="staging", debug=True)

    messages = [record.getMessage() for record in caplog.records]
    started = [message for message in messages if "listening on" in message]
    assert len(started) == 1
    assert "env=staging" in started[0]
    assert "debug=True" in started[0]


def test_keys_file_error_lists_every_bad_line(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"missing-colon\nok:{KEY_A}\nshort:abc\n", encoding="utf-8")

    with pytest.raises(KeyConfigError) as caught:
        read_keys_file(keys_file)

    assert len(caught.value.problems) == 2
    assert "line 1 is not 'label:key'" in str(caught.value)
    assert "line 3 (short)" in str(caught.value)
    assert "openssl rand -hex 32" in str(caught.value)
    assert KEY_A not in str(caught.value)


def test_keys_file_permission_problem_names_fix(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"planning:{KEY_A}\n", encoding="utf-8")
    keys_file.chmod(0o604)

    problem = keys_file_permission_problem(keys_file)

    assert problem is not None
    assert "mode 0604" in problem
    assert f"chmod 600 {keys_file}" in problem
