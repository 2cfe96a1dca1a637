"""Serve one or more fake Upbit exchanges from a process of their own, until told to stop.

Usage::

    python -m benchmarks._fake_proc --fake policy=sliding,jitter=0.02 --fake policy=fixed

Each ``--fake`` starts one `FakeUpbit` on its own loopback port, as one account with its own
keys, orders and rate budget. Its fields, all optional: ``policy`` (``sliding``, ``fixed`` or
``bucket``), ``limit`` (requests per window, 30), ``window`` (seconds, 1.0), ``jitter`` (the
arrival jitter: each request waits a uniform random 0 to ``jitter`` seconds before the exchange
counts it; 0), ``latency`` (the one-way latency, in seconds, applied both ways: each request
waits that long before it arrives, on top of its jitter, and each answer that long before it is
sent; 0), ``unknown`` (``omit`` or ``failed``: what the exchange answers for ids it does not
know; ``omit``) and ``seed`` (the position of the fake, by default, so no two share keys).

Once every fake listens, one JSON line goes to stdout::

    {"fakes": [{"base_url": "http://127.0.0.1:PORT", "access_key": "...", "secret_key": "...",
                "spec": {...}}, ...]}

The process then serves until its stdin is closed (so it never outlives the benchmark that
started it) or it gets SIGTERM. The fakes are driven through their admin API (``/_fake/``).
Keeping the exchange out of the measured client's process means the client's CPU time, memory
and event loop are its own, as they would be against the real exchange.

The fakes are the measuring instrument, so this process runs without automatic cyclic garbage
collection: with hundreds of thousands of orders in memory a full collection pauses the loop for
tens of milliseconds, and requests arriving during the pause would be stamped late, bunched
together, as if the client had sent them so. The fake makes almost no cyclic garbage (a few
hundred objects per 5,000 requests), so nothing piles up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Literal, cast

import attrs

from upbit_cancel.testing import FakeUpbit, Faults, PolicyName, UnknownIds


@attrs.frozen
class FakeSpec:
    """How one fake exchange is configured."""

    policy: PolicyName = "sliding"
    limit: int = 30
    window: float = 1.0
    #: Upper bound of the uniform random delay before a request arrives, in seconds.
    jitter: float = 0.0
    #: One-way latency, in seconds: before a request arrives (plus its jitter) and before its
    #: answer is sent.
    latency: float = 0.0
    #: Seconds an accepted cancel takes to take effect, and the share of orders that fill
    #: meanwhile (see ``FakeUpbit``).
    cancel_delay: float = 0.0
    fill_rate: float = 0.0
    unknown: UnknownIds = "omit"
    seed: int | None = None

    def to_argument(self) -> str:
        """The ``--fake`` argument that builds this spec."""
        fields = attrs.asdict(self)
        return ",".join(f"{name}={value}" for name, value in fields.items() if value is not None)

    def to_json(self) -> dict[str, Any]:
        """The spec as plain JSON-ready values."""
        return attrs.asdict(self)

    @classmethod
    def parse(cls, text: str) -> FakeSpec:
        """Read ``policy=sliding,jitter=0.02,...`` (every field optional)."""
        fields: dict[str, str] = {}
        for part in filter(None, text.split(",")):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"expected name=value, not {part!r}")
            fields[name.strip()] = value.strip()
        unknown_fields = fields.keys() - attrs.fields_dict(cls).keys()
        if unknown_fields:
            raise ValueError(f"unknown field(s): {', '.join(sorted(unknown_fields))}")
        policy = fields.get("policy", "sliding")
        if policy not in ("sliding", "fixed", "bucket"):
            raise ValueError(f"policy must be sliding, fixed or bucket, not {policy!r}")
        unknown = fields.get("unknown", "omit")
        if unknown not in ("omit", "failed"):
            raise ValueError(f"unknown must be omit or failed, not {unknown!r}")
        return cls(
            policy=cast(PolicyName, policy),
            limit=int(fields.get("limit", 30)),
            window=float(fields.get("window", 1.0)),
            jitter=float(fields.get("jitter", 0.0)),
            latency=float(fields.get("latency", 0.0)),
            cancel_delay=float(fields.get("cancel_delay", 0.0)),
            fill_rate=float(fields.get("fill_rate", 0.0)),
            unknown=cast(Literal["omit", "failed"], unknown),
            seed=int(fields["seed"]) if "seed" in fields else None,
        )


def build(spec: FakeSpec, position: int) -> FakeUpbit:
    """A fake exchange for *spec*, seeded by *position* unless the spec names a seed."""
    return FakeUpbit(
        policy=spec.policy,
        limit=spec.limit,
        window=spec.window,
        unknown_ids=spec.unknown,
        faults=Faults(latency_in=spec.latency, latency_out=spec.latency, jitter_in=spec.jitter),
        cancel_delay=spec.cancel_delay,
        fill_rate=spec.fill_rate,
        seed=position if spec.seed is None else spec.seed,
    )


async def serve(specs: Sequence[FakeSpec]) -> None:
    """Start a fake per spec, announce them on stdout, serve until stdin closes or SIGTERM."""
    gc.collect()
    gc.disable()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def on_stdin() -> None:
        # Only end of file matters; anything written is read and ignored.
        if not os.read(sys.stdin.fileno(), 4096):
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    fakes = [build(spec, position) for position, spec in enumerate(specs)]
    async with contextlib.AsyncExitStack() as stack:
        for fake in fakes:
            await stack.enter_async_context(fake)
        announcement = {
            "fakes": [
                {
                    "base_url": fake.base_url,
                    "access_key": fake.access_key,
                    "secret_key": fake.secret_key,
                    "spec": spec.to_json(),
                }
                for fake, spec in zip(fakes, specs, strict=True)
            ]
        }
        print(json.dumps(announcement), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the ``--fake`` specs and serve them."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks._fake_proc", description=__doc__)
    parser.add_argument(
        "--fake",
        action="append",
        default=[],
        metavar="SPEC",
        help="policy=...,limit=...,window=...,jitter=...,latency=...,unknown=...,seed=... "
        "(repeatable)",
    )
    arguments = parser.parse_args(argv)
    try:
        specs = [FakeSpec.parse(text) for text in arguments.fake] or [FakeSpec()]
    except ValueError as error:
        parser.error(str(error))
    asyncio.run(serve(specs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
