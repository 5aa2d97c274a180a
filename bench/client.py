"""A load client in its own process, for the loads wrk cannot make.

``seed`` posts an exact number of updates in batches, to fill the history.
``paced`` posts single updates on a fixed schedule, and a slow response does not
delay the next send (open loop). Both print one JSON object on stdout.

Run as ``python -m bench.client MODE URL API_KEY [options]`` from the repository
root; the harness passes only 127.0.0.1 URLs of servers it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

import aiohttp

from bench.stats import percentile

STATUSES = ("Loading", "OK")


def update(
    index: int, rows: int, prefix: str, statuses: tuple[str, ...] = STATUSES
) -> dict[str, str]:
    """Build the ``index``-th update: rows in turn, each row's statuses in turn."""
    row = index % rows
    visit = index // rows
    return {
        "app": f"App{row // 10}",
        "domain": f"D{row % 10}",
        "status": statuses[visit % len(statuses)],
        "job_id": f"{prefix}-{index}",
    }


async def seed(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.key}"}
    batches = [
        {
            "updates": [
                update(i, args.rows, args.prefix, args.statuses)
                for i in range(start, min(start + args.batch_size, args.count))
            ]
        }
        for start in range(0, args.count, args.batch_size)
    ]
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)
    errors: list[str] = []
    stored = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal stored
        while not queue.empty():
            batch = queue.get_nowait()
            async with session.post(
                args.url + "/api/v1/status/batch", json=batch, headers=headers
            ) as response:
                if response.status == 200:
                    stored += len(batch["updates"])
                else:
                    errors.append(f"{response.status}: {(await response.text())[:200]}")

    started = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    seconds = time.perf_counter() - started
    return {
        "updates": stored,
        "seconds": seconds,
        "updates_per_second": stored / seconds,
        "errors": errors[:5],
        "error_count": len(errors),
    }


async def paced(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.key}"}
    interval = args.seconds / args.count
    latencies: list[float] = []
    errors: list[str] = []
    lateness: list[float] = []
    acked: list[float] = []
    final: dict[str, dict[str, str]] = {}

    async def send(session: aiohttp.ClientSession, index: int, due: float) -> None:
        body = update(index, args.rows, args.prefix, args.statuses)
        sent = time.monotonic()
        lateness.append(sent - due)
        async with session.post(
            args.url + "/api/v1/status", json=body, headers=headers
        ) as response:
            await response.read()
            done = time.monotonic()
            if response.status != 200:
                errors.append(f"{response.status}")
                return
        latencies.append(done - sent)
        acked.append(done)

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic() + 0.05
        tasks = []
        for index in range(args.count):
            due = start + index * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(session, index, due)))
            body = update(index, args.rows, args.prefix, args.statuses)
            final[f"{body['app']}/{body['domain']}"] = {
                "status": body["status"],
                "job_id": body["job_id"],
            }
        await asyncio.gather(*tasks)
    return {
        "sent": args.count,
        "ok": len(latencies),
        "errors": errors[:5],
        "error_count": len(errors),
        "first_send": start,
        "last_ack": max(acked, default=0.0),
        "send_seconds": max(acked, default=start) - start,
        "max_lateness_ms": max(lateness, default=0.0) * 1000,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else 0.0,
        "final": final,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("seed", "paced"))
    parser.add_argument("url", help="server root, e.g. http://127.0.0.1:18800")
    parser.add_argument("key", help="API key")
    parser.add_argument("--count", type=int, default=1000, help="updates to send")
    parser.add_argument("--rows", type=int, default=50, help="distinct rows")
    parser.add_argument("--prefix", default="c", help="job id prefix")
    parser.add_argument(
        "--statuses",
        type=lambda text: tuple(text.split(",")),
        default=STATUSES,
        help="statuses each row goes through in turn, comma-separated",
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="paced: spread")
    parser.add_argument("--timeout", type=float, default=120.0, help="per request")
    args = parser.parse_args()
    runner = seed if args.mode == "seed" else paced
    result = asyncio.run(runner(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
