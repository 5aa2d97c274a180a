"""Where the webhook's API keys come from: the environment, a keys file, or a
generated key in local mode."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from bot.settings import Settings
from handlers.auth import ApiKey
from store.files import ensure_private_dir, write_atomic

log = logging.getLogger(__name__)

GENERATED_KEY_FILE = "api_key"
SECRETS_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600


class KeyConfigError(ValueError):
    """The keys file is unreadable or malformed. The message names the line."""


def keys_from_settings(settings: Settings) -> list[ApiKey]:
    """Return the configured keys: ``EPMPULSE_API_KEY`` (comma-separated, labelled
    ``env-1``, ``env-2``, ...) followed by the ``label:key`` lines of the keys file."""
    keys: list[ApiKey] = []
    if settings.api_key is not None:
        parts = [p.strip() for p in settings.api_key.get_secret_value().split(",")]
        keys.extend(
            ApiKey(f"env-{index}", part)
            for index, part in enumerate((p for p in parts if p), start=1)
        )
    if settings.api_keys_file is not None:
        keys.extend(read_keys_file(settings.api_keys_file))
    return keys


def read_keys_file(path: Path) -> list[ApiKey]:
    """Parse ``label:key`` lines; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        message = f"EPMPULSE_API_KEYS_FILE {path} is unreadable: {exc}"
        raise KeyConfigError(message) from exc
    keys: list[ApiKey] = []
    labels: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, sep, secret = line.partition(":")
        label, secret = label.strip(), secret.strip()
        if not sep or not label or not secret:
            raise KeyConfigError(
                f"EPMPULSE_API_KEYS_FILE {path} line {number} is not 'label:key'. "
                "Write one key per line, e.g. 'planning-prod:<key>'."
            )
        if len(secret) < 16:
            raise KeyConfigError(
                f"EPMPULSE_API_KEYS_FILE {path} line {number} ({label}): the key is "
                "shorter than 16 characters. Generate one with "
                "'python -c \"import secrets; print(secrets.token_hex(32))\"'."
            )
        if label in labels:
            raise KeyConfigError(
                f"EPMPULSE_API_KEYS_FILE {path} line {number}: label {label!r} is "
                "used twice. Give each key its own label."
            )
        labels.add(label)
        keys.append(ApiKey(label, secret))
    return keys


def generated_key_path(settings: Settings) -> Path:
    return settings.secrets_dir / GENERATED_KEY_FILE


def load_or_generate_key(settings: Settings) -> ApiKey:
    """Return the local-mode key, generating and storing it on first use.

    The key lives in ``<data dir>/secrets/api_key`` (folder 0700, file 0600).
    """
    path = generated_key_path(settings)
    if path.exists():
        return ApiKey("generated", path.read_text(encoding="utf-8").strip())
    ensure_private_dir(settings.secrets_dir, SECRETS_DIR_MODE)
    key = secrets.token_urlsafe(32)
    write_atomic(path, key.encode() + b"\n", SECRET_FILE_MODE)
    os.chmod(path, SECRET_FILE_MODE)
    log.info("generated an API key for local mode in %s", path)
    return ApiKey("generated", key)


def client_key(settings: Settings) -> str | None:
    """Return a key for CLI clients (``send``, ``smoke-test``): the first configured
    one, else the generated one if it exists."""
    keys = keys_from_settings(settings)
    if keys:
        return keys[0].secret
    path = generated_key_path(settings)
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    return None
