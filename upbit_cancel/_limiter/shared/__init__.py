"""A budget several processes share through a store: the rules (``rules``), what a store does
(``store``) and the limiter on top (``limiter``). The stores are beside: ``host``, ``redis``."""
