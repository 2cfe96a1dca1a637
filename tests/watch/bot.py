"""A bot for the watchdog's tests: ``python -m tests.watch.bot HEARTBEAT [options]``.

It enters a :class:`Heartbeat`, says ``beating`` on standard output, and then, by ``--then``:
``forever`` (until killed), ``block`` (its event loop blocks, the process lives), or ``exit``
(leaves the heartbeat normally once a line comes on standard input). With ``--cancel-file``
it also cancels those uuids meanwhile, through the account's shared budget (``--redis``, else
the host's), with the key of ``UPBIT_ACCESS_KEY``/``UPBIT_SECRET_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from upbit_cancel import BatchCanceller, Heartbeat, HostLimiter, RedisLimiter, UpbitSession


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def send(args: argparse.Namespace, uuids: list[str]) -> None:
    limiter = HostLimiter() if args.redis is None else RedisLimiter(args.redis)
    async with (
        limiter,
        UpbitSession(
            os.environ["UPBIT_ACCESS_KEY"],
            os.environ["UPBIT_SECRET_KEY"],
            base_url=args.base_url,
            limiter=limiter,
        ) as session,
    ):
        say("sending")
        await BatchCanceller(session).cancel(uuids=uuids)
        say("sent")
        await asyncio.Event().wait()


async def main(args: argparse.Namespace, uuids: list[str]) -> None:
    async with Heartbeat(args.heartbeat, every=args.every):
        say("beating")
        if args.cancel_file is not None:
            await send(args, uuids)
        if args.then == "block":
            await asyncio.sleep(args.every * 3)
            say("blocking")
            time.sleep(120)  # noqa: ASYNC251 - the point: a bot whose loop blocks
        elif args.then == "exit":
            await asyncio.to_thread(sys.stdin.readline)
        else:
            await asyncio.Event().wait()
    say("disarmed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("heartbeat")
    parser.add_argument("--every", type=float, default=0.1)
    parser.add_argument("--then", choices=("forever", "block", "exit"), default="forever")
    parser.add_argument("--cancel-file")
    parser.add_argument("--base-url")
    parser.add_argument("--redis")
    arguments = parser.parse_args()
    ids = []
    if arguments.cancel_file is not None:
        with open(arguments.cancel_file) as file:
            ids = file.read().split()
    asyncio.run(main(arguments, ids))
