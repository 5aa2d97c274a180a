"""Profile ``epmpulse serve`` under the single-status load with py-spy.

Usage::

    python -m bench.profile [--mode local|http] [--seconds 8] [--batch 0] [--idle]
                            [--code DIR] [--env NAME=VALUE]

Starts the server (against the fake Slack Web API in HTTP mode), runs wrk with
50 connections, records the server with ``py-spy record`` and prints the
functions with the most samples, per thread, inclusive and self. Without
``--idle`` only samples of running threads count, which shows where CPU time
goes; with it, waits show too. py-spy is a
benchmark-only tool: ``pip install py-spy``. The folded stacks are kept for a
flame graph (the path is printed).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench import procs
from bench.ingest import CONNECTIONS
from bench.slackfake import slack_env
from bench.wrk import run_wrk


def summarize(folded: Path, top: int) -> str:
    """Per-thread inclusive and self sample shares from py-spy's raw output."""
    threads: dict[str, collections.Counter[str]] = {}
    selves: dict[str, collections.Counter[str]] = {}
    totals: collections.Counter[str] = collections.Counter()
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        thread, count = frames[0].split(": ")[-1], int(count_text)
        totals[thread] += count
        inclusive = threads.setdefault(thread, collections.Counter())
        for frame in set(frames[1:]):
            inclusive[frame] += count
        selves.setdefault(thread, collections.Counter())[frames[-1]] += count
    out = []
    for thread, total in totals.most_common():
        out.append(f"== {thread}: {total} samples")
        for title, counter in (
            ("inclusive", threads[thread]),
            ("self", selves[thread]),
        ):
            out.append(f"-- {title}")
            for frame, count in counter.most_common(top):
                out.append(f"{count * 100 / total:5.1f}% {frame}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("local", "http"), default="http")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=0, help="updates per POST")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--idle", action="store_true", help="keep idle samples")
    parser.add_argument("--code", type=Path, help="folder of packages to run")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    output = Path(tempfile.mkdtemp(prefix="epmpulse-profile-"))
    folded = output / "server.folded"
    with ExitStack() as stack:
        env: dict[str, str] = {}
        if args.mode == "http":
            from tests.fakes.slack_api import FakeSlack

            fake = stack.enter_context(FakeSlack.in_thread())
            env = slack_env(fake, http_mode=True)
        env.update(procs.env_pairs(args.env))
        server = stack.enter_context(procs.epmpulse_from(output, args.code, env))
        run_wrk(server.url, connections=CONNECTIONS, seconds=1, batch_size=args.batch)
        recorder = subprocess.Popen(
            [
                py_spy,
                "record",
                *(["--idle"] if args.idle else []),
                "--threads",
                "--format",
                "raw",
                "--rate",
                str(args.rate),
                "--duration",
                str(args.seconds),
                "--output",
                str(folded),
                "--pid",
                str(server.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        result = run_wrk(
            server.url,
            connections=CONNECTIONS,
            seconds=args.seconds - 1,
            batch_size=args.batch,
        )
        recorder.wait(timeout=args.seconds + 30)
    print(
        f"{result.per_second:,.0f} requests/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms (under the profiler)"
    )
    print(summarize(folded, args.top))
    print(f"folded stacks: {folded}")


if __name__ == "__main__":
    main()
