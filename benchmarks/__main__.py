"""``python -m benchmarks [--quick] [--only SECTION ...] [--out DIR] [--from-json PATH]``.

Runs the suite (see ``benchmarks/__init__.py``), prints one markdown table per section to stdout
and writes, under ``--out`` (default ``docs/benchmarks/``):

- ``results.json``: every measurement, with the date, machine and package versions;
- ``results.md``: the same tables as stdout;
- ``admitted.png``: requests admitted per 100 ms against the limit, one panel per client;
- ``latency.png``: upbit_cancel's requests admitted per 100 ms at 150 ms one-way latency, with
  the old hold (a window after the answer) above the default one (a window after the latest
  possible arrival).

The quick run writes ``results-quick.json``, ``results-quick.md``, ``admitted-quick.png`` and
``latency-quick.png`` instead, so it never overwrites the full run's figures. ``--only`` runs
some sections (repeatable: ``several`` for several processes of one account, ``limiter-cost``
for the limiters' cost, ...) and names the files after them (``results-several.json``, ...),
with the plots of the sections that ran. ``--from-json`` renders the tables and the plots again
from a results file, without running anything. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.exchange import ROOT
from benchmarks.report import library_state, machine, plot_admitted, plot_latency, render
from benchmarks.suite import SECTIONS, make_plan, run_suite


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark upbit_cancel and its peers against a fake Upbit on loopback.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the short run: about five minutes, smaller matrices"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "benchmarks",
        metavar="DIR",
        help="where to write the JSON, markdown and PNGs (default: docs/benchmarks/)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        default=None,
        metavar="SECTION",
        help=f"run this section only (repeatable): {', '.join(SECTIONS)}",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        metavar="PATH",
        help="render the tables and plots from this results file instead of running",
    )
    return parser.parse_args(argv)


def _suffix(quick: bool, sections: Sequence[str]) -> str:
    """What a run's file names end with: ``-quick`` for the quick plan, then the sections run
    if not all of them."""
    only = "" if set(sections) >= set(SECTIONS) else "-" + "-".join(sections)
    return ("-quick" if quick else "") + only


def _write(results: dict[str, Any], out: Path) -> str:
    suffix = _suffix(results["plan"]["quick"], results.get("sections", SECTIONS))
    out.mkdir(parents=True, exist_ok=True)
    report = render(results)
    (out / f"results{suffix}.md").write_text(report, encoding="utf-8")
    if "peers" in results:
        plot_admitted(results["peers"], out / f"admitted{suffix}.png")
    if "ceiling" in results:
        plot_latency(results["ceiling"], out / f"latency{suffix}.png")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite (or re-render a results file) and print the tables."""
    arguments = _parse_arguments(argv)
    out: Path = arguments.out.resolve()
    if arguments.from_json is not None:
        results = json.loads(arguments.from_json.read_text(encoding="utf-8"))
    else:
        plan = make_plan(arguments.quick)
        sections = [name for name in SECTIONS if name in (arguments.only or SECTIONS)]
        results = {"meta": machine()}
        results.update(asyncio.run(run_suite(plan, sections)))
        results["meta"]["after"] = library_state()
        suffix = _suffix(plan.quick, sections)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"results{suffix}.json").write_text(
            json.dumps(results, indent=1) + "\n", encoding="utf-8"
        )
    print(_write(results, out))
    print(f"Wrote results, tables and plot to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
