"""HTTP API of the points domain (blueprints are listed in ``blueprints``)."""

from . import models  # noqa: F401  (registers the tables)

blueprints: list = []
