"""The migration runner: discovery, history, locking, apply."""

from __future__ import annotations

from .runner import AppliedMigration as AppliedMigration
from .runner import MigrationSettings as MigrationSettings
from .runner import applied_migrations as applied_migrations
from .runner import migrate as migrate
from .runner import status as status
from .sources import BUNDLED_SETS as BUNDLED_SETS
from .sources import Migration as Migration
from .sources import MigrationError as MigrationError

__all__ = [
    "BUNDLED_SETS",
    "AppliedMigration",
    "Migration",
    "MigrationError",
    "MigrationSettings",
    "applied_migrations",
    "migrate",
    "status",
]
