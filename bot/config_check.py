"""Find every configuration problem at once, each with its fix.

``epmpulse check-config`` prints them; ``epmpulse serve`` refuses to start while any
error remains. Warnings are printed but do not stop the server.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from bot.keys import (
    KEY_COMMAND,
    MIN_KEY_LENGTH,
    KeyConfigError,
    env_keys,
    keys_file_permission_problem,
    parse_keys_file,
)
from bot.settings import Settings
from handlers.auth import ApiKey
from handlers.ratelimit import parse_rate_limit
from store.catalog import Catalog, CatalogError
from store.maintenance import parse_maintenance

Severity = Literal["error", "warning", "info"]

# Values copied from the deployment guide's example .env and from docs/deploy.md,
# never real ones.
PLACEHOLDERS = {
    "your_secure_64_character_api_key_here",
    "xoxb-your-bot-token-here",
    "xapp-your-app-token-here",
    "C0123456789",
    "F0123456789",
    "C9876543210",
    "F9876543210",
    "C05ABCDEF12",
}
# Marks of a value copied from documentation instead of a real one, each with the
# text that names it in a message.
# NOTE: a random token or key contains "xxxx" (in any case) by chance, about once
# in 30,000 for 40 random base64 characters (an estimate). Such a value is
# reported as a placeholder and has to be generated again.
_PLACEHOLDER_MARKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\.\.\.|\u2026"), "..."),
    (re.compile(r"<[^<>]*>"), "<...>"),
    (re.compile(r"(?i)your[_-]"), "your_"),
    (re.compile(r"(?i)xxxx"), "xxxx"),
    (re.compile(r"(?i)changeme"), "changeme"),
    (re.compile(r"(?i)example"), "example"),
)
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{8,}$")
_CANVAS_ID = re.compile(r"^F[A-Z0-9]{8,}$")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9-]")
_KEY_CHARS = re.compile(r"[!-~]")
TOKEN_URL_FORM = "https://<identity domain host>/oauth2/v1/token"
BOT_TOKEN_FIX = (
    "copy the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page"
)
APP_TOKEN_FIX = (
    "generate an app-level token under Basic Information > App-Level Tokens, with "
    "the scope connections:write"
)
SIGNING_SECRET_FIX = "copy the Signing Secret from the app's Basic Information page"


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Severity
    setting: str
    message: str

    def __post_init__(self) -> None:
        # The line names the setting once, so a message that starts with it (as
        # those of other modules do) or with pydantic's "Value error, " is trimmed.
        object.__setattr__(self, "message", _trim(self.setting, self.message))

    def __str__(self) -> str:
        return f"{self.severity}: {self.setting}: {self.message}"


def _trim(setting: str, message: str) -> str:
    text = message.replace("Value error, ", "")
    for prefix in (f"{setting}: ", f"{setting} "):
        text = text.removeprefix(prefix)
    return text


def problems_from_validation(error: ValidationError) -> list[Problem]:
    """Turn pydantic's errors about environment values into problems."""
    problems = []
    for item in error.errors():
        setting = str(item["loc"][0]).upper() if item["loc"] else "settings"
        message = _validation_text(setting, item)
        if setting != "EPMPULSE_PORT" and not _looks_secret(setting):
            message += f" (value {item.get('input')!r})"
        problems.append(Problem("error", setting, message))
    return problems


def _validation_text(setting: str, item: ErrorDetails) -> str:
    if setting == "EPMPULSE_PORT":
        return f"{item.get('input')!r} is not a port: use a port number from 1 to 65535"
    if item["type"] == "int_parsing":
        return "must be a whole number"
    if item["type"] == "bool_parsing":
        return "must be true or false"
    return item["msg"].replace("Input should be", "must be")


def _looks_secret(setting: str) -> bool:
    return any(word in setting for word in ("KEY", "TOKEN", "SECRET", "PASSWORD"))


def placeholder_mark(value: str) -> str | None:
    """Return the documentation placeholder in ``value`` ("...", "<...>", "your_",
    "xxxx", ...), or None when it has none."""
    for pattern, mark in _PLACEHOLDER_MARKS:
        if pattern.search(value):
            return mark
    return None


def _bad_character(value: str, allowed: re.Pattern[str]) -> str | None:
    """Name the first character of a secret that ``allowed`` does not match. Only
    whitespace, quotes and non-ASCII characters are shown, never secret text."""
    for char in value:
        if allowed.fullmatch(char):
            continue
        if char in "\r\n":
            return "a line break"
        if not char.isascii():
            return f"the non-ASCII character U+{ord(char):04X}"
        if char.isspace():
            return "a space or tab"
        if char in "'\"":
            return "a quote"
        return "a character that is not allowed"
    return None


def _secret_problem(
    value: str,
    allowed: re.Pattern[str],
    rule: str,
    fix: str,
    prefix: str = "",
    prefix_rule: str = "",
) -> str | None:
    """Check a token, key or secret without ever putting its value in the text:
    first for a placeholder, then for ``prefix``, then for characters that
    ``allowed`` does not match."""
    mark = placeholder_mark(value)
    if mark is not None:
        return f"is a placeholder (it contains '{mark}'), not a real value: {fix}"
    if not value.startswith(prefix):
        return f"{prefix_rule}: {fix}"
    bad = _bad_character(value, allowed)
    if bad is not None:
        return f"contains {bad}, but {rule}: {fix}"
    return None


def check_settings(settings: Settings) -> list[Problem]:
    """Return every problem of a loaded configuration (files included)."""
    problems: list[Problem] = []
    problems += _check_keys(settings)
    problems += _check_slack(settings)
    problems += _check_general(settings)
    problems += _check_catalog(settings)
    problems += _check_epm_settings(settings)
    return problems


def _check_keys(settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    keys = [("EPMPULSE_API_KEY", key) for key in env_keys(settings)]
    keys_file = settings.api_keys_file
    bad_lines: list[str] = []
    if keys_file is not None:
        try:
            file_keys, bad_lines = parse_keys_file(keys_file)
        except KeyConfigError as exc:
            file_keys, bad_lines = [], exc.problems
        problems += [
            Problem("error", "EPMPULSE_API_KEYS_FILE", f"{keys_file}: {line}")
            for line in bad_lines
        ]
        loose = keys_file_permission_problem(keys_file)
        if loose is not None:
            problems.append(Problem("warning", "EPMPULSE_API_KEYS_FILE", loose))
        keys += [("EPMPULSE_API_KEYS_FILE", key) for key in file_keys]
    for setting, key in keys:
        problem = _key_problem(key)
        if problem is not None:
            problems.append(Problem("error", setting, problem))
    if not keys and not bad_lines:
        problems += _missing_key(settings)
    return problems


def _key_problem(key: ApiKey) -> str | None:
    fix = f"generate one with '{KEY_COMMAND}'"
    problem = _secret_problem(
        key.secret, _KEY_CHARS, "a key must be printable ASCII without spaces", fix
    )
    if problem is not None:
        return f"key {key.label} {problem}"
    if len(key.secret) < MIN_KEY_LENGTH:
        return f"key {key.label} is shorter than {MIN_KEY_LENGTH} characters: {fix}"
    return None


def _missing_key(settings: Settings) -> list[Problem]:
    if settings.mode != "local":
        return [
            Problem(
                "error",
                "EPMPULSE_API_KEY",
                "missing: Slack modes need a configured key. Set EPMPULSE_API_KEY "
                f"or EPMPULSE_API_KEYS_FILE ('{KEY_COMMAND}' makes one)",
            )
        ]
    if settings.is_production:
        return [
            Problem(
                "error",
                "EPMPULSE_API_KEY",
                "missing: EPMPULSE_ENV=production refuses a generated key. Set "
                f"EPMPULSE_API_KEY or EPMPULSE_API_KEYS_FILE ('{KEY_COMMAND}' makes "
                "one)",
            )
        ]
    return []


def _check_slack(settings: Settings) -> list[Problem]:
    problems = _check_slack_secrets(settings) + _check_slack_ids(settings)
    bot = settings.slack_bot_token
    if bot is not None:
        if (
            settings.slack_main_channel_id is None
            and settings.slack_main_canvas_id is None
        ):
            problems.append(
                Problem(
                    "error",
                    "SLACK_MAIN_CHANNEL_ID",
                    "missing: set the channel of the main board (EPMPulse creates its "
                    "canvas) or SLACK_MAIN_CANVAS_ID",
                )
            )
        arcs_configured = (
            settings.slack_arcs_channel_id or settings.slack_arcs_canvas_id
        )
        if not arcs_configured and _catalog_uses_arcs(settings):
            problems.append(
                Problem(
                    "warning",
                    "SLACK_ARCS_CHANNEL_ID",
                    "no ARCS channel or canvas is set, so the apps of the arcs "
                    "board (an app named ARCS, unless apps.json says otherwise) "
                    "are shown on the main board",
                )
            )
    if not settings.slack_api_url.startswith(
        ("https://", "http://127.", "http://localhost")
    ):
        problems.append(
            Problem(
                "error",
                "SLACK_API_URL",
                f"{settings.slack_api_url!r} must be an https URL such as "
                "https://slack.com/api/",
            )
        )
    return problems


def _check_slack_secrets(settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    bot = settings.slack_bot_token
    app = settings.slack_app_token
    signing = settings.slack_signing_secret
    token_rule = "a Slack token has only letters, digits and hyphens"
    if bot is not None:
        problem = _secret_problem(
            bot.get_secret_value(),
            _TOKEN_CHARS,
            token_rule,
            BOT_TOKEN_FIX,
            "xoxb-",
            "must start with xoxb- (the Bot User OAuth Token, not a user or app token)",
        )
        if problem is not None:
            problems.append(Problem("error", "SLACK_BOT_TOKEN", problem))
    if app is not None:
        if bot is None:
            problems.append(
                Problem(
                    "error",
                    "SLACK_APP_TOKEN",
                    "is set but SLACK_BOT_TOKEN is not: Socket Mode needs both",
                )
            )
        problem = _secret_problem(
            app.get_secret_value(),
            _TOKEN_CHARS,
            token_rule,
            APP_TOKEN_FIX,
            "xapp-",
            "must be an app-level token starting with xapp-",
        )
        if problem is not None:
            problems.append(Problem("error", "SLACK_APP_TOKEN", problem))
    if signing is not None:
        if bot is None:
            problems.append(
                Problem(
                    "error",
                    "SLACK_SIGNING_SECRET",
                    "is set but SLACK_BOT_TOKEN is not: HTTP mode needs both",
                )
            )
        problem = _secret_problem(
            signing.get_secret_value(),
            _KEY_CHARS,
            "a signing secret is printable ASCII without spaces",
            SIGNING_SECRET_FIX,
        )
        if problem is not None:
            problems.append(Problem("error", "SLACK_SIGNING_SECRET", problem))
    return problems


def _check_slack_ids(settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    ids: list[tuple[str, str | None, re.Pattern[str]]] = [
        ("SLACK_MAIN_CHANNEL_ID", settings.slack_main_channel_id, _CHANNEL_ID),
        ("SLACK_ARCS_CHANNEL_ID", settings.slack_arcs_channel_id, _CHANNEL_ID),
        ("SLACK_MAIN_CANVAS_ID", settings.slack_main_canvas_id, _CANVAS_ID),
        ("SLACK_ARCS_CANVAS_ID", settings.slack_arcs_canvas_id, _CANVAS_ID),
    ]
    for setting, value, pattern in ids:
        if value is None:
            continue
        is_canvas = pattern is _CANVAS_ID
        mark = placeholder_mark(value)
        if value in PLACEHOLDERS or mark is not None:
            problem = (
                f"{value!r} is a placeholder from the documentation: "
                f"{_id_fix(setting, is_canvas)}"
            )
        elif not pattern.match(value):
            kind = "canvas ID (F" if is_canvas else "channel ID (C"
            problem = (
                f"{value!r} is not a Slack {kind} followed by capital letters and "
                f"digits): {_id_fix(setting, is_canvas)}"
            )
        else:
            continue
        problems.append(Problem("error", setting, problem))
    return problems


def _id_fix(setting: str, is_canvas: bool) -> str:
    if is_canvas:
        return (
            "the canvas ID is the last part of the canvas link, "
            f".../docs/<team>/F..., or leave {setting} unset so EPMPulse creates "
            "the channel canvas"
        )
    return (
        "copy the channel ID from the channel details (click the channel name; the "
        "ID is at the bottom)"
    )


def _catalog_uses_arcs(settings: Settings) -> bool:
    try:
        catalog = load_catalog(settings)
    except CatalogError:
        return False
    if catalog.is_open:
        return True
    return any(app.home_board == "arcs" for app in catalog.apps)


def _check_general(settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    try:
        zoneinfo.ZoneInfo(settings.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(
            Problem(
                "error",
                "EPMPULSE_TIMEZONE",
                f"{settings.timezone!r} is not an IANA time zone; use e.g. UTC or "
                "America/New_York",
            )
        )
    if settings.effective_log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        problems.append(
            Problem(
                "error",
                "EPMPULSE_LOG_LEVEL",
                f"{settings.log_level!r} is not a level; use DEBUG, INFO, WARNING or "
                "ERROR",
            )
        )
    for setting, value in (
        ("EPMPULSE_RATE_LIMIT_POST", settings.rate_limit_post),
        ("EPMPULSE_RATE_LIMIT_GET", settings.rate_limit_get),
    ):
        try:
            parse_rate_limit(value, setting)
        except ValueError as exc:
            problems.append(Problem("error", setting, str(exc)))
    if settings.maintenance is not None:
        try:
            parse_maintenance(settings.maintenance)
        except ValueError as exc:
            problems.append(Problem("error", "EPMPULSE_MAINTENANCE", str(exc)))
    unknown_alerts = [
        s for s in settings.alert_on if s.capitalize() not in {"Error", "Warning"}
    ]
    if unknown_alerts:
        problems.append(
            Problem(
                "error",
                "EPMPULSE_ALERT_ON",
                f"{', '.join(unknown_alerts)} cannot raise alerts; use Error, Warning "
                "or both, comma-separated",
            )
        )
    return problems


def load_catalog(settings: Settings) -> Catalog:
    """Load apps.json; the default path may be absent (then any row is accepted)."""
    path = settings.apps_config_path
    if not settings.apps_config_required and not path.exists():
        return Catalog()
    return Catalog.load(path)


def _check_catalog(settings: Settings) -> list[Problem]:
    path = settings.apps_config_path
    try:
        catalog = load_catalog(settings)
    except CatalogError as exc:
        if exc.problems:
            return [
                Problem("error", "EPMPULSE_APPS_CONFIG", f"{path}: {problem}")
                for problem in exc.problems
            ]
        return [Problem("error", "EPMPULSE_APPS_CONFIG", str(exc))]
    problems = [
        Problem("error", "EPMPULSE_APPS_CONFIG", f"{path}: {entry}")
        for entry in catalog.unusable_entries()
    ]
    return problems + _check_pull_mode(settings, catalog)


def _epm_block_text(where: str, error: ErrorDetails) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key; an epm block has the keys url, product and application"
    if error["type"] == "missing":
        return "missing"
    # The epm validators start their messages with the key, as "epm.url: ...".
    text = error["msg"].removeprefix("Value error, ").removeprefix(f"{where}: ")
    return text.replace("Input should be", "must be")


def _check_pull_mode(settings: Settings, catalog: Catalog) -> list[Problem]:
    problems: list[Problem] = []
    epm_apps = [app for app in catalog.apps if app.epm is not None]
    if not epm_apps:
        return problems  # before importing the EPM client, which local mode skips

    from bot.pull import auth_method_summary, epm_auth_settings, token_store
    from epm.auth import client_credentials_warning
    from epm.config import EpmBlock

    for app in epm_apps:
        try:
            block = EpmBlock.model_validate(app.epm)
        except ValidationError as exc:
            for error in exc.errors():
                where = "epm." + ".".join(str(part) for part in error["loc"])
                problems.append(
                    Problem(
                        "error",
                        "EPMPULSE_APPS_CONFIG",
                        f"app {app.name}: {where}: {_epm_block_text(where, error)}",
                    )
                )
            continue
        host = urlsplit(block.url).hostname or ""
        if host == "example.com" or host.endswith(".example.com"):
            problems.append(
                Problem(
                    "warning",
                    "EPMPULSE_APPS_CONFIG",
                    f"app {app.name}: epm.url is still the example host {host}: set "
                    "it to the URL of your EPM pod",
                )
            )
    method = auth_method_summary(settings)
    if method is None:
        problems.append(
            Problem(
                "warning",
                "EPM_USERNAME",
                "apps.json has epm blocks but no EPM sign-in is configured, so pull "
                "mode is off: run 'epmpulse epm-login' (with EPM_TOKEN_URL, "
                "EPM_CLIENT_ID and EPM_SCOPE) or set EPM_USERNAME and EPM_PASSWORD",
            )
        )
        return problems
    problems.append(Problem("info", "EPM", f"pull mode will sign in with {method}"))
    stored = token_store(settings).load()
    warning = client_credentials_warning(epm_auth_settings(settings), stored)
    if warning:
        problems.append(Problem("warning", "EPM_CLIENT_SECRET", warning))
    if settings.epm_username and settings.epm_password is None:
        problems.append(
            Problem(
                "error",
                "EPM_PASSWORD",
                "missing: Basic sign-in needs EPM_PASSWORD with EPM_USERNAME",
            )
        )
    return problems


def _check_epm_settings(settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    client_fix = (
        "copy it from the integrated application in the OCI identity domain, or "
        "leave it empty when EPM rules post to EPMPulse"
    )
    plain: list[tuple[str, str | None, str]] = [
        ("EPM_CLIENT_ID", settings.epm_client_id, client_fix),
        ("EPM_SCOPE", settings.epm_scope, client_fix),
    ]
    for setting, value, fix in plain:
        mark = None if value is None else placeholder_mark(value)
        if mark is not None:
            problems.append(
                Problem(
                    "error", setting, f"is a placeholder (it contains '{mark}'): {fix}"
                )
            )
    secrets = [
        ("EPM_CLIENT_SECRET", settings.epm_client_secret, client_fix),
        (
            "EPM_REFRESH_TOKEN",
            settings.epm_refresh_token,
            "run 'epmpulse epm-login', which stores a refresh token, and leave this "
            "empty",
        ),
    ]
    for setting, secret, fix in secrets:
        if secret is None:
            continue
        problem = _secret_problem(
            secret.get_secret_value(),
            _KEY_CHARS,
            "EPM client secrets and refresh tokens are printable ASCII without spaces",
            fix,
        )
        if problem is not None:
            problems.append(Problem("error", setting, problem))
    if settings.epm_token_url is not None:
        problems += _check_token_url(settings.epm_token_url)
    return problems


def _check_token_url(value: str) -> list[Problem]:
    from epm.config import check_service_url

    fix = f"set it to the token endpoint of the OCI identity domain, {TOKEN_URL_FORM}"
    mark = placeholder_mark(value)
    if mark is not None:
        return [
            Problem(
                "error",
                "EPM_TOKEN_URL",
                f"is a placeholder (it contains '{mark}'): {fix}",
            )
        ]
    parts = urlsplit(value)
    # Checked here so that the value is not shown: it may contain a password.
    if parts.scheme.lower() not in ("https", "http") or not parts.hostname:
        return [Problem("error", "EPM_TOKEN_URL", f"is not an absolute URL: {fix}")]
    try:
        check_service_url("EPM_TOKEN_URL", value)
    except ValueError as exc:
        return [Problem("error", "EPM_TOKEN_URL", str(exc))]
    if not parts.path.rstrip("/").endswith("/token"):
        return [
            Problem(
                "warning",
                "EPM_TOKEN_URL",
                f"the path does not end in /token, so this is probably not the token "
                f"endpoint: {fix} (epmpulse epm-login needs it)",
            )
        ]
    return []
