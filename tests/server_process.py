"""Run the real ``epmpulse serve`` as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

API_KEY = "test-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """Usage::

    with ServerProcess(tmp_path, {"EPMPULSE_CANVAS_DEBOUNCE_SECONDS": "0.5"}) as s:
        s.post({"app": "Planning", "domain": "Actual", "status": "OK"})
    """

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        command_prefix: Sequence[str] = (),
    ) -> None:
        """``command_prefix`` runs before ``python -m bot serve``, e.g. ``unshare``;
        it must exec the server, so that ``process.pid`` is the server's."""
        self.data_dir = data_dir
        self.command_prefix = list(command_prefix)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SLACK_", "EPMPULSE_", "EPM_"))
        }
        self.env.update(
            {
                "EPMPULSE_DATA_DIR": str(data_dir),
                "EPMPULSE_HOST": "127.0.0.1",
                "EPMPULSE_PORT": str(self.port),
                "EPMPULSE_API_KEY": API_KEY,
                "EPMPULSE_APPS_CONFIG": "",
                "EPMPULSE_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.env['EPMPULSE_API_KEY']}"

    def start(self, timeout: float = 15.0) -> ServerProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*self.command_prefix, sys.executable, "-m", "bot", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir.parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                requests.get(self.url + "/health", timeout=0.5)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def post(self, body: dict[str, Any], path: str = "/api/v1/status") -> Any:
        return self.session.post(self.url + path, json=body, timeout=10)

    def get(self, path: str) -> Any:
        return self.session.get(self.url + path, timeout=10)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.session.close()
