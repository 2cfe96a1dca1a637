"""The account's request budget: one limiter per rate-limit group, whatever stores its slots.

``contract`` says what a limiter promises and what the session tells it; ``core`` holds the
rules every backend applies (settings, the hold, the feedback, the path); ``window`` keeps the
slots in this process, ``bucket`` adapts ``aiolimiter``, ``redis`` keeps them in Redis;
``registry`` decides which limiter a session of a key uses. Nothing here knows HTTP or orders.
"""
