"""The ``upbit-cancel demo`` command: cancel a few thousand orders on an in-process fake exchange.

It seeds a :class:`FakeUpbit` with open orders and with the ids a real cancel list contains by
mistake (filled and already canceled orders, uuids the exchange does not know, malformed and
repeated ids), cancels them through the real :class:`UpbitSession` and :class:`BatchCanceller`
with confirmation, and reports what happened, measured on both sides: the client's result and
the fake's records. Like Upbit, the fake takes a moment to put an accepted cancel into effect,
and a few orders fill in that moment: confirmation finds them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
from typing import TYPE_CHECKING, TextIO, TypeAlias

import attrs

from .._models import BatchResult
from .output import (
    ProgressBar,
    Table,
    count,
    plural,
    render,
    say,
    states_table,
    unresolved_breakdown,
)
from .signals import Parser, usage_error

if TYPE_CHECKING:
    from ..testing import FakeUpbit

    _SubParsers: TypeAlias = argparse._SubParsersAction[Parser]

__all__ = [
    "Measured",
    "Plan",
    "add_parser",
    "plan_ids",
    "problems",
    "run",
    "run_demo",
    "summary_tables",
]

#: Between a number and its unit, so that wrapping never parts them ("any 1 s").
_NBSP = "\N{NO-BREAK SPACE}"

#: The fake's budget: Upbit's ``default`` group, 30 requests per second.
LIMIT = 30
WINDOW = 1.0
#: How long an accepted cancel takes to take effect on the fake, and the share of orders that
#: fill in that time instead.
CANCEL_DELAY = 0.3
FILL_RATE = 0.01

#: Ids no exchange could hold: a numeric id from another exchange, an upper-case uuid (Upbit's
#: are lower-case) and a uuid cut short by a copy and paste.
_MALFORMED = ("1234567890", "CDD92199-2897-4E14-9448-F923320408AD", "cdd92199-2897-4e14-9448")


@attrs.frozen
class Plan:
    """What was seeded on the fake and which ids the demo asks to cancel."""

    #: The ids to cancel, shuffled, duplicates included.
    ids: tuple[str, ...]
    #: The orders seeded on the fake.
    seeded: frozenset[str]
    open: int
    filled: int
    canceled: int
    unknown: int
    malformed: int
    duplicates: int

    @property
    def distinct(self) -> int:
        """Distinct ids among :attr:`ids`."""
        return len(self.ids) - self.duplicates


@attrs.frozen
class Measured:
    """Numbers from one run, as the client and as the fake exchange saw them."""

    result: BatchResult
    #: Requests and 429 answers the session counted.
    session_requests: int
    session_rate_limited: int
    #: Signed requests the fake recorded, and how many it answered 429.
    exchange_requests: int
    exchange_rate_limited: int
    #: Most requests the fake admitted within any one window.
    max_in_window: int
    #: Orders still open on the fake after the run.
    left_open: int
    #: Open orders that filled while their cancel was under way.
    filled_in_race: int
    #: Ids whose confirmed state differs from the fake's own.
    contradicted: int


def _unknown_uuid(rng: random.Random) -> str:
    digits = rng.randbytes(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def plan_ids(fake: FakeUpbit, orders: int, rng: random.Random) -> Plan:
    """Seed ``fake`` with ``orders`` open orders and a few closed ones; return the ids to cancel."""
    extra = max(1, orders // 40)
    unknown = max(1, orders // 100)
    duplicates = max(1, orders // 100)
    open_uuids = fake.add_orders(orders)
    filled = fake.add_orders(extra, state="done")
    canceled = fake.add_orders(extra, state="cancel")
    known = set(open_uuids) | set(filled) | set(canceled)
    unknown_uuids: list[str] = []
    while len(unknown_uuids) < unknown:
        uuid = _unknown_uuid(rng)
        if uuid not in known:
            unknown_uuids.append(uuid)
    distinct = [*open_uuids, *filled, *canceled, *unknown_uuids, *_MALFORMED]
    ids = distinct + rng.sample(distinct, duplicates)
    rng.shuffle(ids)
    return Plan(
        ids=tuple(ids),
        seeded=frozenset(known),
        open=orders,
        filled=extra,
        canceled=extra,
        unknown=unknown,
        malformed=len(_MALFORMED),
        duplicates=duplicates,
    )


async def _run(
    orders: int, jitter: float, seed: int, *, out: TextIO, err: TextIO
) -> tuple[Plan, Measured]:
    # Imported here: the command line starts before anything heavy is loaded.
    from .._batch.canceller import BatchCanceller
    from .._http.session import UpbitSession
    from ..testing import FakeUpbit, Faults

    faults = Faults(jitter_in=jitter, jitter_out=jitter)
    rng = random.Random(seed)
    async with FakeUpbit(
        policy="sliding",
        limit=LIMIT,
        window=WINDOW,
        faults=faults,
        cancel_delay=CANCEL_DELAY,
        fill_rate=FILL_RATE,
        seed=seed,
    ) as fake:
        plan = plan_ids(fake, orders, rng)
        say(
            f"Fake Upbit exchange at {fake.base_url}: like Upbit, {LIMIT} requests in any "
            f"{WINDOW:g}{_NBSP}s (strict sliding window, 429 beyond); up to "
            f"{jitter * 1000:g}{_NBSP}ms of random delay each way.",
            out,
        )
        say(
            f"Seeded {plural(plan.open, 'open order')}, {count(plan.filled)} filled and "
            f"{count(plan.canceled)} already canceled. Cancelling {plural(len(plan.ids), 'id')} "
            f"in random order through UpbitSession and BatchCanceller: those "
            f"{plural(plan.open + plan.filled + plan.canceled, 'order')}, "
            f"{plural(plan.unknown, 'uuid')} the exchange does not know, "
            f"{plural(plan.malformed, 'malformed id')} and "
            f"{plural(plan.duplicates, 'duplicate')}. Then it confirms what became of each: "
            f"the fake takes {CANCEL_DELAY:g} s to put a cancel into effect, and about "
            f"{FILL_RATE:.0%} of the orders fill in that time.",
            out,
        )
        out.flush()
        async with UpbitSession(
            fake.access_key, fake.secret_key, base_url=fake.base_url
        ) as session:
            with ProgressBar(plan.distinct, enabled=err.isatty(), file=err) as bar:
                canceller = BatchCanceller(session, on_progress=bar.update)
                result = await canceller.cancel(uuids=plan.ids, confirm=True)
        records = fake.records
        states = fake.state_counts()
        known = [uuid for uuid in result.states if uuid in plan.seeded]
        measured = Measured(
            result=result,
            session_requests=session.requests_sent,
            session_rate_limited=session.rate_limited,
            exchange_requests=len(records),
            exchange_rate_limited=sum(record.status == 429 for record in records),
            max_in_window=fake.max_in_window(WINDOW),
            left_open=states["wait"] + states["watch"],
            filled_in_race=states["done"] - plan.filled,
            contradicted=sum(result.states[uuid] != fake.state(uuid) for uuid in known),
        )
    return plan, measured


def summary_tables(plan: Plan, measured: Measured) -> list[Table]:
    """The demo's report: every id accounted for, then the pace against the limit."""
    result = measured.result
    resolved = result.success.count + result.failed.count + result.unresolved.count
    outcome = Table(
        title="Every id accounted for",
        headers=("outcome", "ids", "expected", ""),
        rows=(
            (
                "success",
                count(result.success.count),
                count(plan.open),
                "the open orders, canceled now",
            ),
            (
                "failed",
                count(result.failed.count),
                count(plan.filled + plan.canceled + plan.unknown),
                "filled, already canceled or not the exchange's: refused",
            ),
            (
                "unresolved",
                count(result.unresolved.count),
                count(plan.malformed),
                unresolved_breakdown(result.unresolved),
            ),
            (
                "total",
                count(resolved),
                count(plan.distinct),
                f"distinct ids ({count(plan.duplicates)} duplicates dropped)",
            ),
        ),
        numeric=frozenset({1, 2}),
        breaks=frozenset({2}),
        styles=("green", "yellow", "yellow", "bold"),
        show_header=True,
    )
    requests = result.requests
    ideal = math.floor((requests - 1) / LIMIT) * WINDOW if requests else 0.0
    rate = requests / result.elapsed if result.elapsed > 0 else 0.0
    rate_limited = measured.session_rate_limited
    pace = Table(
        title="Within the rate limit",
        headers=("", "", ""),
        rows=(
            (
                "requests sent",
                count(requests),
                f"{count(measured.exchange_requests)} seen by the exchange",
            ),
            (
                "elapsed",
                f"{result.elapsed:.2f} s",
                f"ideal floor(({requests} - 1) / {LIMIT}) = {ideal:g} s, "
                f"{result.elapsed - ideal:+.2f} s",
            ),
            (
                "average rate",
                f"{rate:.1f}/s" if requests > LIMIT else "—",
                f"the first {LIMIT} go at once, then {LIMIT} per {WINDOW:g} s"
                if requests > LIMIT
                else f"all in the first burst (up to {LIMIT} at once)",
            ),
            (
                f"busiest {WINDOW:g} s",
                count(measured.max_in_window),
                f"most the exchange admitted in any {WINDOW:g} s (limit {LIMIT})",
            ),
            (
                "429 answers",
                count(rate_limited),
                f"client counted {count(rate_limited)}, exchange sent "
                f"{count(measured.exchange_rate_limited)}",
            ),
            (
                "left open",
                count(measured.left_open),
                "orders still open on the exchange",
            ),
        ),
        styles=(
            "",
            "",
            "",
            "",
            "bold red" if rate_limited or measured.exchange_rate_limited else "green",
            "bold red" if measured.left_open else "green",
        ),
    )
    tables = [outcome, pace]
    states = states_table(result)
    if states is not None:
        tables.append(states)
    return tables


def problems(plan: Plan, measured: Measured) -> list[str]:
    """What differs from the plan: counts per outcome, and orders left open."""
    result = measured.result
    found = []
    if result.success.count != plan.open:
        found.append(f"{count(result.success.count)} canceled, expected {count(plan.open)}")
    refused = plan.filled + plan.canceled + plan.unknown
    if result.failed.count != refused:
        found.append(f"{count(result.failed.count)} failed, expected {count(refused)}")
    if result.unresolved.count != plan.malformed:
        found.append(f"{count(result.unresolved.count)} unresolved, expected {plan.malformed}")
    if measured.left_open:
        found.append(f"{count(measured.left_open)} orders left open")
    if measured.contradicted:
        found.append(f"{count(measured.contradicted)} states differ from the exchange's")
    if result.still_open or result.unknown_states:
        found.append(
            f"{count(len(result.still_open))} still open and "
            f"{count(len(result.unknown_states))} unknown after confirmation"
        )
    return found


def run_demo(
    orders: int, jitter: float, seed: int, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the demo and print its report to ``out`` (default: stdout); return the exit status.

    The progress bar goes to ``err`` (default: stderr) when it is a terminal. Raises
    ``ValueError`` for a negative ``orders`` or ``jitter``.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if orders < 0:
        raise ValueError(f"--orders must be 0 or more, not {orders}")
    if not jitter >= 0:
        raise ValueError(f"--jitter must be 0 or more seconds, not {jitter}")
    plan, measured = asyncio.run(_run(orders, jitter, seed, out=out, err=err))
    for table in summary_tables(plan, measured):
        render(table, out)
    found = problems(plan, measured)
    result = measured.result
    if found:
        say("", out)
        say("Something is off: " + "; ".join(found) + ".", out)
        return 1
    rate_limited = measured.session_rate_limited
    say("", out)
    race = measured.filled_in_race
    say(
        f"All {plural(plan.open, 'open order')} closed in {result.elapsed:.2f} s with "
        f"{plural(result.requests, 'request')} (confirmation included) and "
        f"{count(rate_limited) if rate_limited else 'no'} 429{_NBSP}answers; never more than "
        f"{measured.max_in_window} requests in any {WINDOW:g}{_NBSP}s. "
        f"{count(race)} of them filled before their cancel took effect, and confirmation "
        f"says so: every state matches the exchange's.",
        out,
    )
    say("", out)
    say(
        "Your own orders: set UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY, then run "
        "'upbit-cancel cancel --region sg --file ids.txt' (every option: "
        "'upbit-cancel cancel --help').",
        out,
    )
    return 0


def add_parser(subparsers: _SubParsers) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="cancel thousands of orders on an in-process fake exchange and report",
        description=(
            "Start a fake Upbit exchange in this process (30 requests per second, strict), "
            "seed it with open, filled and canceled orders, cancel them together with unknown, "
            "malformed and repeated ids through UpbitSession and BatchCanceller, and report "
            "the outcome and the pace measured by both sides."
        ),
    )
    parser.add_argument(
        "--orders", type=int, default=2000, metavar="N", help="open orders to seed (default 2000)"
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.005,
        metavar="SECONDS",
        help="random delay each way, uniform in [0, SECONDS] (default 0.005)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of all randomness (default 0)")


def run(args: argparse.Namespace) -> int:
    try:
        return run_demo(args.orders, args.jitter, args.seed)
    except ValueError as error:
        return usage_error("upbit-cancel demo", str(error))
