"""Runs every Python example of the documentation and the README against a fake exchange.

Each page is one namespace, in which its examples run in order, as a reader would type them
into ``python -m asyncio``: top-level ``await`` works, and what one example defines the next
can use. Every page starts with:

- a :class:`~upbit_cancel.testing.FakeUpbit` served from its own thread, so that examples may
  also call ``asyncio.run`` themselves;
- every region pointing at that fake, so that ``UpbitSession(..., region="sg")`` reaches it;
- ``access_key`` and ``secret_key``, the fake's key pair, ``other_access_key``,
  ``other_secret_key``, ``third_access_key`` and ``third_secret_key``, more keys of the same
  account, and ``order_ids``, 45 of its open orders: the names the pages use for the reader's
  own.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import os
import shutil
import tempfile
import threading
from typing import Any

from sybil import Example, Sybil
from sybil.parsers.myst import CodeBlockParser

from upbit_cancel import _regions
from upbit_cancel.testing import FakeUpbit

_STATE_DIR = tempfile.mkdtemp(prefix="upbit-cancel-state-")


def pytest_configure(config: object) -> None:
    """The host's budgets of this run in a directory of their own (subprocesses inherit it),
    never in the user's cache."""
    os.environ["UPBIT_CANCEL_STATE_DIR"] = _STATE_DIR


def pytest_unconfigure(config: object) -> None:
    shutil.rmtree(_STATE_DIR, ignore_errors=True)


# Complete programs shown on the pages; tests/test_docs.py runs each as its page describes.
collect_ignore = ["docs/examples", "docs/conf.py"]

_COMPILE_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def _evaluate(example: Example) -> None:
    """Run one example in its page's namespace, on the page's event loop if it awaits."""
    namespace = example.namespace
    source = "\n" * (example.line + example.parsed.line_offset) + example.parsed
    code = compile(source, example.path, "exec", flags=_COMPILE_FLAGS, dont_inherit=True)
    outcome = eval(code, namespace)
    if inspect.iscoroutine(outcome):
        namespace["_page_loop"].run_until_complete(outcome)
    namespace.pop("__builtins__", None)


class _FakeInThread:
    """A FakeUpbit served by an event loop of its own, in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="docs-fake")
        self.fake = FakeUpbit()

    def start(self) -> FakeUpbit:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(timeout=10)
        return self.fake

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def _setup(namespace: dict[str, Any]) -> None:
    server = _FakeInThread()
    fake = server.start()
    regions = dict(_regions.REGIONS)
    assert isinstance(_regions.REGIONS, dict)
    _regions.REGIONS.update(dict.fromkeys(regions, fake.base_url))
    other_access_key, other_secret_key = fake.add_credentials()
    third_access_key, third_secret_key = fake.add_credentials()
    root, library = logging.getLogger(), logging.getLogger("upbit_cancel")
    namespace.update(
        _page_logging=(root.level, list(root.handlers), library.level),
        _page_server=server,
        _page_regions=regions,
        _page_loop=asyncio.new_event_loop(),
        access_key=fake.access_key,
        secret_key=fake.secret_key,
        other_access_key=other_access_key,
        other_secret_key=other_secret_key,
        third_access_key=third_access_key,
        third_secret_key=third_secret_key,
        order_ids=fake.add_orders(45),
    )


def _teardown(namespace: dict[str, Any]) -> None:
    loop: asyncio.AbstractEventLoop = namespace["_page_loop"]
    try:
        pending = asyncio.all_tasks(loop)
        assert not pending, f"an example left tasks running: {pending}"
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
        # A page may configure logging, as its reader would: put it back.
        root, library = logging.getLogger(), logging.getLogger("upbit_cancel")
        root_level, handlers, library_level = namespace["_page_logging"]
        root.setLevel(root_level)
        library.setLevel(library_level)
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        assert isinstance(_regions.REGIONS, dict)
        _regions.REGIONS.update(namespace["_page_regions"])
        namespace["_page_server"].stop()


pytest_collect_file = Sybil(
    parsers=[CodeBlockParser(language="python", evaluator=_evaluate)],
    patterns=["docs/*.md", "docs/recipes/*.md", "README.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
