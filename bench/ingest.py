"""Target 1: ingest throughput and latency against a bare aiohttp baseline.

Each round runs, from the same wrk client with 50 connections, the baseline (a
bare aiohttp handler that returns 200) and single-status POSTs through the real
``epmpulse serve``, in alternating order, then batch POSTs. Both servers live
for the whole measurement, so a round differs only in what wrk sends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.procs import REPO, Server
from bench.slackfake import SIGNING_SECRET
from bench.wrk import WrkResult, run_wrk

CONNECTIONS = 50
BATCH_CONNECTIONS = 10
BATCH_SIZE = 100
SLASH_RATE = 20.0  # slash commands per second while the single-status load runs
# Time for the probe process to import its modules before its first command.
PROBE_START_SECONDS = 1.5


@dataclass(frozen=True)
class Measured:
    """A wrk run and the server's CPU use during it (1.0 = one full core)."""

    load: WrkResult
    server_cpu: float

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU time per request, steadier than rates on a shared machine."""
        return self.server_cpu / self.load.per_second * 1e6


@dataclass(frozen=True)
class SlashProbe:
    """Slash command acks timed during a single-status load."""

    latencies_ms: list[float]
    names: list[str]  # response_url names, to check the replies at the fake


@dataclass(frozen=True)
class IngestRound:
    bare: Measured  # on asyncio's own loop, aiohttp's default
    bare_uvloop: Measured  # on uvloop, the loop that epmpulse serve runs on
    single: Measured
    batch: Measured
    slash: SlashProbe | None

    @property
    def ratio(self) -> float:
        return self.single.load.per_second / self.bare.load.per_second

    @property
    def ratio_uvloop(self) -> float:
        return self.single.load.per_second / self.bare_uvloop.load.per_second

    @property
    def batch_updates_per_second(self) -> float:
        return self.batch.load.per_second * BATCH_SIZE


def measure(
    server: Server,
    *,
    connections: int,
    seconds: int,
    warmup: int,
    batch_size: int = 0,
    before_load: Callable[[], None] = lambda: None,
) -> Measured:
    """Warm up, then run wrk against ``server`` and time its CPU use."""
    if warmup > 0:
        run_wrk(
            server.url, connections=connections, seconds=warmup, batch_size=batch_size
        )
    before_load()
    cpu_before = procs.cpu_seconds(server.pid)
    started = time.perf_counter()
    load = run_wrk(
        server.url, connections=connections, seconds=seconds, batch_size=batch_size
    )
    wall = time.perf_counter() - started
    cpu = (procs.cpu_seconds(server.pid) - cpu_before) / wall
    if load.errors:
        raise RuntimeError(
            f"{server.name}: {load.errors} failed requests during the load; "
            f"see {server.log_path}"
        )
    return Measured(load, cpu)


class _ProbeProcess:
    """``bench.slash_probe`` in its own process, sending while wrk runs."""

    def __init__(self, server: Server, response_url: str, seconds: int, name: str):
        self.command = [
            sys.executable,
            "-m",
            "bench.slash_probe",
            server.url,
            SIGNING_SECRET,
            response_url,
            f"--rate={SLASH_RATE}",
            # Stop a little early, so every command is acknowledged inside the load.
            f"--seconds={seconds - 0.5}",
            f"--name={name}",
        ]
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        start_at = time.monotonic() + PROBE_START_SECONDS
        self.process = subprocess.Popen(
            [*self.command, f"--start-at={start_at}"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(max(0.0, start_at - time.monotonic()))

    def result(self) -> SlashProbe:
        assert self.process is not None
        output, errors = self.process.communicate(timeout=60)
        if self.process.returncode != 0:
            raise RuntimeError(f"slash probe failed: {errors.strip()[-2000:]}")
        data: dict[str, Any] = json.loads(output)
        if data["error_count"]:
            raise RuntimeError(f"slash commands were not acknowledged: {data}")
        return SlashProbe(data["latencies_ms"], data["names"])


def run_rounds(
    bares: dict[str, Server],
    server: Server,
    *,
    rounds: int,
    seconds: int,
    warmup: int,
    response_url: str | None = None,
    on_round: Callable[[int], None] = lambda index: None,
) -> list[IngestRound]:
    """Measure ``rounds`` rounds; with ``response_url`` (HTTP mode), also time
    slash command acks during each single-status load."""
    results = []
    for index in range(rounds):
        probe = (
            _ProbeProcess(server, response_url, seconds, f"round{index}")
            if response_url is not None
            else None
        )
        measured: dict[str, Measured] = {}
        # Reverse the order every round so that a slow drift of the machine's load
        # does not always favour the same side.
        servers = {**bares, "single": server}
        order = list(servers) if index % 2 == 0 else list(servers)[::-1]
        for side in order:
            measured[side] = measure(
                servers[side],
                connections=CONNECTIONS,
                seconds=seconds,
                warmup=warmup,
                before_load=probe.start
                if probe is not None and side == "single"
                else lambda: None,
            )
        batch = measure(
            server,
            connections=BATCH_CONNECTIONS,
            seconds=seconds,
            warmup=warmup,
            batch_size=BATCH_SIZE,
        )
        slash = probe.result() if probe is not None else None
        results.append(
            IngestRound(
                measured["asyncio"],
                measured["uvloop"],
                measured["single"],
                batch,
                slash,
            )
        )
        on_round(index)
    return results


def start_servers(
    workdir: Path, env: dict[str, str], stack: ExitStack
) -> tuple[dict[str, Server], Server]:
    """Start the two bare baselines and the server; ``stack`` stops them."""
    bares = {
        loop: stack.enter_context(procs.bare(workdir / f"bare-{loop}", loop))
        for loop in ("asyncio", "uvloop")
    }
    server = stack.enter_context(procs.epmpulse(workdir / "ingest", env))
    return bares, server
