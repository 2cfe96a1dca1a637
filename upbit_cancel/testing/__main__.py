"""``python -m upbit_cancel.testing``: ``upbit-cancel fake-server`` under its own name.

The command line is the console's (``upbit_cancel._cli``); the fake exchange itself shares no
code with the client it checks.
"""

from upbit_cancel._cli import run_fake_server

raise SystemExit(run_fake_server())
