"""A TinyDB storage that writes atomically and refuses to open a damaged file.

TinyDB's own JSONStorage rewrites its file in place, so a crash in the middle of a
write leaves half a file. This storage keeps the document in memory and writes it
only when ``flush`` is called, with write_atomic, so the store decides when one
durable write covers a whole group of updates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from store.files import write_atomic


class StoreCorruptError(Exception):
    """A data file cannot be read back. The message names the file and the fix."""


class AtomicJSONStorage(Storage):
    def __init__(self, path: str | Path, mode: int = 0o640) -> None:
        self.path = Path(path)
        self.mode = mode
        self._data: dict[str, dict[str, Any]] | None = None
        self._dirty = False
        self._data = self._load()

    def _load(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if not raw.strip():
            raise StoreCorruptError(
                f"data file {self.path} is empty. It was not written by EPMPulse or "
                "was truncated: restore it from a backup (epmpulse restore) or move "
                "it away, and EPMPulse rebuilds the board from the history."
            )
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreCorruptError(
                f"data file {self.path} is corrupt ({exc}). Restore it from a backup "
                "(epmpulse restore) or move it away, and EPMPulse rebuilds the board "
                "from the history; EPMPulse does not overwrite it."
            ) from exc
        if not isinstance(data, dict) or not all(
            isinstance(table, dict) for table in data.values()
        ):
            raise StoreCorruptError(
                f"data file {self.path} is not a TinyDB database (expected an object "
                "of tables). Restore it from a backup or move it away."
            )
        return data

    def read(self) -> dict[str, dict[str, Any]] | None:
        return self._data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self._data = data
        self._dirty = True

    def flush(self) -> None:
        """Write the document to disk if it changed. Raises OSError on failure."""
        if not self._dirty or self._data is None:
            return
        encoded = json.dumps(self._data, separators=(",", ":")).encode()
        write_atomic(self.path, encoded, self.mode)
        self._dirty = False

    def rollback(self) -> None:
        """Forget unflushed changes by reading the file again (after a failed flush)."""
        self._data = self._load()
        self._dirty = False

    def close(self) -> None:
        pass
