"""``epmpulse demo``: a month-end close replayed through the real HTTP API.

The server runs in this process in local mode, on a free loopback port with a fresh
data directory, so the demo touches nothing of an existing installation.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from bot.service import Service
from bot.settings import Settings

DEMO_DEBOUNCE_SECONDS = 0.2
# One second of replay stands for ten minutes of the close, so the board shows
# run times as a real close would have them.
CLOSE_SECONDS_PER_DEMO_SECOND = 600.0


def close_timestamps(steps: list[dict[str, Any]], end: datetime) -> list[str]:
    """Timestamps for the steps, spread over the past so the last one is ``end``."""
    offsets: list[float] = []
    total = 0.0
    for step in steps:
        total += float(step.get("delay", 0)) * CLOSE_SECONDS_PER_DEMO_SECOND
        offsets.append(total)
    start = end - timedelta(seconds=total)
    return [(start + timedelta(seconds=offset)).isoformat() for offset in offsets]


def load_demo_close() -> dict[str, Any]:
    text = resources.files("bot").joinpath("data/demo_close.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


async def run_demo(speed: float = 1.0, data_dir: Path | None = None) -> int:
    """Run the demo and print the final dashboard. Returns the exit code.

    Raises ValueError when ``speed`` is not a finite number above 0.
    """
    if not math.isfinite(speed) or speed <= 0:
        raise ValueError(f"demo speed {speed!r} must be a finite number above 0")
    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="epmpulse-demo-") as folder:
            return await _replay(speed, Path(folder))
    return await _replay(speed, data_dir)


async def _replay(speed: float, data_dir: Path) -> int:
    close = load_demo_close()
    key = secrets.token_urlsafe(32)
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        host="127.0.0.1",
        port=0,
        apps_config=None,
        slack_bot_token=None,
        slack_app_token=None,
        slack_signing_secret=None,
        api_key=key,
        api_keys_file=None,
        canvas_debounce_seconds=DEMO_DEBOUNCE_SECONDS,
        env="demo",
    )
    service = Service(settings)
    await service.start()
    print(f"EPMPulse demo server on {service.url} (data dir {data_dir})")
    print(close.get("description", ""))
    failures = 0
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {key}"}
        ) as session:
            timestamps = close_timestamps(close["steps"], datetime.now(UTC))
            for step, timestamp in zip(close["steps"], timestamps, strict=True):
                await asyncio.sleep(float(step.get("delay", 0)) / speed)
                body = {
                    k: step[k]
                    for k in ("app", "domain", "status", "job_id", "message")
                    if step.get(k) is not None
                }
                body["timestamp"] = timestamp
                async with session.post(
                    f"{service.url}/api/v1/status", json=body
                ) as response:
                    result = await response.json()
                if response.status != 200:
                    failures += 1
                    print(
                        f"  {body['app']}/{body['domain']}: HTTP {response.status} "
                        f"{result}",
                        file=sys.stderr,
                    )
                    continue
                record = result["record"]
                print(
                    f"  {record['app']:<10} {record['domain']:<16} "
                    f"{record['status']:<8} job {record['job_id'] or '-'}"
                )
            async with session.post(f"{service.url}/api/v1/canvas/sync") as response:
                synced = await response.json()
    finally:
        await service.stop()

    print()
    print_boards(synced.get("published", []))
    return 1 if failures else 0


def print_boards(results: list[dict[str, Any]]) -> None:
    for result in results:
        path = Path(result["where"])
        if result["ok"] and path.exists():
            print(f"--- {result['board']} board, written to {path} ---")
            print(path.read_text(encoding="utf-8"))
