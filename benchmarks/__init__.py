"""Benchmarks: how fast, and how cleanly, each client cancels N orders on a strict exchange.

Run from the repository root, with the ``bench`` extra installed::

    pip install -e '.[dev,bench]'
    python -m benchmarks --quick   # under a minute
    python -m benchmarks           # the full run, about twenty minutes

Markdown tables go to stdout; ``docs/benchmarks/`` receives ``results.json``, ``results.md``,
``admitted.png`` and ``latency.png`` (``results-quick.*``, ``admitted-quick.png`` and
``latency-quick.png`` for the quick run; ``--out DIR`` writes elsewhere).
``python -m benchmarks --from-json FILE`` renders a results file again.

Everything runs on loopback against ``upbit_cancel.testing.FakeUpbit`` (30 requests per window,
under the sliding, fixed and token-bucket readings of "30 per second"). Each measured client runs
in a process of its own, the fake exchange in another. The sections:

1. Against the ceiling: upbit_cancel's wall time against the ideal schedule
   ``floor((requests - 1) / 30)`` seconds for 600 orders with 0, 10 and 20 ms arrival jitter,
   6,000 with 0 and 20 ms (quick: 20 ms) and 60,000 with 20 ms (full run only): efficiency
   (ideal / (wall - one round trip, measured on a twin fake)), 429s, the busiest one-second
   window at the exchange, orders left open. Then:

   - the latency axis: 6,000 orders (quick: 3,000) over a path with 0, 50 or 150 ms one-way
     latency (quick: 50 and 150 ms, sliding window, 20 ms jitter only), each run with the
     limiter's default hold (a slot is free a window after the request's latest possible
     arrival) and with ``hold="answer"`` (a window after the answer), side by side;
     ``latency.png`` draws both send timelines at 150 ms;
   - latency steps: the path's one-way latency drops from 150 to 10 ms, or rises from 10 to
     150 ms, once half of a run's requests have reached the exchange: 429s, 429 incidents
     (bursts), 429s in steady state, efficiency.
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

4. Client cost: CPU time per request with the exchange's limit out of the way (and upbit_cancel's
   through ``SlidingWindowLimiter`` and through ``RedisLimiter``, both raised to 100,000/s, with
   Redis's script calls and the server's CPU per request), and peak memory while streaming up to
   1,000,000 ids.
5. Several processes of one account: 1, 2, 3 and 6 processes (quick: 1 and 3), 900 orders
   each, each with its own key of the account, started first and released together; every
   process alone (its own ``SlidingWindowLimiter(30, 1.0)``) or all sharing one
   ``RedisLimiter`` budget in a ``redis-server`` the section starts on loopback; then two
   processes at 5 and 80 ms one-way latency (per-key faults) sharing RedisLimiter. Combined wall
   time and efficiency, 429s, the busiest window, orders left open, each process's wall time.
   Skipped, with a note, without ``redis-server`` or redis-py.
6. Batch acceptance: a mixed batch (open, filled, canceled, unknown, duplicate and malformed
   ids) by uuids and by identifiers, PASS or FAIL per criterion.

Modules: ``_suite`` decides what runs where and when (and steps a running batch's latency);
``_fake_proc`` serves the fakes and ``_fakes`` drives them; ``_peers`` holds one runner per
client and ``_worker`` runs one in its own process; ``_jobs`` holds upbit_cancel's own
measurements; ``_several`` the several-process runs and the limiters' cost (both sides: the
worker jobs and the suite's redis-server and runs); ``_metrics``, ``_report`` and ``_plot``
turn the numbers into tables and pictures.
"""
