"""Logging set-up: text or JSON lines, with every secret redacted.

The redaction filter sits on the handler, so it also covers records from slack_sdk,
slack_bolt and aiohttp. It masks the configured secrets and anything shaped like a
Slack token or a bearer credential.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from handlers.access import ACCESS_BATCH

REDACTED = "[redacted]"
# Slack tokens: xoxb-/xoxp-/... access tokens, xoxe- refresh tokens (token
# rotation) and xapp- app-level tokens.
_TOKEN_PATTERNS = re.compile(
    r"(xox[abeposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+"
    r"|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,})"
)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        # Longest first, so a key that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _TOKEN_PATTERNS.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A log call whose arguments do not fit its format must not raise
            # into the caller, as it would from a filter. Keep both parts.
            message = f"{record.msg} (format arguments: {record.args!r})"
        redacted = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.msg = redacted
        record.args = None
        return True


def _batched_lines(record: logging.LogRecord) -> list[str] | None:
    """Return the lines of a record that carries several access lines, else None."""
    if not getattr(record, ACCESS_BATCH, False):
        return None
    return record.getMessage().split("\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        lines = _batched_lines(record)
        if lines is None:
            return json.dumps(entry, ensure_ascii=False)
        return "\n".join(
            json.dumps({**entry, "message": line}, ensure_ascii=False) for line in lines
        )


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class TextFormatter(logging.Formatter):
    """The text format, which formats each second's local time once, and writes
    each line of an access batch as a log line of its own. ``time.strftime`` took
    about a third of the time to format a line (timeit, Python 3.11)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._second_text = ""

    def formatTime(  # noqa: N802 (the name logging.Formatter gives it)
        self, record: logging.LogRecord, datefmt: str | None = None
    ) -> str:
        second = int(record.created)
        if second != self._second:
            self._second_text = super().formatTime(record, "%Y-%m-%d %H:%M:%S")
            self._second = second
        return f"{self._second_text},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        lines = _batched_lines(record)
        if lines is None:
            return text
        # The format ends with the message, so what precedes it is the prefix.
        prefix = text[: len(text) - len(record.message)]
        return "\n".join(prefix + line for line in lines)


def configure_logging(
    level: str,
    fmt: str = "text",
    log_file: Path | None = None,
    secrets: Iterable[str] = (),
) -> RedactingFilter:
    """Send logs to stderr (and ``log_file``) and return the redaction filter."""
    redactor = RedactingFilter(secrets)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(redactor)
        root.addHandler(handler)
    root.setLevel(level)

    # Neither format shows the caller's file and line, thread or process, so
    # records skip looking them up, as the logging HOWTO's "Optimization" section
    # describes.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False

    # At DEBUG, slack_sdk logs the JSON of every Web API request and response and
    # each Socket Mode message, and slack_bolt each response body: payloads that
    # carry the verification token, response_url and user text. So these stay at
    # INFO even when EPMPulse itself logs at DEBUG.
    library_level = max(root.getEffectiveLevel(), logging.INFO)
    for library in ("slack_sdk", "slack_bolt"):
        logging.getLogger(library).setLevel(library_level)

    # Bolt logs the body of a request that fails signature verification at INFO;
    # that body can carry user data, so keep only its warnings.
    logging.getLogger("slack_bolt.AsyncApp").setLevel(logging.WARNING)
    logging.getLogger("slack_bolt.App").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return redactor
