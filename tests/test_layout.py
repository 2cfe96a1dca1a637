"""The package's rooms depend on each other one way only, and its pure modules do no I/O.

A small core (errors, models, ids, argument checks) depends on nothing else; then the budget
(``_limiter``), signed requests (``_http``), every id accounted for (``_batch``), the dead man's
switch (``_watch``) and the console (``_cli``), each depending only on the rooms before it. The
fake exchange (``testing``) shares no code with the client it checks; the ready-made instruments
(``instrumentation``) read the core's events (and the budget's groups).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "upbit_cancel"

#: Each room, and the rooms it may import from (besides itself).
ALLOWED = {
    "core": set(),
    "_limiter": {"core"},
    "_http": {"core", "_limiter"},
    "_batch": {"core", "_limiter", "_http"},
    "_watch": {"core", "_limiter", "_http", "_batch"},
    "_cli": {"core", "_limiter", "_http", "_batch", "_watch", "testing"},
    "testing": set(),
    "instrumentation": {"core", "_limiter"},
}

#: Modules that decide without I/O: no event loop, no network, no clock of their own.
PURE = [
    "_errors.py",
    "_ids.py",
    "_models.py",
    "_check.py",
    "_redact.py",
    "_instrument.py",
    "_limiter/core.py",
    "_limiter/feedback.py",
    "_limiter/hold.py",
    "_limiter/path.py",
    "_http/answers.py",
    "_batch/ledger.py",
    "_batch/matching.py",
    "_watch/beat.py",
]
IO_MODULES = {"asyncio", "aiohttp", "socket", "redis", "time", "sqlite3"}


def room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else "core"


def imported(path: Path) -> set[str]:
    """Absolute names of the package's modules and of other packages that ``path`` imports."""
    tree = ast.parse(path.read_text())
    package = ["upbit_cancel", *path.relative_to(PACKAGE).parent.parts]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
    return names


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "upbit_cancel" or len(parts) == 1:
        return None
    target = PACKAGE.joinpath(*parts[1:])
    if target.is_dir() or (target.with_suffix(".py").exists() and len(parts) > 2):
        return parts[1]
    return "core" if target.with_suffix(".py").exists() else None


MODULES = sorted(
    path for path in PACKAGE.rglob("*.py") if path.name not in ("__init__.py", "__main__.py")
)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_each_room_imports_only_the_rooms_before_it(path: Path) -> None:
    """Dependencies point down the list of rooms, never back."""
    own = room(path)
    for module in imported(path):
        other = room_of(module)
        if other is not None and other != own:
            assert other in ALLOWED[own], f"{path.name} ({own}) imports {module} ({other})"


@pytest.mark.parametrize("name", PURE)
def test_pure_modules_do_no_io(name: str) -> None:
    """Decided without I/O: tested without an event loop."""
    roots = {module.split(".")[0] for module in imported(PACKAGE / name)}
    assert not roots & IO_MODULES


@pytest.mark.parametrize("folder", ["_batch", "_limiter"])
def test_nothing_but_the_transport_knows_aiohttp(folder: str) -> None:
    """The batch and the budget never see an HTTP library's types."""
    for path in (PACKAGE / folder).rglob("*.py"):
        assert "aiohttp" not in {module.split(".")[0] for module in imported(path)}, path
