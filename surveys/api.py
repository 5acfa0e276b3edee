"""HTTP API of the surveys domain (blueprints are listed in ``blueprints``)."""

blueprints: list = []
