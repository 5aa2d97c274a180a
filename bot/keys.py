"""Sources of the webhook's API keys: the environment, a keys file, or a key
generated in local mode."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from bot.settings import Settings
from handlers.auth import ApiKey
from store.files import ensure_private_dir, write_atomic

log = logging.getLogger(__name__)

GENERATED_KEY_FILE = "api_key"
SECRETS_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600
MIN_KEY_LENGTH = 16
# The key-generation command that every message suggests.
KEY_COMMAND = "openssl rand -hex 32"
# Permission bits a keys file must not have: any for others, and write or execute
# for the group. 0600, or 0640 for a group that only reads, is fine.
_LOOSE_KEYS_FILE_BITS = stat.S_IRWXO | stat.S_IWGRP | stat.S_IXGRP


class KeyConfigError(ValueError):
    """The keys file is unreadable or malformed.

    ``problems`` contains one entry per bad line ("line 3 is not 'label:key' ..."),
    or the reason the file could not be read. The message names the file and lists
    every problem.
    """

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__(f"EPMPULSE_API_KEYS_FILE {path}: {'; '.join(self.problems)}")


def keys_from_settings(settings: Settings) -> list[ApiKey]:
    """Return the configured keys: ``EPMPULSE_API_KEY`` (comma-separated, labelled
    ``env-1``, ``env-2``, ...) followed by the ``label:key`` lines of the keys file.

    Raises KeyConfigError listing every bad line of the keys file."""
    keys = env_keys(settings)
    if settings.api_keys_file is not None:
        keys.extend(read_keys_file(settings.api_keys_file))
    return keys


def env_keys(settings: Settings) -> list[ApiKey]:
    """Return the keys of ``EPMPULSE_API_KEY``, labelled ``env-1``, ``env-2``, ..."""
    if settings.api_key is None:
        return []
    parts = [p.strip() for p in settings.api_key.get_secret_value().split(",")]
    return [
        ApiKey(f"env-{index}", part)
        for index, part in enumerate((p for p in parts if p), start=1)
    ]


def read_keys_file(path: Path) -> list[ApiKey]:
    """Parse ``label:key`` lines; blank lines and ``#`` comments are skipped.

    Raises KeyConfigError when the file is unreadable or any line is bad, listing
    every bad line at once."""
    keys, problems = parse_keys_file(path)
    if problems:
        raise KeyConfigError(path, problems)
    return keys


def parse_keys_file(path: Path) -> tuple[list[ApiKey], list[str]]:
    """Return the valid keys of the file and a problem for each bad line.

    Raises KeyConfigError when the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise KeyConfigError(
            path,
            [
                f"the file is unreadable ({reason}): check the path and that the "
                "user running EPMPulse can read it"
            ],
        ) from exc
    keys: list[ApiKey] = []
    problems: list[str] = []
    labels: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, sep, secret = line.partition(":")
        label, secret = label.strip(), secret.strip()
        if not sep or not label or not secret:
            problems.append(
                f"line {number} is not 'label:key': write one key per line, e.g. "
                "'planning-prod:<key>'"
            )
        elif len(secret) < MIN_KEY_LENGTH:
            problems.append(
                f"line {number} ({label}): the key is shorter than {MIN_KEY_LENGTH} "
                f"characters: generate one with '{KEY_COMMAND}'"
            )
        elif label in labels:
            problems.append(
                f"line {number}: label {label!r} is used twice: give each key its "
                "own label"
            )
        else:
            labels.add(label)
            keys.append(ApiKey(label, secret))
    return keys, problems


def keys_file_permission_problem(path: Path) -> str | None:
    """Describe loose permissions of the keys file, or return None when it has
    none (or cannot be examined, which reading it reports)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & _LOOSE_KEYS_FILE_BITS:
        return None
    return (
        f"{path} has mode {mode:04o}, so other users can read or change the keys: "
        f"run 'chmod 600 {path}' (0640 if a group must read it) and make it owned "
        "by the user that runs EPMPulse"
    )


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
    one, else the generated one if it exists. Raises KeyConfigError like
    keys_from_settings."""
    keys = keys_from_settings(settings)
    if keys:
        return keys[0].secret
    path = generated_key_path(settings)
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    return None


def key_search_report(settings: Settings) -> list[str]:
    """Describe each place client_key looked, for when it found no key."""
    keys_file = settings.api_keys_file
    generated = Path(os.path.abspath(generated_key_path(settings)))
    data_dir = f"EPMPULSE_DATA_DIR is {settings.data_dir}"
    if not settings.data_dir.is_absolute():
        data_dir += f", relative to the current directory {Path.cwd()}"
    return [
        "EPMPULSE_API_KEY: not set",
        "EPMPULSE_API_KEYS_FILE: "
        + ("not set" if keys_file is None else f"{keys_file} has no keys"),
        f"{generated}: not found, so local mode has not generated a key in this "
        f"data dir ({data_dir})",
    ]
