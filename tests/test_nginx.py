"""EPMPulse behind a real nginx on loopback, configured from the deploy kit's site.

The site's TLS server block and upstream are taken from deploy/nginx/epmpulse.conf
with their locations and body caps unchanged. Only the listener (plain http on a
free loopback port), the upstream port and the log paths are replaced.
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.cli import main
from tests.server_process import API_KEY, ServerProcess, free_port

SITE = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "epmpulse.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()),
    None,
)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (.ci/run installs nginx-light)"
)
SPOOFED = "203.0.113.7"
UNIQUE = "nginx-probe"


def _strip_comments(text: str) -> str:
    return re.sub(r"(^|\s)#[^\n]*", r"\1", text)


def _block(text: str, start: int) -> str:
    """Return the ``{ ... }`` block whose header starts at ``start``."""
    depth = 0
    for index in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start : index + 1]
    raise ValueError("unbalanced braces in the nginx site")


def site_for_test(upstream_port: int, listen_port: int, logs: Path) -> str:
    """The deploy kit's upstream and TLS server block, with plain http on
    ``listen_port``, the upstream on ``upstream_port`` and logs in ``logs``."""
    text = _strip_comments(SITE.read_text(encoding="utf-8"))
    upstream = _block(text, text.index("upstream epmpulse"))
    servers = [_block(text, m.start()) for m in re.finditer(r"\bserver\s*\{", text)]
    tls = [block for block in servers if re.search(r"listen\s+443\b", block)]
    assert len(tls) == 1, f"{SITE} has no single TLS server block"
    upstream, replaced = re.subn(
        r"server\s+127\.0\.0\.1:\d+;", f"server 127.0.0.1:{upstream_port};", upstream
    )
    assert replaced == 1, f"{SITE}: the upstream has no 127.0.0.1 server line"

    lines = []
    for line in tls[0].splitlines():
        stripped = line.strip()
        if stripped.startswith(("listen", "ssl_")):
            continue
        if stripped.startswith("access_log"):
            line = f"    access_log {logs / 'access.log'};"
        elif stripped.startswith("error_log"):
            line = f"    error_log {logs / 'error.log'};"
        lines.append(line)
    lines.insert(1, f"    listen 127.0.0.1:{listen_port};")
    return upstream + "\n" + "\n".join(lines)


def nginx_config(upstream_port: int, listen_port: int, root: Path) -> str:
    temp = {
        name: root / name
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    }
    for folder in temp.values():
        folder.mkdir(exist_ok=True)
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {root / "nginx.pid"};
error_log {root / "error.log"};
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
{site_for_test(upstream_port, listen_port, root)}
}}
"""


@dataclass
class Proxied:
    server: ServerProcess
    nginx_port: int

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        direct: bool = False,
        source: str = "127.0.0.1",
    ) -> tuple[int, dict[str, str], bytes]:
        port = self.server.port if direct else self.nginx_port
        connection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=10, source_address=(source, 0)
        )
        try:
            sent = {"Authorization": f"Bearer {API_KEY}", **(headers or {})}
            connection.request(method, path, body, sent)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def access_lines(self, marker: str) -> list[str]:
        return [
            line
            for line in self.server.log().splitlines()
            if "handlers.access" in line and marker in line
        ]


def _start_nginx(root: Path, upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    assert NGINX is not None
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "nginx.conf"
    config.write_text(nginx_config(upstream_port, port, root))
    command = [NGINX, "-p", str(root), "-c", str(config), "-e", str(root / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, (root / "error.log").read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, port
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError(
        f"nginx did not listen on {port}: {(root / 'error.log').read_text()}"
    )


def _proxied(root: Path, env: dict[str, str]) -> Iterator[Proxied]:
    with ServerProcess(root / "data", env) as server:
        process, port = _start_nginx(root / "nginx", server.port)
        try:
            yield Proxied(server, port)
        finally:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def trusted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    env = {"EPMPULSE_TRUSTED_PROXIES": "127.0.0.1"}
    yield from _proxied(tmp_path_factory.mktemp("trusted"), env)


@pytest.fixture(scope="module")
def untrusted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    yield from _proxied(tmp_path_factory.mktemp("untrusted"), {})


def padded_update(size: int) -> bytes:
    """A valid status update of exactly ``size`` bytes (its message is long)."""
    head = b'{"app": "Proxy", "domain": "Size", "status": "OK", "message": "'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def padded_batch(size: int) -> bytes:
    head = (
        b'{"updates": [{"app": "Proxy", "domain": "Batch", "status": "OK"}], "pad": "'
    )
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


JSON = {"Content-Type": "application/json"}


def test_site_keeps_deploy_kit_locations() -> None:
    site = site_for_test(18800, 8080, Path("/tmp"))
    for location in (
        "location /api/",
        "location = /api/v1/status/batch",
        "location /metrics",
        "location = /health",
    ):
        assert location in site
    assert "ssl_certificate" not in site
    assert "listen 127.0.0.1:8080;" in site


def test_update_passes_through_proxy(trusted: Proxied) -> None:
    body = b'{"app": "Proxy", "domain": "Path", "status": "OK"}'
    status, _, raw = trusted.request("POST", "/api/v1/status", body, JSON)
    assert status == 200, raw
    status, _, raw = trusted.request("GET", "/api/v1/status/Proxy")
    assert status == 200
    assert b'"Path"' in raw


def test_health_passes_through_proxy(trusted: Proxied) -> None:
    status, headers, raw = trusted.request("GET", "/health")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert b'"healthy"' in raw


def test_status_body_of_16k_reaches_app(trusted: Proxied) -> None:
    status, headers, raw = trusted.request(
        "POST", "/api/v1/status", padded_update(16 * 1024), JSON
    )
    assert status == 200, raw
    assert headers["Content-Type"].startswith("application/json")


def test_status_body_over_16k_gets_413_from_nginx(trusted: Proxied) -> None:
    before = len(trusted.access_lines("path=/api/v1/status "))
    status, headers, _ = trusted.request(
        "POST", "/api/v1/status", padded_update(16 * 1024 + 1), JSON
    )
    assert status == 413
    assert headers["Content-Type"].startswith("text/html")
    assert len(trusted.access_lines("path=/api/v1/status ")) == before


def test_batch_body_of_64k_reaches_app(trusted: Proxied) -> None:
    status, headers, raw = trusted.request(
        "POST", "/api/v1/status/batch", padded_batch(64 * 1024), JSON
    )
    assert status == 200, raw
    assert headers["Content-Type"].startswith("application/json")


def test_batch_body_over_64k_gets_413_from_nginx(trusted: Proxied) -> None:
    status, headers, _ = trusted.request(
        "POST", "/api/v1/status/batch", padded_batch(64 * 1024 + 1), JSON
    )
    assert status == 413
    assert headers["Content-Type"].startswith("text/html")


def test_metrics_not_exposed_through_proxy(trusted: Proxied) -> None:
    status, _, _ = trusted.request("GET", "/metrics")
    direct, _, raw = trusted.request("GET", "/metrics", direct=True)
    assert status == 403
    assert direct == 200
    assert b"epmpulse_http_requests" in raw


def test_other_paths_get_404_from_nginx(trusted: Proxied) -> None:
    status, headers, _ = trusted.request("GET", "/")
    assert status == 404
    assert headers["Content-Type"].startswith("text/html")


def _probe(proxied: Proxied, source: str, forwarded: str | None) -> str:
    marker = f"{UNIQUE}-{uuid.uuid4().hex[:8]}"
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    proxied.request("GET", f"/api/v1/status/{marker}", headers=headers, source=source)
    # The server writes the access lines of a loop iteration after its responses.
    deadline = time.monotonic() + 5
    lines = proxied.access_lines(marker)
    while not lines and time.monotonic() < deadline:
        time.sleep(0.02)
        lines = proxied.access_lines(marker)
    assert len(lines) == 1, lines
    return re.search(r"client=(\S+)", lines[0]).group(1)  # type: ignore[union-attr]


def test_trusted_proxy_logs_forwarded_address(trusted: Proxied) -> None:
    assert _probe(trusted, "127.0.0.1", SPOOFED) == SPOOFED


def test_trusted_proxy_logs_client_not_spoofed_hop(trusted: Proxied) -> None:
    assert _probe(trusted, "127.0.0.2", SPOOFED) == "127.0.0.2"


def test_untrusted_proxy_logs_proxy_address(untrusted: Proxied) -> None:
    assert _probe(untrusted, "127.0.0.2", SPOOFED) == "127.0.0.1"


def test_smoke_test_passes_through_proxy(
    trusted: Proxied, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{trusted.nginx_port}"
    code = main(["smoke-test", "--url", url, "--key", API_KEY])
    assert code == 0, capsys.readouterr().out
