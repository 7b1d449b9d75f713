"""The ``feature-gates`` command group.

Two ways in, one group:

* ``flask feature-gates ...`` in an application that uses the extension: the
  settings come from the application's ``FEATURE_GATES_*`` configuration.
* the ``feature-gates`` console script, for deploy pipelines and cron: the
  database comes from ``--database-url`` (or ``DATABASE_URL``) and the sets from
  ``--set``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import replace

import click
import psycopg

from .migrate import MigrationError
from .migrate import MigrationSettings
from .migrate import migrate as run_migrate
from .migrate import status as run_status

__all__ = ["cli", "main"]


@dataclass
class CommandContext:
    """What every command needs: where the database is and which sets to work on."""

    database_url: str | None
    settings: MigrationSettings
    url_source: str

    def require_url(self) -> str:
        if not self.database_url:
            raise click.ClickException(f"no database: set {self.url_source} to your PostgreSQL URL")
        return self.database_url

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn the failures a user can fix into one clear line, not a traceback."""
        try:
            yield
        except MigrationError as exc:
            raise click.ClickException(str(exc)) from exc
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise click.ClickException(
                f"cannot reach the database named by {self.url_source}: {reason}"
            ) from exc


def _context_from_flask() -> CommandContext | None:
    from flask import current_app

    if not current_app:
        return None
    state = current_app.extensions.get("feature_gates")
    config = current_app.config
    if state is not None and hasattr(state, "migration_settings"):
        settings = state.migration_settings
    else:
        settings = MigrationSettings(
            sets=tuple(config.get("FEATURE_GATES_MIGRATION_SETS", ("core",))),
            folders=config.get("FEATURE_GATES_MIGRATION_FOLDERS") or None,
            schema=config.get("FEATURE_GATES_SCHEMA", "public"),
            user_id_type=config.get("FEATURE_GATES_USER_ID_TYPE", "bigint"),
        )
    return CommandContext(
        config.get("FEATURE_GATES_DATABASE_URL"), settings, "FEATURE_GATES_DATABASE_URL"
    )


@click.group("feature-gates")
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    help="PostgreSQL URL. Default: the app's FEATURE_GATES_DATABASE_URL, else $DATABASE_URL.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME",
    help="A migration set to work on (repeatable). Default: FEATURE_GATES_MIGRATION_SETS, "
    "else core.",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, sets: tuple[str, ...]) -> None:
    """Migrate and inspect the feature-gates objects in a PostgreSQL database."""
    try:
        command_context = _context_from_flask()
    except RuntimeError:
        command_context = None
    if command_context is None:
        command_context = CommandContext(
            database_url, MigrationSettings(), "--database-url or DATABASE_URL"
        )
    elif database_url:
        command_context.database_url = database_url
    if sets:
        command_context.settings = replace(command_context.settings, sets=sets)
    ctx.obj = command_context


@cli.command()
@click.pass_obj
def migrate(obj: CommandContext) -> None:
    """Apply every pending migration."""
    with obj.errors():
        applied = run_migrate(obj.require_url(), obj.settings)
    for migration in applied:
        click.echo(f"applied {migration.label}")
    if not applied:
        click.echo("nothing to apply: the database is up to date")


@cli.command()
@click.option("--check", is_flag=True, help="Exit 1 when a migration is pending.")
@click.pass_obj
def status(obj: CommandContext, check: bool) -> None:
    """Show applied and pending migrations per set."""
    with obj.errors():
        rows = run_status(obj.require_url(), obj.settings)
    pending = 0
    for migration, applied in rows:
        if applied is None:
            pending += 1
            click.echo(f"pending  {migration.label}")
        else:
            click.echo(f"applied  {migration.label}  {applied.applied_at:%Y-%m-%d %H:%M:%S}")
    if check and pending:
        sys.exit(1)


def main() -> None:
    """Entry point of the ``feature-gates`` console script."""
    cli(prog_name="feature-gates")


# The reports on the gates (routes, usage) live in their own module.
from .reports import routes_command  # noqa: E402
from .reports import usage_command  # noqa: E402

cli.add_command(routes_command)
cli.add_command(usage_command)
