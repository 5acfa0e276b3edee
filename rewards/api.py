"""HTTP API of the rewards domain (blueprints are listed in ``blueprints``)."""

blueprints: list = []
