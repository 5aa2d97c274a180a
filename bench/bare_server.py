"""The baseline server: a bare aiohttp handler that returns 200 to every POST.

Run as ``python -m bench.bare_server PORT``. It listens on 127.0.0.1 only, has no
access log and does no work, so its requests per second are the ceiling that
the same client reaches on this machine.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def ok(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_post("/api/v1/status", ok)
    app.router.add_post("/api/v1/status/batch", ok)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
