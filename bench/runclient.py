"""Run ``bench.client`` in its own process and return its JSON result."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench.procs import API_KEY, REPO


def run_client(mode: str, url: str, *options: str, timeout: float) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.client", mode, url, API_KEY, *options]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"load client failed: {result.stderr.strip()[-2000:]}")
    data: dict[str, Any] = json.loads(result.stdout)
    if data.get("error_count"):
        raise RuntimeError(f"load client saw failed requests: {data['errors']}")
    return data
