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

    def add_orders(
        self, n: int, market: str, state: OrderState, identifiers: bool, side: str
    ) -> list[str]: ...

    def order(self, uuid: str) -> FakeOrder: ...

    def state_counts(self) -> dict[str, int]: ...

    def stats(self) -> dict[str, Any]: ...

    def reset_records(self) -> None: ...

    def set_faults(
        self, faults: Faults, *, access_key: str | None = None, endpoint: str | None = None
    ) -> None: ...

    def add_credentials(
        self, *, can_order: bool = True, can_query: bool = True
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


def _error(message: str) -> web.Response:
    return web.json_response(
        {"error": {"name": "validation_error", "message": message}}, status=400
    )


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
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return _error("count must be a non-negative integer.")
        if not isinstance(market, str) or state not in ORDER_STATES or side not in SIDES:
            return _error(
                "market must be a string, state one of "
                f"{', '.join(sorted(ORDER_STATES))} and side bid or ask."
            )
        if not isinstance(identifiers, bool):
            return _error("identifiers must be true or false.")
        uuids = self.fake.add_orders(
            count, market=market, state=state, identifiers=identifiers, side=side
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
        return web.json_response(self.fake.state_counts())

    async def records(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([record.to_dict() for record in self.fake.records])

    async def stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.fake.stats())

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
        """Create another key pair of the account, as :meth:`FakeUpbit.add_credentials` does."""
        text = await request.text()
        try:
            payload = json.loads(text) if text.strip() else {}
        except ValueError:
            return _error("The body must be a JSON object, or empty.")
        if not isinstance(payload, dict):
            return _error("The body must be a JSON object, or empty.")
        unknown = sorted(set(payload) - {"can_order", "can_query"})
        if unknown:
            return _error(f"Unknown field(s): {', '.join(unknown)}; expected can_order, can_query.")
        can_order = payload.get("can_order", True)
        can_query = payload.get("can_query", True)
        if not isinstance(can_order, bool) or not isinstance(can_query, bool):
            return _error("can_order and can_query must be true or false.")
        access_key, secret_key = self.fake.add_credentials(can_order=can_order, can_query=can_query)
        return web.json_response({"access_key": access_key, "secret_key": secret_key})
