"""Durable storage of the EPM OAuth refresh token.

Refresh tokens are single-use: each exchange returns a new one and consumes the old
one. A new token must therefore be on disk before anything else happens, or a crash
would leave EPMPulse holding only a consumed token.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from store.files import ensure_private_dir, write_atomic

logger = logging.getLogger(__name__)

TOKEN_FILE_NAME = "epm_tokens.json"


def fingerprint(secret: str) -> str:
    """Return the SHA-256 hex digest: it shows a changed setting without storing it."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A refresh token with what it belongs to.

    ``refreshed_at`` is the Unix time of the last successful exchange (or of the
    device login). ``seed_fingerprint`` is the SHA-256 of the ``EPM_REFRESH_TOKEN``
    setting that was current when this token was stored, so that a changed setting
    can be distinguished from the one this token replaced.
    """

    refresh_token: str = field(repr=False)
    refreshed_at: float
    token_url: str
    client_id: str
    seed_fingerprint: str | None = None

    def belongs_to(self, token_url: str, client_id: str) -> bool:
        return self.token_url == token_url and self.client_id == client_id


class TokenStore:
    """The refresh-token file ``<secrets_dir>/epm_tokens.json``.

    The folder is kept at mode 0700 and the file at 0600. Both methods do blocking
    file I/O: call them from a worker thread when an event loop is running.
    """

    def __init__(self, secrets_dir: Path) -> None:
        self.secrets_dir = secrets_dir
        self.path = secrets_dir / TOKEN_FILE_NAME

    def load(self) -> StoredToken | None:
        """Return the stored token, or None when there is none or it is invalid."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.error(
                "EPM token file %s is unreadable (%s); run `epmpulse epm-login`",
                self.path,
                type(exc).__name__,
            )
            return None
        try:
            return StoredToken(
                refresh_token=str(data["refresh_token"]),
                refreshed_at=float(data["refreshed_at"]),
                token_url=str(data["token_url"]),
                client_id=str(data["client_id"]),
                seed_fingerprint=data.get("seed_fingerprint"),
            )
        except (KeyError, TypeError, ValueError):
            logger.error(
                "EPM token file %s has missing or invalid fields; "
                "run `epmpulse epm-login`",
                self.path,
            )
            return None

    def save(self, token: StoredToken) -> None:
        """Write the token durably (temp file, fsync, rename, fsync folder).

        Raises OSError when the write fails; the previous file is then unchanged.
        """
        ensure_private_dir(self.secrets_dir, 0o700)
        data = {
            "refresh_token": token.refresh_token,
            "refreshed_at": token.refreshed_at,
            "token_url": token.token_url,
            "client_id": token.client_id,
            "seed_fingerprint": token.seed_fingerprint,
        }
        write_atomic(self.path, json.dumps(data, indent=2).encode("utf-8"), 0o600)
