"""HTTP API of the points domain (blueprints are listed in ``blueprints``)."""

blueprints: list = []
