"""Compare two builds or settings of ``epmpulse serve`` under the same load.

Usage::

    python -m bench.compare --a-code /tmp/before [--b-code DIR] [--rounds 5]
    python -m bench.compare --b-env EPMPULSE_LOG_LEVEL=WARNING

Each side is a server process. ``--a-code`` and ``--b-code`` name a folder that
contains copies of the packages (``bot``, ``handlers``, ``store``...) and is put
first on ``PYTHONPATH``. Without one, the side runs the working tree. Rounds
alternate which side goes first, and the output gives each round and the
medians, so a change can be judged against the noise of a shared machine.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

from bench import procs
from bench.ingest import BATCH_CONNECTIONS, BATCH_SIZE, CONNECTIONS, Measured, measure
from bench.slackfake import slack_env
from bench.stats import spread


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for side in ("a", "b"):
        parser.add_argument(f"--{side}-code", type=Path, help="folder of packages")
        parser.add_argument(
            f"--{side}-env", action="append", default=[], help="NAME=VALUE"
        )
    parser.add_argument("--mode", choices=("local", "http"), default="http")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--batch", action="store_true", help="batch POSTs instead")
    args = parser.parse_args()

    connections = BATCH_CONNECTIONS if args.batch else CONNECTIONS
    batch_size = BATCH_SIZE if args.batch else 0
    results: dict[str, list[Measured]] = {"a": [], "b": []}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(TemporaryDirectory(prefix="epmpulse-ab-")))
        base_env: dict[str, str] = {}
        if args.mode == "http":
            from tests.fakes.slack_api import FakeSlack

            fake = stack.enter_context(FakeSlack.in_thread())
            base_env = slack_env(fake, http_mode=True)
        servers = {
            side: stack.enter_context(
                procs.epmpulse_from(
                    tmp / side,
                    getattr(args, f"{side}_code"),
                    {**base_env, **procs.env_pairs(getattr(args, f"{side}_env"))},
                )
            )
            for side in ("a", "b")
        }
        for index in range(args.rounds):
            order = ("a", "b") if index % 2 == 0 else ("b", "a")
            for side in order:
                result = measure(
                    servers[side],
                    connections=connections,
                    seconds=args.seconds,
                    warmup=1,
                    batch_size=batch_size,
                )
                results[side].append(result)
                print(
                    f"round {index + 1} {side}: {result.load.per_second:,.0f} req/s, "
                    f"p50 {result.load.p50_ms:.1f} ms, p99 {result.load.p99_ms:.1f} "
                    f"ms, server CPU {result.server_cpu:.0%} "
                    f"({result.cpu_us_per_request:.0f} µs per request)",
                    flush=True,
                )
    for side in ("a", "b"):
        rate = spread([m.load.per_second for m in results[side]])
        p99 = spread([m.load.p99_ms for m in results[side]])
        print(f"{side}: {rate.format(0, ' req/s')}, p99 {p99.format(1, ' ms')}")
    ratios = [
        b.load.per_second / a.load.per_second
        for a, b in zip(results["a"], results["b"], strict=True)
    ]
    print(f"b / a per round: {spread(ratios).format(2, '×')}")
    cpu_ratios = [
        b.cpu_us_per_request / a.cpu_us_per_request
        for a, b in zip(results["a"], results["b"], strict=True)
    ]
    print(f"CPU per request, b / a per round: {spread(cpu_ratios).format(2, '×')}")


if __name__ == "__main__":
    main()
