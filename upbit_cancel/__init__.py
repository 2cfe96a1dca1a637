"""Cancel any number of Upbit orders as fast as the exchange allows, without tripping its limiter."""

__all__: list[str] = []
