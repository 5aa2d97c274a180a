"""Local mode starts without importing the Slack libraries or the EPM client.

Each check runs in a fresh interpreter, because the test process has imported
everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

# Slow imports that only the Slack modes or pull mode need.
SLACK_AND_EPM_MODULES = (
    "slack_sdk",
    "slack_sdk.web.async_client",
    "slack_bolt",
    "epm.client",
    "epm.poller",
)

# Imports the modules that ``epmpulse serve`` imports, then does what serve does in
# local mode up to the first /health, and prints the loaded modules after each step.
SERVE_LOCAL = """
import asyncio, json, sys

import aiohttp

import bot.cli
import bot.service

after_import = sorted(sys.modules)


async def serve_once():
    settings, problems = bot.cli.load_settings(on_this_machine=True)
    assert settings is not None, problems
    service = bot.service.Service(settings)
    await service.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(service.url + "/health") as response:
                return response.status
    finally:
        await service.stop()


health = asyncio.run(serve_once())
print(json.dumps({"import": after_import, "serve": sorted(sys.modules),
                  "health": health}))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run SERVE_LOCAL in local mode (no SLACK_ or EPM_ settings)."""
    workdir = tmp_path_factory.mktemp("imports")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(("EPMPULSE_", "SLACK_", "EPM_"))
    }
    env.update(
        EPMPULSE_DATA_DIR=str(workdir / "data"),
        EPMPULSE_HOST="127.0.0.1",
        EPMPULSE_PORT="0",
        EPMPULSE_API_KEY="test-key-0123456789abcdef",
        EPMPULSE_APPS_CONFIG="",
    )
    done = subprocess.run(
        [sys.executable, "-c", SERVE_LOCAL],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_local_serve_answers_health(loaded: dict[str, Any]) -> None:
    assert loaded["health"] == 200


@pytest.mark.parametrize("stage", ["import", "serve"])
@pytest.mark.parametrize("module", SLACK_AND_EPM_MODULES)
def test_local_mode_skips_slack_and_epm(
    loaded: dict[str, Any], stage: str, module: str
) -> None:
    assert module not in loaded[stage], (
        f"local mode imported {module} (after {stage}); it is slow to import, so "
        "import it inside the code that builds a Slack mode or pull mode, and use "
        "an `if TYPE_CHECKING:` import for annotations"
    )
