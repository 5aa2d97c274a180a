"""Durable file writes: a reader sees the old file or the new one, never a mix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Flush a directory entry, so a rename or a new file survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Replace ``path`` with ``data`` through a fsync'd temp file and a rename.

    Raises OSError (for example ENOSPC or EROFS) and leaves the old file in place.
    """
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(temp_name, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def ensure_private_dir(path: Path, mode: int) -> Path:
    """Create a folder if needed and set its mode (0700 for secrets, 0750 for data)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path
