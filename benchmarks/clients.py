"""The clients measured side by side: one runner per client, run in a process of its own.

Usage (the suite starts it)::

    UPBIT_ACCESS_KEY=... UPBIT_SECRET_KEY=... \\
        python -m benchmarks.clients --client ccxt --base-url http://127.0.0.1:PORT \\
        --uuids-file uuids.txt

It prints the run's outcome as one JSON line, with ``cpu_seconds`` (this process's CPU time over
the run alone) and ``peak_rss_mb``; the client's modules are imported before the clocks start, and
only the client's. ``--client ccxt-list-probe`` prints what ccxt puts on the wire for a list of
uuids instead. ``--unthrottled`` switches the client's own pacing off (see below).

Every runner has the same shape::

    outcome = await run_naive_aiolimiter(base_url, access_key, secret_key, uuids)

and returns a `RunOutcome`. With ``throttled=False`` each client's own pacing is switched off
(ccxt's throttler, the naive client's ``AsyncLimiter``) or raised out of the way (upbit_cancel's
limiter, to 100,000 per second), so that against a fake with a raised limit the client itself is
the bottleneck: that is how the client-cost benchmark measures CPU time per request.

A runner never lets a request's exception end the run: peers raise on 429 and other error answers,
so each request (or chunk of 20) is wrapped, and the exception's type name is counted instead. Which
orders really got cancelled is the exchange's business: read it from the fake exchange after the
run, not from the outcome.

How each peer is pointed at a local exchange:

- upbit-sdk: ``AsyncUpbit(access_key=..., secret_key=..., base_url="http://127.0.0.1:PORT")``.
  It signs every attempt afresh (HS256, ``query_hash`` over ``uuids[]=a&uuids[]=b``) and retries
  408, 409, 429 and 5xx answers twice by itself (0.5 s then 1 s, less up to 25 % jitter, or the
  server's ``Retry-After`` when between 0 and 60 s). It reads no ``Remaining-Req`` header.
- ccxt: ``ccxt.async_support.upbit({"urls": {"api": {"public": URL, "private": URL}}, ...})``.
  ``cancel_order`` first loads markets (``GET /v1/market/all``), then sends one
  ``DELETE /v1/order?uuid=...`` per order through its leaky-bucket throttler (one token per 50 ms,
  0.67 token per cancel, so about 30 per second with a burst of two). It never retries by default.
  A JSON 429 answer (``too_many_requests``) matches none of its Upbit error names and surfaces as a
  plain ``ExchangeError``; only a non-JSON 429 becomes ``RateLimitExceeded``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import os
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlencode

import attrs

#: Upbit's limit on ids per ``DELETE /v1/orders/uuids`` call.
CHUNK_SIZE = 20
#: upbit_cancel's limiter rate when unthrottled: far above anything the client can send.
UNTHROTTLED_RATE = 100_000
#: upbit_cancel's requests in flight when unthrottled: what its default is at 30 per second.
UNTHROTTLED_IN_FLIGHT = 60


@attrs.frozen
class RunOutcome:
    """What one client run did, as seen from the client's side.

    Counts a runner cannot observe are None (upbit_cancel's own request count, for one: read it from
    the exchange's records instead).
    """

    #: The client variant, as named in `CLIENTS`.
    client: str
    #: From just before the client is built to the last answer; closing the client is left out.
    wall_seconds: float
    #: HTTP requests the client put on the wire, its own retries and helper calls (ccxt's market
    #: list) included.
    requests_attempted: int | None
    #: Exceptions raised to the caller and caught by the runner, one per request or chunk.
    errors: int
    #: The same exceptions, counted by type name.
    error_types: Counter[str]
    #: HTTP status codes of every answer the client received, retries included.
    statuses: Counter[int] | None
    #: Orders the exchange reported as cancelled, per the answers the client got back.
    reported_success: int | None
    #: Orders the exchange reported as not cancelled.
    reported_failed: int | None
    #: Ids the client could not account for (upbit_cancel only).
    reported_unresolved: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain JSON-ready values, counters as sorted dicts."""
        return {
            "client": self.client,
            "wall_seconds": self.wall_seconds,
            "requests_attempted": self.requests_attempted,
            "errors": self.errors,
            "error_types": dict(sorted(self.error_types.items())),
            "statuses": (
                None
                if self.statuses is None
                else {str(code): n for code, n in sorted(self.statuses.items())}
            ),
            "reported_success": self.reported_success,
            "reported_failed": self.reported_failed,
            "reported_unresolved": self.reported_unresolved,
        }


@attrs.frozen
class ListEncodingProbe:
    """What ccxt put on the wire for a list of uuids, and what came back."""

    #: The full URL ccxt requested.
    url: str
    #: Its query string, percent-decoded: what the exchange parses and what ccxt hashed.
    query: str
    #: HTTP status of the answer, None if no answer arrived.
    status: int | None
    #: The answer's body, as text (cut to 2,000 characters).
    body: str
    #: Type name of the exception ccxt raised, if any.
    error_type: str | None

    def to_json(self) -> dict[str, Any]:
        """The probe as plain JSON-ready values."""
        return attrs.asdict(self)


class Runner(Protocol):
    """Cancel *uuids* at *base_url* with one client, and tally what it saw."""

    def __call__(
        self,
        base_url: str,
        access_key: str,
        secret_key: str,
        uuids: Sequence[str],
        /,
        *,
        throttled: bool = True,
    ) -> Coroutine[Any, Any, RunOutcome]: ...


class _Tally:
    """Mutable counts gathered while a runner works, frozen into a `RunOutcome` at the end."""

    __slots__ = ("error_types", "failed", "requests", "statuses", "success")

    def __init__(self) -> None:
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.error_types: Counter[str] = Counter()
        self.success = 0
        self.failed = 0

    def error(self, error: BaseException) -> None:
        self.error_types[type(error).__name__] += 1

    def outcome(self, client: str, wall_seconds: float, *, observed_requests: bool) -> RunOutcome:
        return RunOutcome(
            client=client,
            wall_seconds=wall_seconds,
            requests_attempted=self.requests if observed_requests else None,
            errors=self.error_types.total(),
            error_types=self.error_types,
            statuses=self.statuses if observed_requests else None,
            reported_success=self.success,
            reported_failed=self.failed,
        )


def chunks(uuids: Sequence[str], size: int = CHUNK_SIZE) -> Iterator[list[str]]:
    """Split *uuids* into lists of at most *size*, in order."""
    for start in range(0, len(uuids), size):
        yield list(uuids[start : start + size])


# --- upbit-sdk ---------------------------------------------------------------------------------


async def run_upbit_sdk_gather(
    base_url: str,
    access_key: str,
    secret_key: str,
    uuids: Sequence[str],
    /,
    *,
    throttled: bool = True,
) -> RunOutcome:
    """upbit-sdk, chunks of 20 all sent at once with `asyncio.gather`."""
    return await _run_upbit_sdk(
        "upbit-sdk-gather", base_url, access_key, secret_key, uuids, concurrent=True
    )


async def run_upbit_sdk_sequential(
    base_url: str,
    access_key: str,
    secret_key: str,
    uuids: Sequence[str],
    /,
    *,
    throttled: bool = True,
) -> RunOutcome:
    """upbit-sdk, chunks of 20 sent one after another."""
    return await _run_upbit_sdk(
        "upbit-sdk-sequential", base_url, access_key, secret_key, uuids, concurrent=False
    )


async def _run_upbit_sdk(
    client_name: str,
    base_url: str,
    access_key: str,
    secret_key: str,
    uuids: Sequence[str],
    *,
    concurrent: bool,
) -> RunOutcome:
    import httpx
    import upbit

    tally = _Tally()

    # httpx's event hooks fire once per attempt, so the SDK's own retries are counted too.
    async def on_request(request: httpx.Request) -> None:
        tally.requests += 1

    async def on_response(response: httpx.Response) -> None:
        tally.statuses[response.status_code] += 1

    started = time.perf_counter()
    http_client = upbit.DefaultAsyncHttpxClient(
        event_hooks={"request": [on_request], "response": [on_response]}
    )
    async with upbit.AsyncUpbit(
        access_key=access_key,
        secret_key=secret_key,
        base_url=base_url,
        http_client=http_client,
    ) as client:

        async def cancel_chunk(chunk: list[str]) -> None:
            try:
                result = await client.orders.cancel_by_uuids(uuids=chunk)
            except Exception as error:
                tally.error(error)
            else:
                tally.success += result.success.count
                tally.failed += result.failed.count

        if concurrent:
            await asyncio.gather(*(cancel_chunk(chunk) for chunk in chunks(uuids)))
        else:
            for chunk in chunks(uuids):
                await cancel_chunk(chunk)
        wall_seconds = time.perf_counter() - started
    return tally.outcome(client_name, wall_seconds, observed_requests=True)


# --- ccxt --------------------------------------------------------------------------------------


def _ccxt_upbit(
    base_url: str, access_key: str, secret_key: str, tally: _Tally, *, throttled: bool = True
) -> Any:
    """A ccxt upbit exchange aimed at *base_url*, counting its requests and answers in *tally*."""
    import ccxt.async_support as ccxt_async

    exchange = ccxt_async.upbit(
        {
            "apiKey": access_key,
            "secret": secret_key,
            "enableRateLimit": throttled,
            "urls": {"api": {"public": base_url, "private": base_url}},
        }
    )
    fetch = exchange.fetch

    async def counting_fetch(*args: Any, **kwargs: Any) -> Any:
        tally.requests += 1
        return await fetch(*args, **kwargs)

    on_rest_response = exchange.on_rest_response

    def counting_on_rest_response(code: int, *args: Any) -> Any:
        tally.statuses[int(code)] += 1
        return on_rest_response(code, *args)

    # Instance attributes shadow the class's methods: ccxt calls both through ``self``.
    exchange.fetch = counting_fetch
    exchange.on_rest_response = counting_on_rest_response
    return exchange


async def run_ccxt(
    base_url: str,
    access_key: str,
    secret_key: str,
    uuids: Sequence[str],
    /,
    *,
    throttled: bool = True,
) -> RunOutcome:
    """ccxt, one `cancel_order` per order, all handed over at once to ccxt's throttler."""
    # Importing ccxt takes a while; the clock starts once it is done.
    importlib.import_module("ccxt.async_support")
    tally = _Tally()
    started = time.perf_counter()
    exchange = _ccxt_upbit(base_url, access_key, secret_key, tally, throttled=throttled)
    try:
        try:
            await exchange.load_markets()
        except Exception as error:
            tally.error(error)

        async def cancel_one(order_uuid: str) -> None:
            try:
                await exchange.cancel_order(order_uuid)
            except Exception as error:
                tally.error(error)
            else:
                tally.success += 1

        await asyncio.gather(*(cancel_one(order_uuid) for order_uuid in uuids))
        wall_seconds = time.perf_counter() - started
    finally:
        await exchange.close()
    return tally.outcome("ccxt", wall_seconds, observed_requests=True)


async def probe_ccxt_list_encoding(
    base_url: str,
    access_key: str,
    secret_key: str,
    uuids: Sequence[str],
    *,
    parameter: str = "uuids[]",
) -> ListEncodingProbe:
    """Cancel a list of uuids through ccxt's generic method for ``DELETE /v1/orders/uuids``.

    ccxt's ``urlencode`` does not repeat list values, so the list goes out as its Python repr,
    ``uuids[]=['a', 'b']`` once decoded. ccxt hashes that same text, so the signature is valid and
    the exchange judges the value itself.
    """
    tally = _Tally()
    exchange = _ccxt_upbit(base_url, access_key, secret_key, tally)
    error_type: str | None = None
    try:
        try:
            await exchange.private_delete_orders_uuids({parameter: list(uuids[:CHUNK_SIZE])})
        except Exception as error:
            error_type = type(error).__name__
        url = str(exchange.last_request_url or "")
        body = str(exchange.last_http_response or "")
    finally:
        await exchange.close()
    status = next(iter(tally.statuses), None)
    query = unquote(url.partition("?")[2])
    return ListEncodingProbe(
        url=url, query=query, status=status, body=body[:2000], error_type=error_type
    )


# --- a naive client: aiolimiter + aiohttp + PyJWT ----------------------------------------------


async def run_naive_aiolimiter(
    base_url: str,
    access_key: str,
    secret_key: str,
    uuids: Sequence[str],
    /,
    *,
    throttled: bool = True,
) -> RunOutcome:
    """The client a typical bot author writes: ``AsyncLimiter(30, 1)``, chunks of 20, no retry."""
    import aiohttp
    import jwt
    from aiolimiter import AsyncLimiter

    tally = _Tally()
    started = time.perf_counter()
    limiter = AsyncLimiter(30, 1) if throttled else AsyncLimiter(UNTHROTTLED_RATE, 1)
    async with aiohttp.ClientSession() as http:

        async def cancel_chunk(chunk: list[str]) -> None:
            query = urlencode({"uuids[]": chunk}, doseq=True)
            payload = {
                "access_key": access_key,
                "nonce": str(uuid.uuid4()),
                "query_hash": hashlib.sha512(unquote(query).encode()).hexdigest(),
                "query_hash_alg": "SHA512",
            }
            headers = {"Authorization": f"Bearer {jwt.encode(payload, secret_key)}"}
            try:
                async with limiter:
                    tally.requests += 1
                    url = f"{base_url}/v1/orders/uuids?{query}"
                    async with http.delete(url, headers=headers) as response:
                        tally.statuses[response.status] += 1
                        response.raise_for_status()
                        result = await response.json()
            except Exception as error:
                tally.error(error)
            else:
                tally.success += int(result["success"]["count"])
                tally.failed += int(result["failed"]["count"])

        await asyncio.gather(*(cancel_chunk(chunk) for chunk in chunks(uuids)))
        wall_seconds = time.perf_counter() - started
    return tally.outcome("naive-aiolimiter", wall_seconds, observed_requests=True)


# --- upbit_cancel ------------------------------------------------------------------------------


async def run_upbit_cancel(
    base_url: str,
    access_key: str,
    secret_key: str,
    uuids: Sequence[str],
    /,
    *,
    throttled: bool = True,
) -> RunOutcome:
    """This project: one `BatchCanceller.cancel` call for every id."""
    from upbit_cancel import BatchCanceller, SlidingWindowLimiter, UpbitSession

    tally = _Tally()
    unresolved: int | None = None
    limiter = None if throttled else SlidingWindowLimiter(UNTHROTTLED_RATE, 1.0)
    in_flight = None if throttled else UNTHROTTLED_IN_FLIGHT
    started = time.perf_counter()
    try:
        async with UpbitSession(
            access_key, secret_key, base_url=base_url, limiter=limiter
        ) as session:
            canceller = BatchCanceller(session, max_in_flight=in_flight)
            result = await canceller.cancel(uuids=uuids)
            wall_seconds = time.perf_counter() - started
    except Exception as error:
        wall_seconds = time.perf_counter() - started
        tally.error(error)
    else:
        tally.success = result.success.count
        tally.failed = result.failed.count
        unresolved = len(result.unresolved)
    return attrs.evolve(
        tally.outcome("upbit_cancel", wall_seconds, observed_requests=False),
        reported_unresolved=unresolved,
    )


#: The modules each client needs, for importing them before any clock starts.
MODULES: Mapping[str, tuple[str, ...]] = {
    "upbit-sdk-gather": ("httpx", "upbit"),
    "upbit-sdk-sequential": ("httpx", "upbit"),
    "ccxt": ("ccxt.async_support",),
    "naive-aiolimiter": ("aiohttp", "aiolimiter", "jwt"),
    "upbit_cancel": ("upbit_cancel",),
}


def preload(client: str) -> None:
    """Import *client*'s modules now, so that a run's timings leave the imports out."""
    for module in MODULES[client]:
        importlib.import_module(module)


#: Every runner by client name, in the order reports list them.
CLIENTS: Mapping[str, Runner] = {
    "upbit_cancel": run_upbit_cancel,
    "naive-aiolimiter": run_naive_aiolimiter,
    "upbit-sdk-gather": run_upbit_sdk_gather,
    "upbit-sdk-sequential": run_upbit_sdk_sequential,
    "ccxt": run_ccxt,
}


# --- memory -------------------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident set size, in bytes: since the last `reset_peak_rss`, or
    since the process began (Linux: ``VmHWM``; elsewhere the whole life's ``ru_maxrss``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Count the peak resident set from now on; False where that cannot be done (not Linux)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")  # resets the peak resident set size (Linux 4.0 and later)
    except OSError:
        return False
    return True


def current_rss_bytes() -> int | None:
    """This process's resident set size now, in bytes (None where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * resource.getpagesize()


# --- the worker process --------------------------------------------------------------------------


#: The client name that probes ccxt's list encoding rather than cancelling every order.
LIST_PROBE = "ccxt-list-probe"


def read_uuids(path: Path) -> list[str]:
    """The uuids in *path*: a JSON list, or one a line (blank lines skipped)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return [str(item) for item in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clients", description=__doc__)
    parser.add_argument("--client", required=True, choices=[*CLIENTS, LIST_PROBE])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--access-key", default=os.environ.get("UPBIT_ACCESS_KEY"))
    parser.add_argument("--secret-key", default=os.environ.get("UPBIT_SECRET_KEY"))
    parser.add_argument("--uuids-file", required=True, type=Path)
    parser.add_argument("--unthrottled", action="store_true", help="switch the client's pacing off")
    arguments = parser.parse_args(argv)
    if not arguments.access_key or not arguments.secret_key:
        parser.error("give the keys in UPBIT_ACCESS_KEY and UPBIT_SECRET_KEY, or as options")
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client named on the command line; print its outcome as a JSON line."""
    arguments = _parse_arguments(argv)
    uuids = read_uuids(arguments.uuids_file)
    preload("ccxt" if arguments.client == LIST_PROBE else arguments.client)
    report: dict[str, Any]
    cpu_started = time.process_time()
    if arguments.client == LIST_PROBE:
        probe = asyncio.run(
            probe_ccxt_list_encoding(
                arguments.base_url, arguments.access_key, arguments.secret_key, uuids
            )
        )
        report = {"client": LIST_PROBE, **probe.to_json()}
    else:
        runner = CLIENTS[arguments.client]
        outcome = asyncio.run(
            runner(
                arguments.base_url,
                arguments.access_key,
                arguments.secret_key,
                uuids,
                throttled=not arguments.unthrottled,
            )
        )
        report = outcome.to_json()
    report["cpu_seconds"] = time.process_time() - cpu_started
    report["peak_rss_mb"] = peak_rss_bytes() / (1024 * 1024)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
