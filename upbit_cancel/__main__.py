"""``python -m upbit_cancel``: the ``upbit-cancel`` command line."""

from upbit_cancel._cli import main

raise SystemExit(main())
