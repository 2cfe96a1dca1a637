"""Sphinx configuration: Markdown pages (MyST), the API reference from docstrings, furo."""

from importlib.metadata import version as _version

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
exclude_patterns = ["_build", "benchmarks/results.md"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = "upbit_cancel"
html_static_path: list[str] = []

# Fences without a language are plain text (trees, terminal output).
highlight_language = "text"
