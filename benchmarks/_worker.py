"""Run one client in a process of its own and print its outcome as one JSON line.

Usage::

    UPBIT_ACCESS_KEY=... UPBIT_SECRET_KEY=... \\
        python -m benchmarks._worker --client ccxt --base-url http://127.0.0.1:PORT \\
        --uuids-file uuids.txt

The keys may also be given as ``--access-key`` and ``--secret-key``; the environment is preferred,
as it keeps them out of the process list. The uuids file holds one uuid a line, or a JSON list.

The line printed is `RunOutcome.to_json` plus ``cpu_seconds`` (this process's CPU time over the run
alone) and ``peak_rss_mb`` (the process's peak resident memory, imports of the client included, as
each worker imports only the client it runs). ``--client ccxt-list-probe`` prints a
`ListEncodingProbe` instead. The client's modules are imported before the clocks start.

``--unthrottled`` switches the client's own pacing off (see `_peers`), for runs against a fake
whose limit is raised so that the client is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._metrics import peak_rss_bytes
from benchmarks._peers import CLIENTS, preload, probe_ccxt_list_encoding

#: The client name that probes ccxt's list encoding rather than cancelling every order.
LIST_PROBE = "ccxt-list-probe"


def read_uuids(path: Path) -> list[str]:
    """The uuids in *path*: a JSON list, or one a line (blank lines skipped)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return [str(item) for item in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB."""
    return peak_rss_bytes() / (1024 * 1024)


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._worker", description=__doc__)
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
    report["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
