"""The library's logger, ``upbit_cancel``: a library logs, the application decides where.

Every module that logs takes this one; its ``NullHandler`` keeps Python from printing the
library's records when the application configured no logging.
"""

from __future__ import annotations

import logging

__all__ = ["budget_log", "log"]

#: The logger of every record upbit_cancel writes.
log = logging.getLogger("upbit_cancel")
log.addHandler(logging.NullHandler())

#: The records of a budget shared through a store (its fallback, its recovery, a lost state):
#: a child of :data:`log`, so that a program (the command line) can show them apart.
budget_log = logging.getLogger("upbit_cancel.budget")
