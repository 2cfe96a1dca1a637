"""The console: the ``upbit-cancel`` command (``main``), what it shows (``output``) and its demo."""

from .main import main

__all__ = ["main"]
