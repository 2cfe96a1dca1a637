"""``python -m upbit_cancel.testing``: run the fake Upbit exchange until interrupted."""

from upbit_cancel.testing._command import main

raise SystemExit(main())
