"""The baseline: a bare aiohttp handler that returns 200 to every POST.

Run as ``python -m bench.bare_server PORT [asyncio|uvloop]``. It listens on
127.0.0.1 only, has no access log and does no work, so its requests per second
are the ceiling that the same client reaches on this machine. By default it
runs on asyncio's own event loop, which is aiohttp's default. With ``uvloop``
it runs on the loop that ``epmpulse serve`` uses.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def ok(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    port = int(sys.argv[1])
    loop_name = sys.argv[2] if len(sys.argv) > 2 else "asyncio"
    loop: asyncio.AbstractEventLoop
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    elif loop_name == "asyncio":
        loop = asyncio.new_event_loop()
    else:
        raise SystemExit(f"unknown event loop {loop_name!r}: use asyncio or uvloop")
    app = web.Application()
    app.router.add_post("/api/v1/status", ok)
    app.router.add_post("/api/v1/status/batch", ok)
    app.router.add_get("/health", health)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop
    )


if __name__ == "__main__":
    main()
