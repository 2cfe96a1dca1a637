"""Benchmarks: how fast, and how cleanly, each client cancels N orders on a strict exchange.

Every client cancels the same set of open orders on a fake Upbit exchange served on loopback
(``upbit_cancel.testing.FakeUpbit``, 30 requests per second in any sliding one-second window).
For each run we record the wall time, the HTTP 429 answers, the errors the client raised, and the
orders still open afterwards.

The clients compared:

- ``upbit-sdk-gather`` and ``upbit-sdk-sequential``: the official ``upbit-sdk`` package
  (``upbit.AsyncUpbit``), chunks of 20 made by hand, sent all at once or one after another.
- ``ccxt``: ``ccxt.async_support.upbit``, one ``cancel_order`` per order, paced by ccxt's own
  throttler. Its generic call for ``DELETE /v1/orders/uuids`` cannot send a list (see
  ``_peers.probe_ccxt_list_encoding``), so single-id cancels are its only working path.
- ``naive-aiolimiter``: what a typical bot author writes, ``aiolimiter.AsyncLimiter(30, 1)`` in
  front of aiohttp, signed with PyJWT, chunks of 20.
- ``upbit_cancel``: this project.

The per-client runners live in ``_peers``; ``_worker`` runs one of them in a process of its own so
that CPU time and peak memory can be measured per client.
"""
