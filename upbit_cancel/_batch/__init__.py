"""Every id accounted for: the canceller, one ledger per operation, and confirmation.

``canceller`` starts operations; ``ledger`` owns each operation's ids and counts (``matching``
reads an answer against the ids sent); ``run`` sends the chunks of one run; ``listing`` lists
what is open; ``confirm`` asks what became of each order. Nothing here knows HTTP: requests go
through the session's one internal entry point.
"""
