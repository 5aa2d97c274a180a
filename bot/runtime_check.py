"""Check the settings against this machine: the data dir and its data file, the log
file and the listen address.

``check-config`` runs these next to ``bot.config_check``, so it reports what would
stop ``serve``. The checks only read: they create, open for writing or change no
file, and the port check binds a socket and closes it at once.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from bot.config_check import Problem
from bot.hostnames import host_problem
from bot.settings import Settings
from store.store import record_from_doc
from store.tinydb_storage import AtomicJSONStorage, StoreCorruptError

DATA_FILE = "epmpulse.json"
HOST_FIX = (
    "use 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or an address of "
    "this machine"
)


def check_runtime(settings: Settings) -> list[Problem]:
    """Return the problems that would stop ``serve`` on this machine, except a
    port in use (see check_port)."""
    problems = _check_data_dir(settings.data_dir)
    if not problems:
        problems += _check_data_file(_absolute(settings.data_dir) / DATA_FILE)
    if settings.log_file is not None:
        problems += _check_log_file(settings.log_file)
    problems += _check_host(settings.host)
    return problems


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _nearest_existing(path: Path) -> Path:
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path(path.anchor or ".")


def _user() -> str:
    return f"the user running this command (uid {os.geteuid()})"


def _check_data_dir(data_dir: Path) -> list[Problem]:
    path = _absolute(data_dir)
    fix = "set EPMPULSE_DATA_DIR to a folder that the user running EPMPulse owns"
    if path.exists() and not path.is_dir():
        return [Problem("error", "EPMPULSE_DATA_DIR", f"{path} is not a folder: {fix}")]
    if not path.exists():
        parent = _nearest_existing(path)
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return [
                Problem(
                    "error",
                    "EPMPULSE_DATA_DIR",
                    f"{path} does not exist and cannot be created, because {parent} "
                    f"is not a folder that {_user()} can write: create it (for "
                    f"example 'install -d -m 0750 -o epmpulse {path}') or {fix}",
                )
            ]
        return []
    if not os.access(path, os.W_OK | os.X_OK):
        return [
            Problem(
                "error",
                "EPMPULSE_DATA_DIR",
                f"{path} is not writable by {_user()}: {fix}",
            )
        ]
    # serve sets the folder's mode at start, which only its owner (or root) may do.
    owner = path.stat().st_uid
    if owner != os.geteuid() and os.geteuid() != 0:
        return [
            Problem(
                "error",
                "EPMPULSE_DATA_DIR",
                f"{path} is owned by uid {owner}, not by {_user()}, so EPMPulse cannot "
                f"set its mode to 0750: run 'chown -R <user> {path}' for the user "
                "that runs EPMPulse",
            )
        ]
    return []


def _check_data_file(path: Path) -> list[Problem]:
    """Read the data file as serve does at start, without writing it."""
    if not path.exists():
        return []
    try:
        data = AtomicJSONStorage(path).read() or {}
    except StoreCorruptError as exc:
        return [Problem("error", "EPMPULSE_DATA_DIR", str(exc))]
    except OSError as exc:
        return [
            Problem(
                "error",
                "EPMPULSE_DATA_DIR",
                f"data file {path} cannot be read ({exc.strerror}): give the user "
                "that runs EPMPulse read and write access to it",
            )
        ]
    for doc in data.get("rows", {}).values():
        try:
            record_from_doc(doc)
        except (KeyError, TypeError, ValueError) as exc:
            return [
                Problem(
                    "error",
                    "EPMPULSE_DATA_DIR",
                    f"data file {path} has an invalid row ({exc}). Restore it from "
                    "a backup (epmpulse restore) or move it away, and EPMPulse "
                    "rebuilds the board from the history.",
                )
            ]
    return []


def _check_log_file(log_file: Path) -> list[Problem]:
    path = _absolute(log_file)
    fix = "or unset EPMPULSE_LOG_FILE to log to stderr only"
    if path.is_dir():
        return [
            Problem(
                "error", "EPMPULSE_LOG_FILE", f"{path} is a folder: name a file {fix}"
            )
        ]
    if path.exists():
        if os.access(path, os.W_OK):
            return []
        problem = f"{path} is not writable by {_user()}"
    else:
        # serve creates a missing folder, if its nearest existing parent allows it.
        folder = path.parent if path.parent.exists() else _nearest_existing(path)
        if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
            return []
        problem = (
            f"{path} cannot be created: {folder} is not a folder {_user()} can write"
        )
    return [
        Problem(
            "error",
            "EPMPULSE_LOG_FILE",
            f"{problem}: create the folder for the user that runs EPMPulse (for "
            f"example 'install -d -o epmpulse {path.parent}') {fix}",
        )
    ]


def _check_host(host: str) -> list[Problem]:
    if host in ("", "0.0.0.0", "::"):
        return []
    problem = host_problem(host)
    if problem is not None:
        return [Problem("error", "EPMPULSE_HOST", f"{problem}: {HOST_FIX}")]
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [
            Problem(
                "error",
                "EPMPULSE_HOST",
                f"{host!r} cannot be resolved ({exc.strerror}): {HOST_FIX}",
            )
        ]
    return []


def check_port(settings: Settings) -> list[Problem]:
    """Bind the listen address for a moment, as serve will, and report why it
    fails. A port in use is only a warning: it may be this EPMPulse, running."""
    host, port = settings.host, settings.port
    if port == 0 or _check_host(host):
        return []
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return []
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # asyncio's create_server (Python 3.11) sets both on Linux too, so a
            # port in TIME_WAIT passes here as it does there.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                setting, message = bind_error(exc, host, port)
                if exc.errno != errno.EADDRINUSE:
                    return [Problem("error", setting, message)]
                note = " (ignore this if the EPMPulse server is running now)"
                return [Problem("warning", setting, message + note)]
    return []


def bind_error(exc: OSError, host: str, port: int) -> tuple[str, str]:
    """Return the setting to change and the message, for a failed bind of the
    listen address ``host:port``."""
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return "EPMPULSE_PORT", (
            f"{where} is already in use by another program: stop it, or set "
            "EPMPULSE_PORT (or EPMPULSE_HOST) to a free address"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            "EPMPULSE_HOST",
            f"{host!r} is not an address of this machine: {HOST_FIX}",
        )
    if exc.errno == errno.EACCES:
        return "EPMPULSE_PORT", (
            f"{where} needs privileges to bind: use a port from 1024 up (the default "
            "is 18800), with a reverse proxy in front for port 443"
        )
    return "EPMPULSE_PORT", f"{where} cannot be bound ({exc.strerror})"
