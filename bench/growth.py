"""Target 3: the cost of a long history (write latency, memory, start-up time).

One server process fills an empty data directory with 1,000 events and stops,
and that directory is kept. A second process continues to 100,000 events (in
batches of 100 across 50 rows), and its memory is read before it stops. Each run then
starts a server on a fresh copy of each kept directory, timing spawn to the
first ``/health`` 200, and measures single-status POST latency from one
connection (each request waits for the previous one, so it sees the write and
no queue) in 1 s slices that alternate between the two servers.
"""

from __future__ import annotations

import shutil
import statistics
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench import procs
from bench.runclient import run_client
from bench.wrk import WrkResult, run_wrk

SMALL = 1_000
LARGE = 100_000
ROWS = 50
BATCH_SIZE = 100
SEED_CONCURRENCY = 4
# A row whose every other run fails: the alert engine counts each change between
# failure and success as a flip and keeps the flips of its window.
FLAPPING = 20_000
FLAPPING_STATUSES = "Loading,OK,Loading,Error"


@dataclass(frozen=True)
class Seeded:
    small_dir: Path
    large_dir: Path
    rss_mb: float  # after the second process stored its last update
    peak_rss_mb: float
    updates_per_second: float  # batch ingest while seeding


@dataclass(frozen=True)
class GrowthRun:
    events: int  # history events on disk when the server started
    ready_seconds: float
    p50_ms: float  # median over the slices of each slice's p50
    p99_ms: float  # median over the slices of each slice's p99
    writes: int
    rss_mb: float  # after the latency measurement


def _seed(
    server: procs.Server, count: int, prefix: str, statuses: str = "Loading,OK"
) -> dict[str, float]:
    return run_client(
        "seed",
        server.url,
        f"--count={count}",
        f"--rows={ROWS}",
        f"--batch-size={BATCH_SIZE}",
        f"--concurrency={SEED_CONCURRENCY}",
        f"--prefix={prefix}",
        f"--statuses={statuses}",
        timeout=600,
    )


def seed(workdir: Path) -> Seeded:
    with procs.epmpulse(workdir / "seed") as server:
        _seed(server, SMALL, "s1")
    small_dir = workdir / "seed-1k"
    shutil.copytree(workdir / "seed", small_dir)
    with procs.epmpulse(workdir / "seed") as server:
        result = _seed(server, LARGE - SMALL, "s2")
        rss, peak = procs.rss_mb(server.pid)
    return Seeded(
        small_dir, workdir / "seed", rss, peak, float(result["updates_per_second"])
    )


def seed_flapping(workdir: Path) -> Path:
    """Seed a data directory with ``FLAPPING`` updates in which every row fails
    every other run, and return its path."""
    with procs.epmpulse(workdir / "seed-flapping") as server:
        _seed(server, FLAPPING, "f", FLAPPING_STATUSES)
    return workdir / "seed-flapping"


def data_file_kib(source: Path) -> float:
    return (source / "data" / "epmpulse.json").stat().st_size / 1024


def count_events(data_dir: Path) -> int:
    total = 0
    for segment in (data_dir / "history").glob("*.jsonl"):
        with open(segment, "rb") as lines:
            total += sum(1 for _ in lines)
    return total


def _copy(source: Path, workdir: Path) -> int:
    """Copy a kept data directory to ``workdir``; return its event count."""
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(source, workdir)
    for log in workdir.glob("*.log"):
        log.unlink()
    return count_events(workdir / "data")


def run_pair(
    sources: tuple[Path, Path], workdir: Path, *, slices: int, warmup: int
) -> tuple[GrowthRun, GrowthRun]:
    """Start a server on a copy of each source, then measure one-connection
    writes in 1 s slices that alternate between the two, so that both see the
    same moments of a shared disk."""
    events = [_copy(source, workdir / f"side{i}") for i, source in enumerate(sources)]
    with ExitStack() as stack:
        servers = [
            stack.enter_context(procs.epmpulse(workdir / f"side{i}")) for i in (0, 1)
        ]
        for server in servers:
            if warmup > 0:
                run_wrk(server.url, connections=1, seconds=warmup)
        results: list[list[WrkResult]] = [[], []]
        for index in range(slices):
            for side in (0, 1) if index % 2 == 0 else (1, 0):
                result = run_wrk(servers[side].url, connections=1, seconds=1)
                if result.errors:
                    raise RuntimeError(f"{result.errors} failed requests in {workdir}")
                results[side].append(result)
        rss = [procs.rss_mb(server.pid)[0] for server in servers]
        ready = [server.ready_seconds for server in servers]
    shutil.rmtree(workdir)
    runs = tuple(
        GrowthRun(
            events=events[side],
            ready_seconds=ready[side],
            p50_ms=statistics.median(r.p50_ms for r in results[side]),
            p99_ms=statistics.median(r.p99_ms for r in results[side]),
            writes=sum(r.requests for r in results[side]),
            rss_mb=rss[side],
        )
        for side in (0, 1)
    )
    return runs[0], runs[1]
