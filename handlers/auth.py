"""API keys for the webhook: constant-time checks against every configured key."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key and the label that stands for it in logs (the key itself never does)."""

    label: str
    secret: str

    def __repr__(self) -> str:
        return f"ApiKey(label={self.label!r}, secret='***')"


class Keyring:
    """The accepted keys. ``replace`` swaps them in one step, for a reload."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys: tuple[tuple[str, bytes], ...] = ()
        # Called with the new keys on each replace, so that the log redaction also
        # masks keys that come from a file or a reload.
        self.on_replace: Callable[[list[ApiKey]], None] | None = None
        self.replace(keys)

    def replace(self, keys: Iterable[ApiKey]) -> None:
        keys = list(keys)
        self._keys = tuple((key.label, key.secret.encode()) for key in keys)
        if self.on_replace is not None:
            self.on_replace(keys)

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self._keys]

    def __len__(self) -> int:
        return len(self._keys)

    def match(self, authorization: str | None) -> str | None:
        """Return the label of the key in an ``Authorization: Bearer`` header, or None.

        Every key is compared, each with hmac.compare_digest, so the time taken does
        not tell which key or how much of it matched.
        """
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        offered = token.strip().encode()
        found: str | None = None
        for label, secret in self._keys:
            if hmac.compare_digest(offered, secret) and found is None:
                found = label
        return found
