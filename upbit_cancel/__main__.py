"""``python -m upbit_cancel``: the ``upbit-cancel`` command line."""

from upbit_cancel._cli import console

raise SystemExit(console())
