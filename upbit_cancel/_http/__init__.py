"""Signed requests: the session (the Upbit API of one key) and the transport beneath it.

``session`` checks each call's arguments and names its endpoint; ``transport`` sends it within
its rate-limit group's budget and maps every failure onto the error tree; ``signing`` makes the
JWT; ``answers`` reads the exchange's answers without any I/O. Nothing here knows a batch.
"""
