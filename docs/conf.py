"""Sphinx configuration: Markdown pages (MyST), the API reference from docstrings, furo."""

from importlib.metadata import version as _version
from typing import Any

project = "upbit_cancel"
author = "upbit_cancel developers"
copyright = "2026, upbit_cancel developers"
release = _version("upbit-cancel")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
# The benchmarks' full tables are linked from benchmarks.md, not a page of their own; a quick run
# (``python -m benchmarks --quick``) or of some sections (``--only``) writes its own files beside
# them, never part of the site.
exclude_patterns = [
    "_build",
    "benchmarks/results.md",
    "benchmarks/lanes.md",
    "benchmarks/push.md",
    "benchmarks/watchdog.md",
    "benchmarks/warm.md",
    "benchmarks/instruments.md",
    "benchmarks/results-*",
    "benchmarks/*-quick.*",
]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Types for the documented parameters only; no "Return type: None" under every class.
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
# The version in the sidebar, above the table of contents.
html_title = f"upbit_cancel {release}"
html_static_path = ["_static"]
# Code wraps, wide tables scroll, the text takes the room of a hidden table of contents.
html_css_files = ["custom.css"]

# Fences without a language are plain text (trees, terminal output).
highlight_language = "text"


def _no_attrs_sentinel(
    app: object,
    what: str,
    name: str,
    obj: object,
    options: object,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None]:
    """attrs fields made by a factory show their default as ``...``, not ``NOTHING``."""
    if signature is not None:
        signature = signature.replace("=NOTHING", "=...")
    return signature, return_annotation


def setup(app: Any) -> None:
    app.connect("autodoc-process-signature", _no_attrs_sentinel)
