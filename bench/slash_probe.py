"""Send signed ``/epmpulse status`` commands in HTTP mode and time each ack.

Run as ``python -m bench.slash_probe URL SIGNING_SECRET RESPONSE_URL_PREFIX``
from the repository root. From ``--start-at`` (a ``time.monotonic()`` value, the
same clock in every process of this machine) it sends ``--rate`` commands per
second for ``--seconds``, each on its own schedule. It prints one JSON object with
the time from sending each request to its HTTP 200, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

from bench.stats import percentile
from tests.fakes.slack_payloads import (
    signed_request,
    slash_command,
    slash_command_body,
)


async def probe(args: argparse.Namespace) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    names: list[str] = []

    async def send(session: aiohttp.ClientSession, index: int) -> None:
        name = f"{args.name}-{index}"
        names.append(name)
        payload = slash_command("status", response_url=args.response_url + name)
        body = slash_command_body(payload)
        headers = signed_request(body, args.secret)
        sent = time.monotonic()
        async with session.post(
            args.url + "/slack/events", data=body, headers=headers
        ) as response:
            await response.read()
            elapsed = time.monotonic() - sent
            if response.status != 200:
                errors.append(str(response.status))
                return
        latencies.append(elapsed * 1000)

    count = max(1, int(args.rate * args.seconds))
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tasks = []
        for index in range(count):
            delay = args.start_at + index / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(session, index)))
        await asyncio.gather(*tasks)
    return {
        "count": count,
        "latencies_ms": latencies,
        "p50_ms": percentile(latencies, 0.5) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "errors": errors[:5],
        "error_count": len(errors),
        "names": names,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url", help="server root, e.g. http://127.0.0.1:18800")
    parser.add_argument("secret", help="the server's SLACK_SIGNING_SECRET")
    parser.add_argument("response_url", help="response_url prefix of the fake Slack")
    parser.add_argument("--rate", type=float, default=20.0, help="commands/second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--name", default="probe", help="response_url name prefix")
    args = parser.parse_args()
    json.dump(asyncio.run(probe(args)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
