"""What the command line shows: a batch's result as JSON, summary tables and a progress bar.

Tables are plain data (:class:`Table`) rendered with rich when it is installed (the ``cli``
extra) and as aligned text otherwise, so that ``upbit-cancel cancel`` never depends on a display
library to cancel orders.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TextIO

import attrs

from .._errors import APIError, BlockedError, MalformedResponseError, UpbitError
from .._models import BatchResult, OrderEntry, Progress, UnresolvedList, UnresolvedOrder

if TYPE_CHECKING:
    import rich.console
    import rich.progress
    import rich.table

__all__ = [
    "BUDGET_LOG",
    "ProgressBar",
    "Table",
    "cancel_summary",
    "console",
    "count",
    "error_json",
    "log_lines",
    "plural",
    "reason",
    "render",
    "result_json",
    "say",
    "states_table",
    "unresolved_breakdown",
    "unresolved_table",
]

#: Whether rich is installed; without it tables are plain text and there is no progress bar.
HAVE_RICH = importlib.util.find_spec("rich") is not None

#: Unresolved ids listed by name in a summary before "... and N more".
UNRESOLVED_SHOWN = 10

#: The narrowest terminal believed, and the width used instead of one not believed.
_NARROWEST = 20
_FALLBACK_WIDTH = 80


def count(number: int) -> str:
    """``2123`` as ``2,123``."""
    return f"{number:,}"


def plural(number: int, word: str) -> str:
    """``1 uuid``, ``2 uuids``, ``1,000 requests``."""
    return f"{count(number)} {word}{'' if number == 1 else 's'}"


def error_json(error: UpbitError | None) -> dict[str, Any] | None:
    """An unresolved id's error as JSON: type and message, plus status and name when known."""
    if error is None:
        return None
    payload: dict[str, Any] = {"type": type(error).__name__, "message": error.message}
    if isinstance(error, (APIError, MalformedResponseError)):
        payload["status"] = error.status
    if isinstance(error, APIError):
        payload["name"] = error.name
    if isinstance(error, BlockedError):
        payload["retry_after"] = error.retry_after
    return payload


def _order_json(order: OrderEntry) -> dict[str, Any]:
    return {"uuid": order.uuid, "market": order.market, "identifier": order.identifier}


def result_json(result: BatchResult) -> dict[str, Any]:
    """The whole result as one JSON-ready document (the shape is documented in docs/cli.md)."""
    return (
        {
            "success": [_order_json(order) for order in result.success.orders],
            "failed": [_order_json(order) for order in result.failed.orders],
            "unresolved": [
                {"id": entry.id, "error": error_json(entry.error)} for entry in result.unresolved
            ],
            "possibly_canceled": sorted(result.possibly_canceled),
            "requests": result.requests,
            "rate_limited": result.rate_limited,
            "elapsed": round(result.elapsed, 3),
        }
        | _lanes_json(result)
        | (_confirmation_json(result) if result.confirmed else {})
    )


def _lanes_json(result: BatchResult) -> dict[str, Any]:
    """What the batch lane of ``--all-open`` did, when it ran."""
    if not result.batch_canceled and not result.batch_unanswered:
        return {}
    return {
        "batch_canceled": sorted(result.batch_canceled),
        "batch_unanswered": result.batch_unanswered,
    }


def _confirmation_json(result: BatchResult) -> dict[str, Any]:
    return {
        "states": dict(result.states),
        "still_open": list(result.still_open),
        "recanceled": sorted(result.recanceled),
        "state_errors": {value: error_json(error) for value, error in result.state_errors.items()},
    }


#: What each final state means, in the order the states table lists them.
_STATE_NOTES = {
    "cancel": "canceled",
    "done": "filled (before the cancel, or before it took effect)",
    "prevented": "canceled by self-match prevention",
    "not_found": "the exchange does not know it",
    "wait": "still open",
    "watch": "still open (a reserved order waiting to trigger)",
}


def states_table(result: BatchResult, *, shown: int = UNRESOLVED_SHOWN) -> Table | None:
    """The final states after confirmation, and the ids still open or unknown."""
    if not result.confirmed or not result.states:
        return None
    counts = Counter(result.states.values())
    rows: list[tuple[str, ...]] = []
    styles: list[str] = []
    for state, note in _STATE_NOTES.items():
        if counts[state]:
            rows.append((state, count(counts[state]), note))
            styles.append("bold red" if state in ("wait", "watch") else "")
    others = sorted(state for state in counts if state is not None and state not in _STATE_NOTES)
    for state in others:
        rows.append((state, count(counts[state]), "as the exchange reports it"))
        styles.append("")
    if counts[None]:
        reasons = Counter(type(error).__name__ for error in result.state_errors.values())
        detail = ", ".join(f"{count(number)} {name}" for name, number in reasons.items())
        rows.append(("unknown", count(counts[None]), f"could not be learned: {detail}"))
        styles.append("bold red")
    if result.recanceled:
        rows.append(
            ("canceled again", count(len(result.recanceled)), "found open, no cancel accepted")
        )
        styles.append("yellow")
    act_on = [*result.still_open, *result.unknown_states]
    more = len(act_on) - shown
    caption = None
    if act_on:
        listed = ", ".join(act_on[:shown])
        caption = f"to check: {listed}" + (f" ... and {count(more)} more" if more > 0 else "")
    return Table(
        title="Final states",
        headers=("", "", ""),
        rows=tuple(rows),
        styles=tuple(styles),
        caption=caption,
    )


def unresolved_breakdown(unresolved: UnresolvedList) -> str:
    """Unresolved ids per reason, such as ``"20 unknown to the exchange, 3 InvalidIdError"``."""
    labels = Counter(
        "unknown to the exchange" if entry.error is None else type(entry.error).__name__
        for entry in unresolved
    )
    return ", ".join(f"{count(number)} {label}" for label, number in labels.items())


def reason(entry: UnresolvedOrder) -> str:
    """Why an id is unresolved, in one line."""
    if entry.error is None:
        return "the exchange answered without mentioning it (it does not know this id)"
    return f"{type(entry.error).__name__}: {entry.error}"


@attrs.frozen
class Table:
    """Rows of text to show as a table; column 0 is a label, the others values."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    #: Columns aligned right (the numbers).
    numeric: frozenset[int] = frozenset({1})
    #: Indexes of rows followed by a rule.
    breaks: frozenset[int] = frozenset()
    #: Rich style of each row (``""``: none); ignored in plain text.
    styles: tuple[str, ...] = ()
    show_header: bool = False
    #: A line under the table.
    caption: str | None = None


def cancel_summary(result: BatchResult, *, given: int, title: str = "Cancel summary") -> Table:
    """The counts of a batch: outcome per id, then requests, 429 answers and time."""
    distinct = result.success.count + result.failed.count + len(result.unresolved)
    duplicates = given - distinct
    rows: list[tuple[str, ...]] = [
        ("success", count(result.success.count), "canceled by this run"),
        (
            "failed",
            count(result.failed.count),
            "refused: already filled or canceled",
        ),
        ("unresolved", count(len(result.unresolved)), unresolved_breakdown(result.unresolved)),
    ]
    styles = [
        "green",
        "yellow" if result.failed.count else "",
        "bold red" if result.unresolved else "",
    ]
    optional = (
        (
            len(result.possibly_canceled),
            "possibly canceled",
            "among failed: an unanswered attempt may have canceled them",
            "yellow",
        ),
        (
            len(result.batch_canceled),
            "by batch cancel",
            "among success: canceled by DELETE /v1/orders/open",
            "",
        ),
        (
            result.batch_unanswered,
            "unanswered batch cancels",
            "each may have canceled orders no answer named",
            "yellow",
        ),
    )
    for number, name, note, style in optional:
        if number:
            rows.append((name, count(number), note))
            styles.append(style)
    ids_note = "distinct" + (f" ({count(duplicates)} duplicates dropped)" if duplicates > 0 else "")
    rows.append(("ids", count(distinct), ids_note))
    styles.append("bold")
    breaks = {len(rows) - 1}
    rows += [
        ("requests", count(result.requests), "retries included"),
        ("429 answers", count(result.rate_limited), "each paused for and retried"),
        ("elapsed", f"{result.elapsed:.2f} s", ""),
    ]
    styles += ["", "bold red" if result.rate_limited else "", ""]
    return Table(
        title=title,
        headers=("", "", ""),
        rows=tuple(rows),
        breaks=frozenset(breaks),
        styles=tuple(styles),
    )


def unresolved_table(unresolved: UnresolvedList, *, shown: int = UNRESOLVED_SHOWN) -> Table | None:
    """The first ``shown`` unresolved ids with their reasons; ``None`` if there are none."""
    if not unresolved:
        return None
    more = len(unresolved) - shown
    return Table(
        title=f"Unresolved ids ({count(len(unresolved))})",
        headers=("id", "reason"),
        rows=tuple((printable(entry.id), reason(entry)) for entry in unresolved[:shown]),
        numeric=frozenset(),
        show_header=True,
        caption=f"... and {count(more)} more (--json lists them all)" if more > 0 else None,
    )


def console(file: TextIO) -> rich.console.Console:
    """A rich console writing to ``file`` (colours only on a terminal), at the terminal's width,
    or at 80 columns when ``COLUMNS`` says something no terminal is (``0``, ``wide``)."""
    from rich.console import Console

    columns = os.environ.get("COLUMNS")
    width = None
    if columns is not None and not (columns.strip().isdigit() and int(columns) >= _NARROWEST):
        width = _FALLBACK_WIDTH
    return Console(file=file, highlight=False, width=width)


def say(text: str, file: TextIO) -> None:
    """Write a paragraph to ``file``, wrapped to the terminal's width when rich is installed."""
    if HAVE_RICH:
        console(file).print(text, markup=False, emoji=False)
    else:
        print(text, file=file)


def render(table: Table, file: TextIO) -> None:
    """Write ``table`` to ``file`` after a blank line: with rich if installed, else as text."""
    print(file=file)
    if HAVE_RICH:
        console(file).print(_rich_table(table))
        return
    print(table.title, file=file)
    widths = [
        max(len(row[column]) for row in (table.headers, *table.rows))
        for column in range(len(table.headers))
    ]
    lines = [table.headers] if table.show_header else []
    for row in (*lines, *table.rows):
        cells = [
            cell.rjust(width) if column in table.numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  " + "  ".join(cells).rstrip(), file=file)
    if table.caption is not None:
        print("  " + table.caption, file=file)


#: The widest a table's first column gets before it folds: a uuid and a little.
_FIRST_COLUMN_WIDTH = 38


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped, as Python writes them."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _rich_table(table: Table) -> rich.table.Table:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    shown = RichTable(
        title=table.title,
        title_justify="left",
        title_style="bold",
        caption=table.caption,
        caption_justify="left",
        box=box.HORIZONTALS,
        show_header=table.show_header,
        show_edge=False,
    )
    for column, header in enumerate(table.headers):
        shown.add_column(
            header,
            justify="right" if column in table.numeric else "left",
            style="bold" if column in table.numeric else None,
            # A label or an id: whole up to a uuid's length, folded beyond, so that a long id
            # cannot squeeze the other columns to a letter a line.
            max_width=_FIRST_COLUMN_WIDTH if column == 0 else None,
            min_width=min(_FIRST_COLUMN_WIDTH, len(header)) if column == 0 else None,
            overflow="fold",
        )
    for index, row in enumerate(table.rows):
        style = table.styles[index] if index < len(table.styles) else ""
        # Text, not str: an id such as "[red]" must be shown as given, not read as markup.
        cells = [Text(cell) for cell in row]
        shown.add_row(*cells, style=style or None, end_section=index in table.breaks)
    return shown


class ProgressBar:
    """A progress bar on standard error, fed by ``BatchCanceller(on_progress=bar.update)``.

    Writes to ``file`` (default: standard error); does nothing when ``enabled`` is false or rich
    is not installed. ``total`` is ``None`` when the number of ids is not known up front (the
    open orders of ``--all-open``).

    Example::

        with ProgressBar(total=len(ids), enabled=True) as bar:
            result = await BatchCanceller(session, on_progress=bar.update).cancel(uuids=ids)
    """

    __slots__ = ("_bar", "_task", "_total")

    def __init__(self, total: int | None, *, enabled: bool, file: TextIO | None = None) -> None:
        self._total = total
        self._bar: rich.progress.Progress | None = None
        self._task: rich.progress.TaskID | None = None
        if enabled and HAVE_RICH:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]Cancelling"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("ids"),
                TextColumn(
                    "[green]{task.fields[success]:,} ok[/] [yellow]{task.fields[failed]:,} "
                    "failed[/] [red]{task.fields[unresolved]:,} unresolved[/] "
                    "{task.fields[requests]:,} requests"
                ),
                TimeElapsedColumn(),
                console=console(sys.stderr if file is None else file),
                # The live display must not swallow the summary printed on stdout.
                redirect_stdout=False,
            )

    def __enter__(self) -> Self:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(
                "cancel", total=self._total, success=0, failed=0, unresolved=0, requests=0
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, progress: Progress) -> None:
        """Show ``progress`` (the ``on_progress`` callback)."""
        if self._bar is None or self._task is None:
            return
        self._bar.update(
            self._task,
            completed=progress.done,
            success=progress.success,
            failed=progress.failed,
            unresolved=progress.unresolved,
            requests=progress.requests,
        )


#: The logger of the account's budget: its warnings (its store out of reach and a fallback share
#: in use, the store back, a lost state) are lines of the commands' own.
BUDGET_LOG = "upbit_cancel.budget"


class _OneLine(logging.Handler):
    """A log record as one line of the command's own on standard error (messages are
    redacted where they are made)."""

    def __init__(self, prog: str, level: int) -> None:
        super().__init__(level)
        self._prog = prog

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())
            print(f"{self._prog}: {text}", file=sys.stderr, flush=True)
        except Exception:  # a message that cannot be shown never ends the run
            self.handleError(record)


@contextlib.contextmanager
def log_lines(prog: str, levels: Mapping[str, int]) -> Iterator[None]:
    """While inside, what each named logger says at its level or above is a line of ``prog``'s
    on standard error (and goes nowhere else)."""
    before = []
    for name, level in levels.items():
        library = logging.getLogger(name)
        handler = _OneLine(prog, level)
        before.append((library, handler, library.level, library.propagate))
        library.addHandler(handler)
        library.setLevel(min(level, library.getEffectiveLevel()))
        library.propagate = False
    try:
        yield
    finally:
        for library, handler, level, propagate in before:
            library.removeHandler(handler)
            library.setLevel(level)
            library.propagate = propagate
