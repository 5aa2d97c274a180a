"""An exclusive lock on a data dir, held by the server for as long as it runs.

TinyDB keeps its document in memory and rewrites the whole file on each write, so two
processes on one data dir would silently overwrite each other's updates. The server
takes this lock at start; ``epmpulse restore`` takes it too, so it cannot replace the
files under a running server. The lock is ``fcntl.flock`` on ``<data dir>/.lock``: the
kernel drops it when the process exits, even after kill -9, so a stale lock file
never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from store.files import ensure_private_dir
from store.store import DATA_DIR_MODE, DATA_FILE_MODE

LOCK_FILE = ".lock"


class DataDirLocked(Exception):
    """Another process holds the lock. ``pid`` is its process id, if it wrote one."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"data dir {data_dir} is in use by {holder}, which runs EPMPulse or a "
            "restore. Two servers on one data dir would overwrite each other's "
            "writes: stop the other one, or give this one its own EPMPULSE_DATA_DIR."
        )


class DataDirLock:
    """Usage::

    lock = DataDirLock(Path("data"))
    lock.acquire()      # raises DataDirLocked while another process holds it
    ...
    lock.release()
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock without waiting and write this process id into the file.

        Creates the data dir (0750) if needed. Raises DataDirLocked when another
        process holds the lock, and OSError when the file cannot be opened.
        """
        if self._fd is not None:
            return
        ensure_private_dir(self.data_dir, DATA_DIR_MODE)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, DATA_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirLocked(self.data_dir, read_lock_pid(self.data_dir)) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.fchmod(fd, DATA_FILE_MODE)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock. The file stays, because removing it would let a second
        process lock a new file while a third still holds the old one."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_lock_pid(data_dir: Path) -> int | None:
    """Return the process id written in the lock file, or None."""
    try:
        text = (data_dir / LOCK_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
