"""The fake exchange's admin API under ``/_fake/``: what :class:`FakeUpbit`'s methods do, for a
fake that runs in another process (``python -m upbit_cancel.testing``)."""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import attrs
from aiohttp import web

from ._book import ORDER_STATES, SIDES
from ._faults import Faults
from ._records import FakeOrder, OrderState, RequestRecord
from ._stream import StreamFaults

__all__ = ["add_routes"]


class _Fake(Protocol):
    """What the admin API asks of the fake exchange (``FakeUpbit``'s own methods)."""

    @property
    def records(self) -> list[RequestRecord]: ...

    @property
    def pockets(self) -> tuple[str, ...]: ...

    def add_orders(
        self, n: int, market: str, state: OrderState, identifiers: bool, side: str, *, pocket: str
    ) -> list[str]: ...

    def order(self, uuid: str) -> FakeOrder: ...

    def state_counts(self, pocket: str) -> dict[str, int]: ...

    def stats(self, pocket: str) -> dict[str, Any]: ...

    def reset_records(self) -> None: ...

    def set_faults(
        self, faults: Faults, *, access_key: str | None = None, endpoint: str | None = None
    ) -> None: ...

    def add_credentials(
        self, *, can_order: bool = True, can_query: bool = True, pocket: str = "main"
    ) -> tuple[str, str]: ...

    def add_pocket(
        self, name: str, *, can_order: bool = True, can_query: bool = True
    ) -> tuple[str, str]: ...

    stream_faults: StreamFaults


def add_routes(app: web.Application, fake: _Fake) -> None:
    """Serve ``fake``'s admin API from ``app``."""
    admin = _Admin(fake)
    add = app.router.add_route
    add("POST", "/_fake/orders", admin.add_orders)
    add("GET", "/_fake/orders/{uuid}", admin.order)
    add("GET", "/_fake/states", admin.states)
    add("GET", "/_fake/records", admin.records)
    add("GET", "/_fake/stats", admin.stats)
    add("POST", "/_fake/reset-records", admin.reset_records)
    add("POST", "/_fake/faults", admin.set_faults)
    add("POST", "/_fake/stream-faults", admin.set_stream_faults)
    add("POST", "/_fake/credentials", admin.add_credentials)
    add("POST", "/_fake/pockets", admin.add_pocket)


def _error(message: str) -> web.Response:
    return web.json_response(
        {"error": {"name": "validation_error", "message": message}}, status=400
    )


def _pocket_refused(fake: _Fake, pocket: object) -> web.Response | None:
    """The answer refusing ``pocket``, unless it names one of the fake's pockets."""
    if not isinstance(pocket, str):
        return _error("pocket must be the name of one of the fake's pockets, or left out.")
    if pocket not in fake.pockets:
        message = f"There is no pocket {pocket!r}; the pockets are {', '.join(fake.pockets)}."
        return web.json_response(
            {"error": {"name": "pocket_not_found", "message": message}}, status=404
        )
    return None


class _Admin:
    __slots__ = ("fake",)

    def __init__(self, fake: _Fake) -> None:
        self.fake = fake

    async def add_orders(self, request: web.Request) -> web.StreamResponse:
        """Add orders, as :meth:`FakeUpbit.add_orders` does."""
        try:
            payload = await request.json()
        except ValueError:
            return _error("The body must be a JSON object.")
        if not isinstance(payload, dict):
            return _error("The body must be a JSON object.")
        count = payload.get("count", 1)
        market = payload.get("market", "SGD-BTC")
        state = payload.get("state", "wait")
        side = payload.get("side", "bid")
        identifiers = payload.get("identifiers", False)
        pocket = payload.get("pocket", "main")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return _error("count must be a non-negative integer.")
        if not isinstance(market, str) or state not in ORDER_STATES or side not in SIDES:
            return _error(
                "market must be a string, state one of "
                f"{', '.join(sorted(ORDER_STATES))} and side bid or ask."
            )
        if not isinstance(identifiers, bool):
            return _error("identifiers must be true or false.")
        refused = _pocket_refused(self.fake, pocket)
        if refused is not None:
            return refused
        uuids = self.fake.add_orders(
            count, market=market, state=state, identifiers=identifiers, side=side, pocket=pocket
        )
        created = [self.fake.order(uuid).identifier for uuid in uuids] if identifiers else None
        return web.json_response({"uuids": uuids, "identifiers": created})

    async def order(self, request: web.Request) -> web.StreamResponse:
        """One order as it stands now."""
        try:
            order = self.fake.order(request.match_info["uuid"])
        except KeyError:
            return web.json_response(
                {"error": {"name": "order_not_found", "message": "Order not found."}}, status=404
            )
        return web.json_response(attrs.asdict(order))

    async def states(self, request: web.Request) -> web.StreamResponse:
        pocket = request.query.get("pocket", "main")
        refused = _pocket_refused(self.fake, pocket)
        if refused is not None:
            return refused
        return web.json_response(self.fake.state_counts(pocket))

    async def records(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([record.to_dict() for record in self.fake.records])

    async def stats(self, request: web.Request) -> web.StreamResponse:
        pocket = request.query.get("pocket", "main")
        refused = _pocket_refused(self.fake, pocket)
        if refused is not None:
            return refused
        return web.json_response(self.fake.stats(pocket))

    async def reset_records(self, request: web.Request) -> web.StreamResponse:
        self.fake.reset_records()
        return web.json_response({"ok": True})

    async def set_faults(self, request: web.Request) -> web.StreamResponse:
        """Set the faults from a JSON object of `Faults` fields (missing ones default)."""
        try:
            payload = await request.json()
        except ValueError:
            return _error("The body must be a JSON object of Faults fields.")
        if not isinstance(payload, dict):
            return _error("The body must be a JSON object of Faults fields.")
        access_key = payload.pop("access_key", None)
        if access_key is not None and not isinstance(access_key, str):
            return _error("access_key must be a key of this fake, or left out.")
        endpoint = payload.pop("endpoint", None)
        if endpoint is not None and not isinstance(endpoint, str):
            return _error("endpoint must be such as 'DELETE /v1/orders/open', or left out.")
        names = attrs.fields_dict(Faults)
        unknown = sorted(set(payload) - names.keys())
        if unknown:
            return _error(
                f"Unknown Faults field(s): {', '.join(unknown)}; "
                f"expected some of {', '.join(names)}."
            )
        for name, value in payload.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                return _error(f"{name} must be a number, not {value!r}.")
            if not math.isfinite(value):
                return _error(f"{name} must be a finite number, not {value!r}.")
        try:
            faults = Faults(**{name: float(value) for name, value in payload.items()})
        except ValueError as error:
            return _error(f"{error}.")
        try:
            self.fake.set_faults(faults, access_key=access_key, endpoint=endpoint)
        except KeyError:
            return _error("access_key must be a key of this fake, or left out.")
        except ValueError as error:
            return _error(f"{error}.")
        return web.json_response(attrs.asdict(faults))

    async def set_stream_faults(self, request: web.Request) -> web.StreamResponse:
        """Set the private stream's faults from a JSON object of `StreamFaults` fields."""
        try:
            payload = await request.json()
        except ValueError:
            return _error("The body must be a JSON object of StreamFaults fields.")
        if not isinstance(payload, dict):
            return _error("The body must be a JSON object of StreamFaults fields.")
        names = attrs.fields_dict(StreamFaults)
        unknown = sorted(set(payload) - names.keys())
        if unknown:
            return _error(
                f"Unknown StreamFaults field(s): {', '.join(unknown)}; "
                f"expected some of {', '.join(names)}."
            )
        try:
            faults = StreamFaults(**payload)
        except (TypeError, ValueError) as error:
            return _error(f"{error}.")
        self.fake.stream_faults = faults
        return web.json_response(attrs.asdict(faults))

    async def add_credentials(self, request: web.Request) -> web.StreamResponse:
        """Create another key pair of a pocket of the account (the main one unless named), as
        :meth:`FakeUpbit.add_credentials` does."""
        payload = await _key_request(request, "pocket")
        if isinstance(payload, web.Response):
            return payload
        pocket = payload.get("pocket", "main")
        refused = _pocket_refused(self.fake, pocket)
        if refused is not None:
            return refused
        access_key, secret_key = self.fake.add_credentials(
            can_order=payload.get("can_order", True),
            can_query=payload.get("can_query", True),
            pocket=pocket,
        )
        return web.json_response({"access_key": access_key, "secret_key": secret_key})

    async def add_pocket(self, request: web.Request) -> web.StreamResponse:
        """Create a sub-pocket and its first key pair, as :meth:`FakeUpbit.add_pocket` does."""
        payload = await _key_request(request, "name")
        if isinstance(payload, web.Response):
            return payload
        name = payload.get("name")
        if not isinstance(name, str):
            return _error("name, the new pocket's name, is required and must be a string.")
        try:
            access_key, secret_key = self.fake.add_pocket(
                name,
                can_order=payload.get("can_order", True),
                can_query=payload.get("can_query", True),
            )
        except ValueError as error:
            return _error(f"{error}.")
        return web.json_response({"access_key": access_key, "secret_key": secret_key})


async def _key_request(request: web.Request, field: str) -> dict[str, Any] | web.Response:
    """The fields of a request for a key pair: ``can_order``, ``can_query`` (both optional; an
    empty body will do) and ``field``; or the answer refusing it."""
    text = await request.text()
    try:
        payload = json.loads(text) if text.strip() else {}
    except ValueError:
        return _error("The body must be a JSON object, or empty.")
    if not isinstance(payload, dict):
        return _error("The body must be a JSON object, or empty.")
    expected = ("can_order", "can_query", field)
    unknown = sorted(set(payload) - set(expected))
    if unknown:
        return _error(f"Unknown field(s): {', '.join(unknown)}; expected {', '.join(expected)}.")
    for name in ("can_order", "can_query"):
        if not isinstance(payload.get(name, True), bool):
            return _error("can_order and can_query must be true or false.")
    return payload
