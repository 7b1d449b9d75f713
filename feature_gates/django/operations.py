"""A Django migration operation that runs feature-gates' own migrations.

For teams that want ``manage.py migrate`` to install feature-gates' objects too.
The SQL is not turned into Django migrations: the runner applies it (lock
timeouts with retries, ``CREATE INDEX CONCURRENTLY`` outside a transaction,
backfills in batches, a checksummed history), so the operation calls the runner
on the database the migration runs on, and the Django migration that holds it
must not be atomic:

.. code-block:: python

    from django.db import migrations
    from feature_gates.django.operations import MigrateFeatureGates

    class Migration(migrations.Migration):
        atomic = False
        dependencies = [("myapp", "0001_initial")]
        operations = [MigrateFeatureGates()]
"""

from __future__ import annotations

from typing import Any

from django.db.migrations.operations.base import Operation

from ..core import ConfigError
from ._runtime import django_settings

__all__ = ["MigrateFeatureGates", "connection_url", "migrate_connection"]

#: OPTIONS of Django's PostgreSQL backend that are no libpq parameters.
_DJANGO_OPTIONS = frozenset(
    {"isolation_level", "server_side_binding", "pool", "assume_role", "cursor_factory", "context"}
)


def connection_url(connection: Any) -> str:
    """A libpq connection string for the database of a Django connection."""
    from psycopg.conninfo import make_conninfo

    params = connection.settings_dict
    values: dict[str, Any] = {
        "dbname": params.get("NAME"),
        "user": params.get("USER"),
        "password": params.get("PASSWORD"),
        "host": params.get("HOST"),
        "port": params.get("PORT"),
    }
    for key, value in (params.get("OPTIONS") or {}).items():
        if key not in _DJANGO_OPTIONS and isinstance(value, (str, int)):
            values[key] = value
    return make_conninfo(**{k: v for k, v in values.items() if v not in (None, "")})


def migrate_connection(connection: Any, sets: list[str] | None = None) -> None:
    """Apply feature-gates' pending migrations (``sets``, else
    ``FEATURE_GATES["MIGRATION_SETS"]``) on the database of a Django connection."""
    from ..migrate import MigrationSettings
    from ..migrate import migrate

    settings = MigrationSettings.from_settings(django_settings().core)
    if sets is not None:
        settings = MigrationSettings.from_config(
            {"FEATURE_GATES_MIGRATION_SETS": sets}, base=settings
        )
    migrate(connection_url(connection), settings)


class MigrateFeatureGates(Operation):
    """Apply feature-gates' pending migrations (``FEATURE_GATES["MIGRATION_SETS"]``)
    with its runner, on the database ``manage.py migrate`` migrates."""

    reversible = False
    reduces_to_sql = False
    elidable = False

    def __init__(self, *, sets: list[str] | None = None) -> None:
        self.sets = sets

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs = {} if self.sets is None else {"sets": self.sets}
        return type(self).__qualname__, [], kwargs

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # no Django model changes

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        connection = schema_editor.connection
        if schema_editor.collect_sql:
            schema_editor.collected_sql.append(
                "-- feature-gates: python manage.py feature_gates migrate --sql"
            )
            return
        if connection.vendor != "postgresql":
            raise ConfigError(
                f"MigrateFeatureGates runs on PostgreSQL; database {connection.alias!r} is "
                f"{connection.vendor}"
            )
        if schema_editor.atomic_migration:
            raise ConfigError(
                "MigrateFeatureGates needs a migration that is not atomic: set atomic = False "
                "on its Migration class (the runner builds indexes concurrently and takes "
                "its own locks)"
            )
        migrate_connection(connection, self.sets)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        raise NotImplementedError  # reversible = False: Django refuses before this

    def describe(self) -> str:
        return "Apply feature-gates' migrations with its runner"
