"""Benchmarks: how fast, and how cleanly, each client cancels N orders on a strict exchange.

Run from the repository root, with the ``bench`` extra installed::

    pip install -e '.[dev,bench]'
    python -m benchmarks --quick   # under a minute
    python -m benchmarks           # the full run, about a quarter of an hour

Markdown tables go to stdout; ``docs/benchmarks/`` receives ``results.json``, ``results.md`` and
``admitted.png`` (``results-quick.*`` and ``admitted-quick.png`` for the quick run; ``--out DIR``
writes elsewhere). ``python -m benchmarks --from-json FILE`` renders a results file again.

Everything runs on loopback against ``upbit_cancel.testing.FakeUpbit`` (30 requests per window,
under the sliding, fixed and token-bucket readings of "30 per second"). Each measured client runs
in a process of its own, the fake exchange in another. The sections:

1. Against the ceiling: upbit_cancel's wall time for 600, 6,000 and 60,000 orders against the
   ideal schedule ``floor((requests - 1) / 30)`` seconds, with 0, 10 and 20 ms arrival jitter:
   efficiency, 429s, the busiest one-second window, orders left open.
2. Kill-switch latency: from the call until the first 600 cancels are confirmed.
3. Peers on the same work, on the same fake configuration:

   - ``upbit-sdk-gather`` and ``upbit-sdk-sequential``: the official ``upbit-sdk`` package
     (``upbit.AsyncUpbit``), chunks of 20 made by hand, sent all at once or one after another.
   - ``ccxt``: ``ccxt.async_support.upbit``, one ``cancel_order`` per order, paced by ccxt's own
     throttler. Its generic call for ``DELETE /v1/orders/uuids`` cannot send a list (see
     ``_peers.probe_ccxt_list_encoding``), so single-id cancels are its only working path.
   - ``naive-aiolimiter``: what a typical bot author writes, ``aiolimiter.AsyncLimiter(30, 1)`` in
     front of aiohttp, signed with PyJWT, chunks of 20.
   - ``upbit_cancel``: this project.

4. Client cost: CPU time per request with the exchange's limit out of the way, and peak memory
   while streaming up to 1,000,000 ids.
5. Batch acceptance: a mixed batch (open, filled, canceled, unknown, duplicate and malformed
   ids) by uuids and by identifiers, PASS or FAIL per criterion.

Modules: ``_suite`` decides what runs where and when; ``_fake_proc`` serves the fakes and
``_fakes`` drives them; ``_peers`` holds one runner per client and ``_worker`` runs one in its own
process; ``_jobs`` holds upbit_cancel's own measurements; ``_metrics``, ``_report`` and ``_plot``
turn the numbers into tables and a picture.
"""
