"""Run wrk with ``lua/updates.lua`` and read its results.

wrk (Debian package ``wrk``: ``apt-get install wrk``) is the load client for
throughput: one C thread keeps 50 connections busy at a small fraction of one
core, so the client is not what limits the numbers. Its own CPU time is reported
with each run to show that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from bench.procs import API_KEY, BENCH_DIR

SCRIPT = BENCH_DIR / "lua" / "updates.lua"
ROWS = 50


class WrkMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu: float  # CPU seconds of wrk / wall seconds (1.0 = one full core)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(
            "wrk is not installed: install it with 'apt-get install wrk' (Debian "
            "and Ubuntu package) and run the benchmark again"
        )
    return path


def wrk_version() -> str:
    result = subprocess.run(
        [wrk_path(), "--version"], capture_output=True, text=True, check=False
    )
    return (result.stdout or result.stderr).splitlines()[0].split(" [")[0]


def run_wrk(
    url: str, *, connections: int, seconds: int, batch_size: int = 0
) -> WrkResult:
    """Post updates to ``url`` for ``seconds`` from ``connections`` connections.

    wrk takes whole seconds only.
    """
    command = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url + "/",
        "--",
        API_KEY,
        str(ROWS),
        str(batch_size),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    output = process.stdout.read()
    # wait4, unlike Popen.wait, also returns the child's CPU time.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    lines = [line for line in output.splitlines() if line.startswith("BENCH_JSON ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(
            f"wrk failed with exit code {process.returncode}: {output.strip()}"
        )
    data = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    errors = sum(
        data[name]
        for name in (
            "connect_errors",
            "read_errors",
            "write_errors",
            "status_errors",
            "timeouts",
        )
    )
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        client_cpu=(usage.ru_utime + usage.ru_stime) / wall,
    )
