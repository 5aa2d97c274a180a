"""Find every configuration problem at once, each with its fix.

``epmpulse check-config`` prints them; ``epmpulse serve`` refuses to start while any
error remains. Warnings are printed but do not stop the server.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from bot.keys import KeyConfigError, keys_from_settings
from bot.settings import Settings
from handlers.ratelimit import parse_rate_limit
from store.catalog import Catalog, CatalogError
from store.maintenance import parse_maintenance

Severity = Literal["error", "warning", "info"]

# Values copied from the deployment guide's example .env, never real ones.
PLACEHOLDERS = {
    "your_secure_64_character_api_key_here",
    "xoxb-your-bot-token-here",
    "xapp-your-app-token-here",
    "C0123456789",
    "F0123456789",
    "C9876543210",
    "F9876543210",
}
_PLACEHOLDER_PATTERN = re.compile(r"(?i)(your[_-]|x{8,}|changeme|example)")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{8,}$")
_CANVAS_ID = re.compile(r"^F[A-Z0-9]{8,}$")
MIN_KEY_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Severity
    setting: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.setting}: {self.message}"


def problems_from_validation(error: ValidationError) -> list[Problem]:
    """Turn pydantic's errors about environment values into problems."""
    problems = []
    for item in error.errors():
        setting = str(item["loc"][0]).upper() if item["loc"] else "settings"
        value = item.get("input")
        shown = "" if _looks_secret(setting) else f" (value {value!r})"
        problems.append(Problem("error", setting, f"{item['msg']}{shown}"))
    return problems


def _looks_secret(setting: str) -> bool:
    return any(word in setting for word in ("KEY", "TOKEN", "SECRET", "PASSWORD"))


def _is_placeholder(value: str) -> bool:
    return value in PLACEHOLDERS or bool(_PLACEHOLDER_PATTERN.search(value))


def check_settings(settings: Settings) -> list[Problem]:
    """Return every problem of a loaded configuration (files included)."""
    problems: list[Problem] = []
    problems += _check_keys(settings)
    problems += _check_slack(settings)
    problems += _check_general(settings)
    problems += _check_catalog(settings)
    return problems


def _check_keys(settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    try:
        keys = keys_from_settings(settings)
    except KeyConfigError as exc:
        return [Problem("error", "EPMPULSE_API_KEYS_FILE", str(exc))]
    for key in keys:
        if _is_placeholder(key.secret):
            problems.append(
                Problem(
                    "error",
                    "EPMPULSE_API_KEY",
                    f"key {key.label} is still the example value; generate one with "
                    "'openssl rand -hex 32'",
                )
            )
        elif len(key.secret) < MIN_KEY_LENGTH:
            problems.append(
                Problem(
                    "error",
                    "EPMPULSE_API_KEY",
                    f"key {key.label} is shorter than {MIN_KEY_LENGTH} characters; "
                    "generate one with 'openssl rand -hex 32'",
                )
            )
    if not keys:
        if settings.mode != "local":
            problems.append(
                Problem(
                    "error",
                    "EPMPULSE_API_KEY",
                    "missing: Slack modes need a configured key. Set EPMPULSE_API_KEY "
                    "or EPMPULSE_API_KEYS_FILE ('openssl rand -hex 32' makes one)",
                )
            )
        elif settings.is_production:
            problems.append(
                Problem(
                    "error",
                    "EPMPULSE_API_KEY",
                    "missing: EPMPULSE_ENV=production refuses a generated key. Set "
                    "EPMPULSE_API_KEY or EPMPULSE_API_KEYS_FILE",
                )
            )
    return problems


def _check_slack(settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    bot = settings.slack_bot_token
    app = settings.slack_app_token
    if bot is not None:
        value = bot.get_secret_value()
        if _is_placeholder(value):
            problems.append(
                Problem(
                    "error",
                    "SLACK_BOT_TOKEN",
                    "still the example value; copy the Bot User OAuth Token (xoxb-...) "
                    "from the app's OAuth & Permissions page",
                )
            )
        elif not value.startswith("xoxb-"):
            problems.append(
                Problem(
                    "error",
                    "SLACK_BOT_TOKEN",
                    "must start with xoxb- (the Bot User OAuth Token, not a user or "
                    "app token)",
                )
            )
    if app is not None:
        value = app.get_secret_value()
        if bot is None:
            problems.append(
                Problem(
                    "error",
                    "SLACK_APP_TOKEN",
                    "is set but SLACK_BOT_TOKEN is not: Socket Mode needs both",
                )
            )
        if _is_placeholder(value) or not value.startswith("xapp-"):
            problems.append(
                Problem(
                    "error",
                    "SLACK_APP_TOKEN",
                    "must be an app-level token starting with xapp- (Basic Information "
                    "> App-Level Tokens, scope connections:write)",
                )
            )
    if settings.slack_signing_secret is not None and bot is None:
        problems.append(
            Problem(
                "error",
                "SLACK_SIGNING_SECRET",
                "is set but SLACK_BOT_TOKEN is not: HTTP mode needs both",
            )
        )
    ids: list[tuple[str, str | None, re.Pattern[str], str]] = [
        ("SLACK_MAIN_CHANNEL_ID", settings.slack_main_channel_id, _CHANNEL_ID, "C"),
        ("SLACK_ARCS_CHANNEL_ID", settings.slack_arcs_channel_id, _CHANNEL_ID, "C"),
        ("SLACK_MAIN_CANVAS_ID", settings.slack_main_canvas_id, _CANVAS_ID, "F"),
        ("SLACK_ARCS_CANVAS_ID", settings.slack_arcs_canvas_id, _CANVAS_ID, "F"),
    ]
    for setting, configured, pattern, kind in ids:
        if configured is None:
            continue
        value = configured
        if value in PLACEHOLDERS:
            problems.append(
                Problem(
                    "error",
                    setting,
                    f"{value!r} is the deployment guide's example; use your own ID",
                )
            )
        elif not pattern.match(value):
            problems.append(
                Problem(
                    "error",
                    setting,
                    f"{value!r} is not a Slack ID (expected {kind} followed by capital "
                    "letters and digits, as shown in the channel details)",
                )
            )
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
    try:
        catalog = load_catalog(settings)
    except CatalogError as exc:
        return [Problem("error", "EPMPULSE_APPS_CONFIG", str(exc))]
    return _check_pull_mode(settings, catalog)


def _check_pull_mode(settings: Settings, catalog: Catalog) -> list[Problem]:
    from bot.pull import auth_method_summary, epm_auth_settings, token_store
    from epm.auth import client_credentials_warning
    from epm.config import EpmBlock

    problems: list[Problem] = []
    epm_apps = [app for app in catalog.apps if app.epm is not None]
    for app in epm_apps:
        try:
            EpmBlock.model_validate(app.epm)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"])
                problems.append(
                    Problem(
                        "error",
                        "EPMPULSE_APPS_CONFIG",
                        f"app {app.name}: epm.{where}: {error['msg']}",
                    )
                )
    if not epm_apps:
        return problems
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
