"""Settings from the environment and an optional ``.env`` file.

The variable names are the ones of the EPMPulse deployment guide, so an existing
``.env`` keeps working. Values are only type-checked here; ``bot.config_check``
finds the problems a person has to fix (placeholders, malformed IDs, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from store.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]

DEFAULT_APPS_CONFIG = Path("config/apps.json")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# NoDecode hands the raw "a,b" string to _split_csv; without it pydantic-settings
# parses a list from the environment as JSON and rejects the comma-separated form.
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- core --------------------------------------------------------------
    api_key: SecretStr | None = Field(None, validation_alias=_env("EPMPULSE_API_KEY"))
    api_keys_file: Path | None = Field(
        None, validation_alias=_env("EPMPULSE_API_KEYS_FILE")
    )
    env: str = Field("development", validation_alias=_env("EPMPULSE_ENV"))
    debug: bool = Field(False, validation_alias=_env("EPMPULSE_DEBUG"))
    host: str = Field("127.0.0.1", validation_alias=_env("EPMPULSE_HOST"))
    port: int = Field(18800, ge=0, le=65535, validation_alias=_env("EPMPULSE_PORT"))
    log_level: str = Field("INFO", validation_alias=_env("EPMPULSE_LOG_LEVEL"))
    log_format: Literal["text", "json"] = Field(
        "text", validation_alias=_env("EPMPULSE_LOG_FORMAT")
    )
    log_file: Path | None = Field(None, validation_alias=_env("EPMPULSE_LOG_FILE"))
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", validation_alias=_env("EPMPULSE_EVENT_LOOP")
    )
    data_dir: Path = Field(Path("data"), validation_alias=_env("EPMPULSE_DATA_DIR"))
    apps_config: Path | None = Field(
        None, validation_alias=_env("EPMPULSE_APPS_CONFIG")
    )
    timezone: str = Field("UTC", validation_alias=_env("EPMPULSE_TIMEZONE"))
    canvas_debounce_seconds: Duration = Field(
        2.0, validation_alias=_env("EPMPULSE_CANVAS_DEBOUNCE_SECONDS")
    )

    # --- Slack -------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_BOT_TOKEN")
    )
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_APP_TOKEN")
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_SIGNING_SECRET")
    )
    slack_api_url: str = Field(
        "https://slack.com/api/", validation_alias=_env("SLACK_API_URL")
    )
    slack_main_channel_id: str | None = Field(
        None, validation_alias=_env("SLACK_MAIN_CHANNEL_ID")
    )
    slack_main_canvas_id: str | None = Field(
        None, validation_alias=_env("SLACK_MAIN_CANVAS_ID")
    )
    slack_arcs_channel_id: str | None = Field(
        None, validation_alias=_env("SLACK_ARCS_CHANNEL_ID")
    )
    slack_arcs_canvas_id: str | None = Field(
        None, validation_alias=_env("SLACK_ARCS_CANVAS_ID")
    )

    # --- runs, stuck jobs and alerts -----------------------------------------
    history_days: int = Field(90, ge=1, validation_alias=_env("EPMPULSE_HISTORY_DAYS"))
    stuck_after: Duration = Field(7200.0, validation_alias=_env("EPMPULSE_STUCK_AFTER"))
    maintenance: str | None = Field(None, validation_alias=_env("EPMPULSE_MAINTENANCE"))
    alert_on: CsvList = Field(
        default_factory=lambda: ["Error", "Warning"],
        validation_alias=_env("EPMPULSE_ALERT_ON"),
    )
    alert_bundle_seconds: Duration = Field(
        5.0, validation_alias=_env("EPMPULSE_ALERT_BUNDLE_SECONDS")
    )
    flap_threshold: int = Field(
        5, ge=1, validation_alias=_env("EPMPULSE_FLAP_THRESHOLD")
    )

    # --- limits ------------------------------------------------------------
    rate_limit_post: str = Field(
        "1200 per minute", validation_alias=_env("EPMPULSE_RATE_LIMIT_POST")
    )
    rate_limit_get: str = Field(
        "600 per minute", validation_alias=_env("EPMPULSE_RATE_LIMIT_GET")
    )
    trusted_proxies: CsvList = Field(
        default_factory=list, validation_alias=_env("EPMPULSE_TRUSTED_PROXIES")
    )
    max_rows: int = Field(500, ge=1, validation_alias=_env("EPMPULSE_MAX_ROWS"))
    max_history_per_row: int = Field(
        10_000, ge=1, validation_alias=_env("EPMPULSE_MAX_HISTORY_PER_ROW")
    )

    # --- Oracle EPM (pull mode) ----------------------------------------------
    epm_poll_seconds: Duration = Field(30.0, validation_alias=_env("EPM_POLL_SECONDS"))
    epm_maintenance_retry_seconds: Duration = Field(
        120.0, validation_alias=_env("EPM_MAINTENANCE_RETRY_SECONDS")
    )
    epm_username: str | None = Field(None, validation_alias=_env("EPM_USERNAME"))
    epm_password: SecretStr | None = Field(None, validation_alias=_env("EPM_PASSWORD"))
    epm_token_url: str | None = Field(None, validation_alias=_env("EPM_TOKEN_URL"))
    epm_client_id: str | None = Field(None, validation_alias=_env("EPM_CLIENT_ID"))
    epm_client_secret: SecretStr | None = Field(
        None, validation_alias=_env("EPM_CLIENT_SECRET")
    )
    epm_scope: str | None = Field(None, validation_alias=_env("EPM_SCOPE"))
    epm_refresh_token: SecretStr | None = Field(
        None, validation_alias=_env("EPM_REFRESH_TOKEN")
    )

    @field_validator(
        "slack_main_channel_id",
        "slack_main_canvas_id",
        "slack_arcs_channel_id",
        "slack_arcs_canvas_id",
        "epm_username",
        "epm_token_url",
        "epm_client_id",
        "epm_scope",
        "maintenance",
        "apps_config",
        "api_keys_file",
        "log_file",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator(
        "api_key",
        "slack_bot_token",
        "slack_app_token",
        "slack_signing_secret",
        "epm_password",
        "epm_client_secret",
        "epm_refresh_token",
        mode="before",
    )
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    # --- derived -----------------------------------------------------------

    @property
    def apps_config_path(self) -> Path:
        return self.apps_config or DEFAULT_APPS_CONFIG

    @property
    def apps_config_required(self) -> bool:
        """An explicitly configured apps.json must exist; the default may be absent."""
        return self.apps_config is not None

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def is_production(self) -> bool:
        return self.env.strip().lower() in {"production", "prod"}

    @property
    def mode(self) -> Literal["socket", "http", "publish-only", "local"]:
        """Socket Mode wins over HTTP mode when both are configured."""
        if self.slack_bot_token is None:
            return "local"
        if self.slack_app_token is not None:
            return "socket"
        if self.slack_signing_secret is not None:
            return "http"
        return "publish-only"

    @property
    def effective_log_level(self) -> str:
        return "DEBUG" if self.debug else self.log_level.upper()

    def secret_values(self) -> list[str]:
        """Return every configured secret, for the log redaction filter."""
        values = [
            self.api_key,
            self.slack_bot_token,
            self.slack_app_token,
            self.slack_signing_secret,
            self.epm_password,
            self.epm_client_secret,
            self.epm_refresh_token,
        ]
        secrets = [v.get_secret_value() for v in values if v is not None]
        if self.api_key is not None:
            secrets.extend(self.api_key.get_secret_value().split(","))
        return [s.strip() for s in secrets if len(s.strip()) >= 6]
