"""The dead man's switch: the bot's heartbeat, and the watchdog that cancels every open order
once the heartbeat stops (Upbit has no cancel-on-disconnect of its own).

``beat``: the heartbeat's value and the watchdog's rule (pure). ``places``: where a heartbeat
lives, a file of the host or a Redis key, behind one small contract. ``heartbeat``: the bot's
side, :class:`Heartbeat`. ``watchdog``: :func:`watch` and its outcome.
"""
