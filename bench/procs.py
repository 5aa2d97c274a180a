"""Start and stop the servers under test, and read their memory and CPU time.

Every server listens on 127.0.0.1 on a free port and logs to a file in its work
folder. ``start`` returns once ``GET /health`` returns 200, and records how long that
took from the moment the process was spawned.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

API_KEY = "bench-key-0123456789abcdef"
# Raised far above the default 1200/minute POST and 600/minute GET per key, as an
# operator would for a load test, so that no request of the benchmark gets a 429.
RATE_LIMIT = "10000000 per minute"
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def epmpulse_command() -> list[str]:
    """``epmpulse serve`` from the virtualenv that runs the benchmark."""
    script = Path(sys.executable).parent / "epmpulse"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "bot", "serve"]


def server_env(data_dir: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "EPMPULSE_", "EPM_"))
    }
    env.update(
        {
            "EPMPULSE_DATA_DIR": str(data_dir),
            "EPMPULSE_HOST": "127.0.0.1",
            "EPMPULSE_PORT": str(port),
            "EPMPULSE_API_KEY": API_KEY,
            "EPMPULSE_APPS_CONFIG": "",
            "EPMPULSE_LOG_LEVEL": "INFO",
            "EPMPULSE_RATE_LIMIT_POST": RATE_LIMIT,
            "EPMPULSE_RATE_LIMIT_GET": RATE_LIMIT,
        }
    )
    env.update(extra)
    return env


@dataclass
class Server:
    """A running server process. ``ready_seconds`` is spawn to first /health 200."""

    name: str
    command: list[str]
    env: dict[str, str]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    ready_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            spawned = time.perf_counter()
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = spawned + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            if _healthy(self.url):
                self.ready_seconds = time.perf_counter() - spawned
                return self
            time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready in {timeout} s")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# No proxy from the environment: every request goes straight to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(url: str) -> bool:
    try:
        with _OPENER.open(url + "/health", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def epmpulse(workdir: Path, extra_env: dict[str, str] | None = None) -> Server:
    """``epmpulse serve`` with its data in ``workdir/data``."""
    port = free_port()
    env = server_env(workdir / "data", port, extra_env or {})
    return Server("epmpulse", epmpulse_command(), env, workdir, port)


def epmpulse_from(
    workdir: Path, code: Path | None, extra_env: dict[str, str] | None = None
) -> Server:
    """``epmpulse serve`` run from the packages in ``code`` (first on PYTHONPATH),
    or from the working tree when ``code`` is None."""
    server = epmpulse(workdir, extra_env)
    if code is not None:
        server.command = [sys.executable, "-m", "bot", "serve"]
        server.env["PYTHONPATH"] = str(code.resolve())
    return server


def env_pairs(values: list[str]) -> dict[str, str]:
    """Parse ``NAME=VALUE`` command line arguments."""
    pairs = {}
    for value in values:
        name, sep, setting = value.partition("=")
        if not sep:
            raise SystemExit(f"expected NAME=VALUE, not {value!r}")
        pairs[name] = setting
    return pairs


def bare(workdir: Path, loop: str = "asyncio") -> Server:
    """The baseline: a bare aiohttp handler that returns 200, on ``loop``
    (``asyncio`` or ``uvloop``)."""
    port = free_port()
    command = [sys.executable, str(BENCH_DIR / "bare_server.py"), str(port), loop]
    env = dict(os.environ)
    return Server(f"bare-aiohttp-{loop}", command, env, workdir, port)


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
