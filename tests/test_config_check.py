"""``check-config``: every problem at once, each naming its setting."""

from __future__ import annotations

import json
import socket
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
        ('{"apps": [{"domains": []}]}', "apps[0].name"),
        ('{"apps": [{"name": "A", "board": "side"}]}', "apps[0].board"),
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


# A complete Socket Mode configuration without problems.
SLACK_SETTINGS = {
    "EPMPULSE_API_KEY": GOOD_KEY,
    "SLACK_BOT_TOKEN": GOOD_TOKEN,
    "SLACK_MAIN_CHANNEL_ID": "C01ABCDEF23",
    "SLACK_ARCS_CHANNEL_ID": "C02ABCDEF23",
}


def messages_of(found: list[Problem], setting: str) -> list[str]:
    return [p.message for p in found if p.setting == setting]


def test_guide_env_placeholders_fail_check_config(
    clean_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_text(
        "EPMPULSE_API_KEY=<output of: openssl rand -hex 32>\n"
        "SLACK_BOT_TOKEN=xoxb-...\n"
        "SLACK_APP_TOKEN=xapp-...            # Socket Mode\n"
        "SLACK_MAIN_CHANNEL_ID=C05ABCDEF12\n",
        encoding="utf-8",
    )

    code = main(["check-config"])

    captured = capsys.readouterr()
    assert code == 1
    assert "configuration OK" not in captured.out
    for setting in (
        "EPMPULSE_API_KEY",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_MAIN_CHANNEL_ID",
    ):
        assert f"error: {setting}: " in captured.err
    assert "placeholder" in captured.err


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("EPMPULSE_API_KEY", "<paste-the-key-0123456789>"),
        ("EPMPULSE_API_KEY", "your_api_key_0123456789"),
        ("SLACK_BOT_TOKEN", "xoxb-xxxx-xxxx-xxxx"),
        ("SLACK_APP_TOKEN", "xapp-..."),
        ("SLACK_SIGNING_SECRET", "<signing secret>"),
        ("SLACK_MAIN_CHANNEL_ID", "C0XXXXXXXXX"),
        ("SLACK_ARCS_CANVAS_ID", "F..."),
        ("EPM_CLIENT_ID", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        ("EPM_CLIENT_SECRET", "your-client-secret"),
        ("EPM_REFRESH_TOKEN", "..."),
        (
            "EPM_TOKEN_URL",
            "https://idcs-xxxxxxxx.identity.oraclecloud.com/oauth2/v1/token",
        ),
        ("EPM_SCOPE", "urn:opc:serviceInstanceID=<ID>urn:opc:resource:consumer::all"),
    ],
)
def test_placeholder_in_setting_is_an_error(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, setting: str, value: str
) -> None:
    variables = dict(SLACK_SETTINGS, **{setting: value})

    found = problems(monkeypatch, **variables)

    assert settings_named(found) == [setting]
    assert "placeholder" in messages_of(found, setting)[0]


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("SLACK_BOT_TOKEN", 'xoxb-1111-2222-abcdef"', "a quote"),
        ("SLACK_BOT_TOKEN", "xoxb-1111-2222 abcdef", "a space"),
        ("SLACK_BOT_TOKEN", "xoxb-1111-2222_abcdef", "not allowed"),
        ("SLACK_APP_TOKEN", "xapp-1-A01-\u00e9abcdef", "U+00E9"),
        ("EPMPULSE_API_KEY", "0123456789 abcdef0123456789", "a space"),
        ("SLACK_SIGNING_SECRET", "0123456789abcdef\u00a0", "U+00A0"),
    ],
)
def test_secret_with_bad_character_is_an_error(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    value: str,
    words: str,
) -> None:
    variables = dict(SLACK_SETTINGS, **{setting: value})

    found = problems(monkeypatch, **variables)

    message = messages_of(found, setting)[0]
    assert settings_named(found) == [setting]
    assert words in message
    assert "abcdef" not in message


def test_unknown_apps_json_keys_get_closest_key(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "apps.json"
    apps = [
        {
            "name": "Planning",
            "dispaly_name": "Planning",
            "Board": "main",
            "EPM": {},
            "domains": [{"name": "Actual", "max_runtme": "1h"}],
        }
    ]
    path.write_text(json.dumps({"apps": apps, "version": 2}), encoding="utf-8")

    found = problems(monkeypatch, EPMPULSE_APPS_CONFIG=str(path))

    messages = messages_of(found, "EPMPULSE_APPS_CONFIG")
    expected = [
        "apps[0].dispaly_name: unknown key; did you mean display_name?",
        "apps[0].Board: unknown key; did you mean board?",
        "apps[0].EPM: unknown key; did you mean epm?",
        "apps[0].domains[0].max_runtme: unknown key; did you mean max_runtime?",
        "version: unknown key; the known keys are apps",
    ]
    for text in expected:
        assert f"{path}: {text}" in messages
    assert len(messages) == len(expected)


def test_non_object_apps_json_explained(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "apps.json"
    path.write_text('[{"name": "Planning"}]', encoding="utf-8")

    found = problems(monkeypatch, EPMPULSE_APPS_CONFIG=str(path))

    message = messages_of(found, "EPMPULSE_APPS_CONFIG")[0]
    assert "the file must be a JSON object with an apps list" in message
    assert "_CatalogFile" not in message


@pytest.mark.parametrize(
    ("apps", "words"),
    [
        ([], "apps is empty"),
        (
            [{"name": "Planning", "domains": ["Actual"]}, {"name": "FCCS"}],
            "apps[1] (FCCS) has no domains",
        ),
    ],
)
def test_apps_json_without_rows_is_an_error(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    apps: list[dict[str, object]],
    words: str,
) -> None:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({"apps": apps}), encoding="utf-8")

    found = problems(monkeypatch, EPMPULSE_APPS_CONFIG=str(path))

    assert settings_named(found) == ["EPMPULSE_APPS_CONFIG"]
    assert words in found[0].message
    assert "every update" in found[0].message


def test_epm_block_error_names_key_once(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "apps.json"
    app = {
        "name": "Planning",
        "domains": ["Actual"],
        "epm": {"url": "planning-pod", "product": "planning", "application": "V"},
    }
    path.write_text(json.dumps({"apps": [app]}), encoding="utf-8")

    found = problems(monkeypatch, EPMPULSE_APPS_CONFIG=str(path))

    message = messages_of(found, "EPMPULSE_APPS_CONFIG")[0]
    assert message.startswith("app Planning: epm.url: ")
    assert message.count("epm.url") == 1
    assert "Value error" not in message


def test_example_epm_host_warns(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "apps.json"
    epm = {
        "url": "https://acme-planning.epm.example.com",
        "product": "planning",
        "application": "Vision",
    }
    app = {"name": "Planning", "domains": ["Actual"], "epm": epm}
    path.write_text(json.dumps({"apps": [app]}), encoding="utf-8")

    found = problems(monkeypatch, EPMPULSE_APPS_CONFIG=str(path))

    assert settings_named(found) == []
    assert "example host" in messages_of(found, "EPMPULSE_APPS_CONFIG")[0]


def check_config_output(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    code = main(["check-config", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_corrupt_data_file_fails_check_config(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_file = tmp_path / "data" / "epmpulse.json"
    data_file.parent.mkdir()
    data_file.write_bytes(b'{"rows": {"1": {"app": "Plan')

    code, output = check_config_output(capsys)

    assert code == 1
    assert f"error: EPMPULSE_DATA_DIR: data file {data_file} is corrupt" in output
    assert data_file.read_bytes() == b'{"rows": {"1": {"app": "Plan'


def test_invalid_data_row_fails_check_config(
    clean_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_file = tmp_path / "data" / "epmpulse.json"
    data_file.parent.mkdir()
    data_file.write_text('{"rows": {"1": {"app": "Planning"}}}', encoding="utf-8")

    code, output = check_config_output(capsys)

    assert code == 1
    assert "has an invalid row" in output


def test_data_dir_file_fails_check_config(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "data").write_text("", encoding="utf-8")

    code, output = check_config_output(capsys)

    assert code == 1
    assert f"error: EPMPULSE_DATA_DIR: {tmp_path / 'data'} is not a folder" in output


def test_data_dir_under_file_fails(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "srv").write_text("", encoding="utf-8")
    monkeypatch.setenv("EPMPULSE_DATA_DIR", str(tmp_path / "srv" / "data"))

    code, output = check_config_output(capsys)

    assert code == 1
    assert "error: EPMPULSE_DATA_DIR: " in output
    assert "cannot be created" in output


def test_uncreatable_log_folder_fails(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "log").write_text("", encoding="utf-8")
    monkeypatch.setenv("EPMPULSE_LOG_FILE", str(tmp_path / "log" / "epmpulse.log"))

    code, output = check_config_output(capsys)

    assert code == 1
    assert "error: EPMPULSE_LOG_FILE: " in output
    assert "cannot be created" in output


def test_check_config_creates_nothing(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_DATA_DIR", str(tmp_path / "srv" / "data"))
    monkeypatch.setenv("EPMPULSE_LOG_FILE", str(tmp_path / "logs" / "epmpulse.log"))
    monkeypatch.setenv("EPMPULSE_PORT", "0")

    code, output = check_config_output(capsys)

    assert code == 0, output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("host", ["exa mple", "epm_pulse.local", "bücher.example"])
def test_host_that_is_not_a_name_fails(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    host: str,
) -> None:
    monkeypatch.setenv("EPMPULSE_HOST", host)

    code, output = check_config_output(capsys)

    assert code == 1
    assert "error: EPMPULSE_HOST: " in output


def test_unresolvable_host_fails(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_such_name(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # No resolver is asked: the lookup fails as it would for an unknown name.
    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    monkeypatch.setenv("EPMPULSE_HOST", "epmpulse-server")

    code, output = check_config_output(capsys)

    assert code == 1
    assert "error: EPMPULSE_HOST: 'epmpulse-server' cannot be resolved" in output


def test_port_in_use_warns(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("EPMPULSE_PORT", str(busy.getsockname()[1]))

        code, output = check_config_output(capsys)

    assert code == 0
    assert "warning: EPMPULSE_PORT: " in output
    assert "already in use" in output


def test_unknown_setting_names_warn_with_closest(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / ".env").write_text("SLACK_BOT_TOKN=placeholder\n", encoding="utf-8")
    monkeypatch.setenv("EPMPULSE_TIMEZON", "UTC")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.invalid/x")
    monkeypatch.setenv("EPMPULSE_PORT", "0")

    code, output = check_config_output(capsys)

    assert code == 0
    assert "warning: EPMPULSE_TIMEZON: " in output
    assert "did you mean EPMPULSE_TIMEZONE?" in output
    assert "warning: SLACK_BOT_TOKN: " in output
    assert "did you mean SLACK_BOT_TOKEN?" in output
    assert "SLACK_WEBHOOK_URL" not in output
    assert "placeholder" not in output


def test_invalid_port_says_range(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_PORT", "eighty")

    code, output = check_config_output(capsys)

    assert code == 1
    assert "a port number from 1 to 65535" in output


def test_validation_messages_drop_value_error_prefix(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_STUCK_AFTER", "soon")

    code, output = check_config_output(capsys)

    assert code == 1
    assert "error: EPMPULSE_STUCK_AFTER: invalid duration 'soon'" in output
    assert "Value error" not in output


def test_unreadable_keys_file_names_setting_once(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPMPULSE_API_KEYS_FILE", str(tmp_path / "absent"))

    code, output = check_config_output(capsys)

    assert code == 1
    assert f"error: EPMPULSE_API_KEYS_FILE: {tmp_path / 'absent'}: " in output
    assert output.count("EPMPULSE_API_KEYS_FILE") == 1


def test_keys_file_lists_every_bad_line(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"no-colon\nshort:abc\nok:{GOOD_KEY}\nok:{GOOD_KEY}x\n")
    path.chmod(0o600)

    found = problems(monkeypatch, EPMPULSE_API_KEYS_FILE=str(path))

    messages = messages_of(found, "EPMPULSE_API_KEYS_FILE")
    assert len(messages) == 3
    assert "line 1 is not 'label:key'" in messages[0]
    assert "line 2 (short)" in messages[1]
    assert "'openssl rand -hex 32'" in messages[1]
    assert "line 4: label 'ok' is used twice" in messages[2]


@pytest.mark.parametrize(("mode", "warns"), [(0o644, True), (0o660, True)])
def test_loose_keys_file_mode_warns(
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    mode: int,
    warns: bool,
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"planning:{GOOD_KEY}\n")
    path.chmod(mode)

    found = problems(monkeypatch, EPMPULSE_API_KEYS_FILE=str(path))

    assert settings_named(found) == []
    assert settings_named(found, "warning") == ["EPMPULSE_API_KEYS_FILE"]
    assert f"chmod 600 {path}" in found[0].message


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_private_keys_file_mode_is_fine(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"planning:{GOOD_KEY}\n")
    path.chmod(mode)

    assert problems(monkeypatch, EPMPULSE_API_KEYS_FILE=str(path)) == []


def test_token_url_error_points_to_identity_domain(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, EPM_TOKEN_URL="acme.epm.oraclecloud.invalid")

    assert settings_named(found) == ["EPM_TOKEN_URL"]
    assert "/oauth2/v1/token" in found[0].message
    assert "identity domain" in found[0].message
    assert "pod" not in found[0].message


def test_token_url_without_token_path_warns(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, EPM_TOKEN_URL="https://idcs-1a2b.identity.invalid")

    assert settings_named(found) == []
    assert settings_named(found, "warning") == ["EPM_TOKEN_URL"]


def test_canvas_id_error_says_where_to_find_it(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = problems(monkeypatch, SLACK_MAIN_CANVAS_ID="dashboard")

    assert settings_named(found) == ["SLACK_MAIN_CANVAS_ID"]
    assert "/docs/<team>/F..." in found[0].message
    assert "leave SLACK_MAIN_CANVAS_ID unset" in found[0].message
    assert "channel details" not in found[0].message
