"""The complete programs of the documentation, run the way their pages say, and the site's pages.

The short examples inside the pages run through the root ``conftest.py``; these are the quick
start, the kill switch, the testing recipe and the several-processes recipe, which are files in
``docs/examples/`` that the pages include.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sphinx.util.matching import Matcher

import upbit_cancel
import upbit_cancel.testing
from tests.cli.processes import SCRIPT, Server, serve
from upbit_cancel import instrumentation
from upbit_cancel.instrumentation import opentelemetry, prometheus
from upbit_cancel.testing import FakeUpbit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"


def environment(access_key: str, secret_key: str, base_url: str, **more: str) -> dict[str, str]:
    """The environment the pages tell the reader to set, and nothing of the test run's own."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("UPBIT_", "PYTEST_", "COV_", "COVERAGE_"))
    }
    return {
        **env,
        "PYTHONWARNINGS": "error",
        "UPBIT_ACCESS_KEY": access_key,
        "UPBIT_SECRET_KEY": secret_key,
        "UPBIT_BASE_URL": base_url,
        **more,
    }


async def run(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    """Run a program to its end; its exit status and everything it printed."""
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


@pytest.fixture
async def fake_server(tmp_path: Path) -> AsyncIterator[Server]:
    """``upbit-cancel fake-server --orders 500``, as the quick start runs it."""
    async for server in serve(tmp_path, "--orders", "500"):
        yield server


async def test_the_quick_start_cancels_what_fake_server_seeded(
    fake_server: Server, tmp_path: Path
) -> None:
    """quickstart.py against `upbit-cancel fake-server`: every order canceled."""
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(fake_server.uuids) + "\n")
    env = environment(fake_server.access_key, fake_server.secret_key, fake_server.base_url)
    status, output = await run(sys.executable, str(EXAMPLES / "quickstart.py"), str(ids), env=env)
    assert status == 0, output
    assert output == "500 canceled, 0 refused by the exchange\n"


async def test_the_quick_start_commands_are_the_readme_s() -> None:
    """The two commands of the quick start are the README's, and they name real commands."""
    readme = (ROOT / "README.md").read_text()
    quickstart = (DOCS / "quickstart.md").read_text()
    for command in ("pip install -e '.[cli]'", "upbit-cancel demo"):
        assert command in readme
        assert command in quickstart
    assert SCRIPT.exists()


async def test_the_kill_switch_cancels_everything_on_sigterm() -> None:
    """kill_switch.py: running until SIGTERM, then every open order of its market canceled."""
    async with FakeUpbit(cancel_delay=0.05) as fake:
        mine = fake.add_orders(250, market="SGD-BTC")
        others = fake.add_orders(20, market="SGD-ETH")
        env = environment(fake.access_key, fake.secret_key, fake.base_url)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / "kill_switch.py"),
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stderr is not None
            line = await asyncio.wait_for(process.stderr.readline(), timeout=30)
            assert b"SIGTERM cancels every open order" in line
            assert all(fake.state(uuid) == "wait" for uuid in mine)
            process.send_signal(signal.SIGTERM)
            _, rest = await asyncio.wait_for(process.communicate(), timeout=60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, rest.decode()
        assert b"250 canceled, 0 already closed" in rest
        assert all(fake.state(uuid) == "cancel" for uuid in mine)
        assert all(fake.state(uuid) == "wait" for uuid in others)
        assert fake.max_in_window() <= 30


async def test_the_kill_switch_fires_when_the_strategy_dies() -> None:
    """The strategy's first call meets a 502 and dies: the bot cancels everything, exits 1."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(60, market="SGD-BTC")
        fake.queue_response(502, "<html>502 Bad Gateway</html>", content_type="text/html")
        env = environment(fake.access_key, fake.secret_key, fake.base_url)
        status, output = await run(sys.executable, str(EXAMPLES / "kill_switch.py"), env=env)
        assert status == 1, output
        assert "the strategy failed: ServerError(" in output
        assert "60 canceled, 0 already closed" in output
        assert all(fake.state(uuid) == "cancel" for uuid in uuids)


async def test_the_testing_recipe_passes_in_a_fresh_project(tmp_path: Path) -> None:
    """The recipe's three files alone in an empty directory: `pytest` passes, strict mode."""
    project = tmp_path / "my-bot"
    project.mkdir()
    for name in ("my_bot.py", "test_my_bot.py", "pyproject.toml"):
        shutil.copy(EXAMPLES / "testing" / name, project / name)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "COV_", "COVERAGE_"))
    }
    status, output = await run(
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        env=env,
        cwd=project,
    )
    assert status == 0, output
    assert re.search(r"\b5 passed\b", output), output
    assert re.search(r"asyncio: mode=(Mode\.)?strict", output, flags=re.IGNORECASE), output


async def test_several_processes_share_one_budget(redis_url: str, tmp_path: Path) -> None:
    """Three several_processes.py at once on one account: every order canceled, 30 a second."""
    async with FakeUpbit() as fake:
        uuids = fake.add_orders(1_200)
        env = environment(fake.access_key, fake.secret_key, fake.base_url, REDIS_URL=redis_url)
        files = []
        for index in range(3):
            path = tmp_path / f"ids-{index}.txt"
            path.write_text("\n".join(uuids[index::3]))
            files.append(path)
        outcomes = await asyncio.gather(
            *(
                run(sys.executable, str(EXAMPLES / "several_processes.py"), str(path), env=env)
                for path in files
            )
        )
        for status, output in outcomes:
            assert status == 0, output
            assert output == "400 canceled, 0 unresolved\n"
        assert all(fake.state(uuid) == "cancel" for uuid in uuids)
        assert fake.max_in_window() <= 30
        assert fake.stats()["rejected_429"] == 0


def documented_names(page: str) -> set[str]:
    """The names the API reference documents with an auto* or a py directive."""
    pattern = r"^\.\. (?:auto)?(?:class|exception|data|function)::\s+(upbit_cancel[\w.]*)"
    return set(re.findall(pattern, page, flags=re.MULTILINE))


def test_the_api_reference_documents_every_public_name() -> None:
    page = (DOCS / "api.md").read_text()
    documented = documented_names(page)
    public = {f"upbit_cancel.{name}" for name in upbit_cancel.__all__}
    public |= {f"upbit_cancel.testing.{name}" for name in upbit_cancel.testing.__all__}
    for module in (instrumentation, prometheus, opentelemetry):
        public |= {f"{module.__name__}.{name}" for name in module.__all__}
    assert public - documented == set()
    assert documented - public == set()


def excluded_from_the_site(path: str) -> bool:
    """Whether the docs' ``conf.py`` leaves this file (relative to ``docs/``) out of the site."""
    namespace: dict[str, object] = {}
    exec((DOCS / "conf.py").read_text(), namespace)
    patterns = namespace["exclude_patterns"]
    assert isinstance(patterns, list)
    return bool(Matcher(patterns)(path))


def test_every_page_is_in_the_table_of_contents() -> None:
    index = (DOCS / "index.md").read_text()
    files = [path.relative_to(DOCS).as_posix() for path in DOCS.glob("**/*.md")]
    pages = {name.removesuffix(".md") for name in files if not excluded_from_the_site(name)}
    pages -= {"index"}
    listed = set(re.findall(r"^([\w/-]+)$", index, flags=re.MULTILINE))
    assert pages - listed == set()


def test_a_quick_benchmark_run_leaves_the_site_building() -> None:
    """The quick run's tables (which are in no table of contents) are left out of the site."""
    for written in ("results-quick.md", "results.md", "results-limiter-cost-several.md"):
        assert excluded_from_the_site(f"benchmarks/{written}"), written


def test_the_benchmarks_page_shows_the_committed_plots() -> None:
    page = (DOCS / "benchmarks.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page)
    assert images
    for image in images:
        assert (DOCS / image).is_file(), image
    assert re.search(r"\b20\d\d-\d\d-\d\d", page), "the results are dated"
