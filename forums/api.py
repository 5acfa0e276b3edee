"""HTTP API of the forums domain (blueprints are listed in ``blueprints``)."""

blueprints: list = []
