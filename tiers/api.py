"""HTTP API of the tiers domain (blueprints are listed in ``blueprints``)."""

blueprints: list = []
