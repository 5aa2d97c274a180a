"""Log set-up and redaction: configured secrets and token-shaped strings."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.logs import REDACTED, RedactingFilter, configure_logging
from bot.settings import Settings
from handlers.access import AccessLines

API_KEY = "epm-key-4f9a2c81d3e54b7a"
BOT_TOKEN = "xoxb-1111111111-2222222222-AbCdEfGhIjKlMnOp"

TOKENS = {
    "bot": "xoxb-1111111111-2222222222-AbCdEfGhIjKl",
    "user": "xoxp-1111111111-2222222222-AbCdEfGhIjKl",
    "app": "xapp-1-A0123ABCD-1234567890-abcdef0123",
    "refresh": "xoxe-1-My0xLTEyMzQ1Njc4OTAtYWJjZGVm",
    "rotated": "xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAtYWJjZGVm",
    "bearer": "Bearer 9f86d081884c7d659a2feaa0c55ad015",
    "basic": "Basic dXNlcjpwYXNzd29yZDEyMw==",
}


# Loggers whose level configure_logging sets.
LIBRARY_LOGGERS = ("slack_sdk", "slack_bolt")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Restore the root logger (and the library loggers' levels) after a test that
    calls configure_logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    library_levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, library_level in library_levels.items():
        logging.getLogger(name).setLevel(library_level)


def emit(redactor: RedactingFilter, message: str, *args: object) -> str:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, message, args, None)
    redactor.filter(record)
    return record.getMessage()


def test_configured_secret_is_masked() -> None:
    redactor = RedactingFilter([API_KEY])

    out = emit(redactor, "rejected key %s from %s", API_KEY, "10.0.0.1")

    assert API_KEY not in out
    assert out == f"rejected key {REDACTED} from 10.0.0.1"


def test_longer_secret_is_masked_whole() -> None:
    redactor = RedactingFilter(["abcdef", "abcdef-longer-secret"])

    out = emit(redactor, "value abcdef-longer-secret")

    assert out == f"value {REDACTED}"


@pytest.mark.parametrize("token", TOKENS.values(), ids=TOKENS.keys())
def test_token_shaped_text_is_masked(token: str) -> None:
    out = emit(RedactingFilter(), "header %s sent", token)

    assert token not in out
    assert REDACTED in out


def test_ordinary_text_is_kept() -> None:
    text = "board main: publish to canvas F0123ABCD failed (attempt 2): ratelimited"

    assert emit(RedactingFilter([API_KEY]), text) == text


def test_traceback_is_redacted() -> None:
    redactor = RedactingFilter([API_KEY])
    try:
        raise RuntimeError(f"auth failed for {BOT_TOKEN} with {API_KEY}")
    except RuntimeError:
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )

    redactor.filter(record)
    text = logging.Formatter().format(record)

    assert "RuntimeError" in text
    assert BOT_TOKEN not in text
    assert API_KEY not in text


def test_bad_format_arguments_do_not_raise() -> None:
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "count %d of %s", ("x",), None
    )

    RedactingFilter([API_KEY]).filter(record)

    assert "count %d of %s" in record.getMessage()


def test_file_log_redacts_message_and_traceback(
    root_logging: None, tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "epmpulse.log"
    configure_logging("INFO", "text", log_file, [API_KEY, BOT_TOKEN])
    log = logging.getLogger("tests.logs")

    log.info("client sent key %s", API_KEY)
    try:
        raise ValueError(f"Slack said no to {BOT_TOKEN}")
    except ValueError:
        log.exception("publish failed with %s", "Bearer abcdefghijklmnop")
    for handler in logging.getLogger().handlers:
        handler.flush()

    text = log_file.read_text(encoding="utf-8")
    assert "client sent key [redacted]" in text
    assert "ValueError: Slack said no to [redacted]" in text
    assert API_KEY not in text
    assert BOT_TOKEN not in text
    assert "abcdefghijklmnop" not in text


def test_json_log_lines_are_redacted(root_logging: None, tmp_path: Path) -> None:
    log_file = tmp_path / "epmpulse.log"
    configure_logging("INFO", "json", log_file, [API_KEY])
    log = logging.getLogger("tests.logs")

    try:
        raise KeyError(API_KEY)
    except KeyError:
        log.exception("lookup of %s failed", API_KEY)
    for handler in logging.getLogger().handlers:
        handler.flush()

    entry = json.loads(log_file.read_text(encoding="utf-8").splitlines()[-1])
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "tests.logs"
    assert entry["message"] == f"lookup of {REDACTED} failed"
    assert "KeyError" in entry["exception"]
    assert API_KEY not in json.dumps(entry)


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_access_batch_is_one_line_per_request(
    root_logging: None, tmp_path: Path, fmt: str
) -> None:
    log_file = tmp_path / "epmpulse.log"
    configure_logging("INFO", fmt, log_file, [API_KEY])
    batch = AccessLines()

    batch.add("access client=10.0.0.1 method=POST status=200 key=a")
    batch.add(f"access client=10.0.0.2 method=GET status=401 key={API_KEY}")
    await asyncio.sleep(0)  # the batch is logged on the next loop iteration
    for handler in logging.getLogger().handlers:
        handler.flush()

    lines = log_file.read_text(encoding="utf-8").splitlines()
    messages = (
        [json.loads(line)["message"] for line in lines]
        if fmt == "json"
        else [line.split(" handlers.access ", 1)[1] for line in lines]
    )
    assert messages == [
        "access client=10.0.0.1 method=POST status=200 key=a",
        f"access client=10.0.0.2 method=GET status=401 key={REDACTED}",
    ]
    assert all(" INFO " in line or '"INFO"' in line for line in lines)


def test_level_is_applied(root_logging: None, tmp_path: Path) -> None:
    log_file = tmp_path / "epmpulse.log"
    configure_logging("WARNING", "text", log_file)
    log = logging.getLogger("tests.logs")

    log.info("hidden")
    log.warning("shown")
    for handler in logging.getLogger().handlers:
        handler.flush()

    text = log_file.read_text(encoding="utf-8")
    assert "shown" in text
    assert "hidden" not in text


@pytest.mark.parametrize(
    "library", ["slack_sdk", "slack_sdk.web.async_base_client", "slack_bolt"]
)
def test_debug_keeps_slack_libraries_at_info(
    root_logging: None, clean_env: None, library: str
) -> None:
    level = Settings(_env_file=None, debug=True).effective_log_level

    configure_logging(level)

    assert logging.getLogger("bot.service").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger(library).isEnabledFor(logging.DEBUG)
    assert logging.getLogger(library).isEnabledFor(logging.INFO)


def test_slack_libraries_follow_higher_level(root_logging: None) -> None:
    configure_logging("WARNING")

    assert not logging.getLogger("slack_sdk").isEnabledFor(logging.INFO)
    assert logging.getLogger("slack_sdk").isEnabledFor(logging.WARNING)
