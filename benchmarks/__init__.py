"""Benchmarks: how fast, and how cleanly, each client cancels N orders on a strict exchange.

Run from the repository root, with the ``bench`` extra installed::

    pip install -e '.[dev,bench]'
    python -m benchmarks --quick   # about five minutes
    python -m benchmarks           # the full run, about twenty-five minutes
    python -m benchmarks --only several --out /tmp/bench   # some sections (repeatable)

Markdown tables go to stdout; ``docs/benchmarks/`` receives ``results.json``, ``results.md``,
``admitted.png`` and ``latency.png`` (the quick run writes ``results-quick.*`` and
``*-quick.png``, a run of some sections ``results-<sections>.*``; ``--out DIR`` writes
elsewhere). ``--from-json FILE`` renders a results file again. Everything runs on loopback
against ``upbit_cancel.testing.FakeUpbit``. The sections: upbit_cancel against the ceiling (with
a latency axis and latency steps), the kill switch's first 600 cancels, the peers on the same
work (upbit-sdk, ccxt, a naive aiolimiter client), the clients' CPU per request and the
limiters' cost (in-process, HostLimiter, RedisLimiter), memory while streaming, several
processes of one account (alone, sharing HostLimiter, sharing RedisLimiter, and the budget's
return after a process that holds it is killed), and what confirmation costs. The
documentation's benchmarks page says how each figure is measured. The benchmarks only measure;
what must hold is tested in ``tests/``.

Modules: ``suite`` (what runs where and when, and the arithmetic of the figures), ``exchange``
(the fakes in a process of their own, their admin API, a redis-server), ``clients`` (one runner
per client, each run in a process of its own), ``jobs`` (upbit_cancel's own measurements, each
in a process of its own), ``report`` (tables and pictures), and ``timeline`` (the window
picture of the concepts page).
"""
