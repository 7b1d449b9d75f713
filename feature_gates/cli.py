"""The ``feature-gates`` command group.

Two ways in, one group:

* ``flask feature-gates ...`` in an application that uses the extension: the
  settings come from the application's ``FEATURE_GATES_*`` configuration.
* the ``feature-gates`` console script, for deploy pipelines and cron: the
  settings come from options and environment variables: the sets from
  ``--set``, the schema and the user id type from ``--schema`` and
  ``--user-id-type`` (or their ``FEATURE_GATES_*`` environment variables), an
  application's folders from ``--migrations NAME=PATH``.

Either way the database URL is, in this order: ``--database-url``;
``FEATURE_GATES_MIGRATION_DATABASE_URL`` for the commands that work on the
migrations (a direct URL when the application's goes through a connection
pooler); ``FEATURE_GATES_DATABASE_URL``; ``$DATABASE_URL``. Under flask the
``FEATURE_GATES_*`` URLs come from the application's configuration, for the
console script from the environment.

Each command is a thin wrapper over a function of :mod:`feature_gates.migrate` or
:mod:`feature_gates.reports`. Nothing imports this module: ``init_app`` adds a
stand-in for the group to ``app.cli`` that loads it when a command runs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import replace
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any
from typing import Protocol
from typing import runtime_checkable
from urllib.parse import urlsplit
from uuid import UUID

import click
import psycopg
from click.core import ParameterSource
from flask import Flask
from flask import current_app
from flask import has_app_context
from flask.cli import NoAppException
from flask.cli import ScriptInfo
from psycopg.conninfo import conninfo_to_dict

from . import migrate as runner
from .core import USER_ID_TYPES
from .core import ConfigError
from .core import Settings
from .core import StorageError
from .core import StorageUnavailable
from .core import one_line
from .flask import EXTENSION_KEY
from .flask import AppGates
from .migrate import Migration
from .migrate import MigrationError
from .migrate import MigrationSettings
from .migrate import NotOneSession
from .migrate import maintenance
from .migrate.maintenance import MAX_KEEP_DAYS
from .migrate.maintenance import MAX_KEEP_MONTHS
from .reports import GatedView
from .reports import GatesState
from .reports import PlanValue
from .reports import gated_routes
from .reports import routes_of
from .reports import usage_report

__all__ = ["cli", "main"]


#: The URL of the commands that work on the migrations, when it is not the
#: application's own (which may go through a connection pooler).
MIGRATION_URL_KEY = "FEATURE_GATES_MIGRATION_DATABASE_URL"


@runtime_checkable
class Project(Protocol):
    """What an adapter's command passes as the group's object, for a project that
    is no Flask application (Django's ``manage.py feature_gates``)."""

    @property
    def settings(self) -> Settings: ...
    def gated_views(self) -> list[GatedView]: ...
    def gates_state(self) -> GatesState: ...


@dataclass
class CommandContext:
    """What every command needs: where the database is and which sets to work on.

    ``urls`` maps where a URL may come from to its value (None when not set),
    in the order they are tried; ``url_source`` names the one in use once
    :meth:`require_url` has chosen it.
    """

    settings: MigrationSettings
    urls: dict[str, str | None]
    url_source: str = "the database URL"
    #: The console script, not told a user id type: ``migrate`` uses the one
    #: the database recorded, if any.
    follow_recorded_user_id_type: bool = False
    #: Another adapter's project (Django's), when its command runs the group.
    project: Project | None = None

    def require_url(self, *, migration: bool = False) -> str:
        """The database URL, checked for its syntax before anything connects.

        ``migration``: for a command that works on the migrations, which
        prefers ``FEATURE_GATES_MIGRATION_DATABASE_URL``.
        """
        sources = [name for name in self.urls if migration or name != MIGRATION_URL_KEY]
        found = next((name for name in sources if self.urls[name]), None)
        if found is None:
            raise click.ClickException(
                f"no database: set {', '.join(sources[:-1])} or {sources[-1]} "
                "to your PostgreSQL URL"
            )
        url = self.urls[found]
        assert url is not None
        self.url_source = found
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            # psycopg raises ProgrammingError for a conninfo it cannot parse: not
            # the database's answer, the URL's fault.
            reason = _without_password(one_line(exc), url)
            raise click.ClickException(
                f"{found} is not a valid PostgreSQL URL ({reason}); "
                "write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            ) from None
        return url

    def migrate_settings(self, url: str) -> MigrationSettings:
        """The settings for ``migrate``: with the user id type the database
        recorded when :attr:`follow_recorded_user_id_type`."""
        if self.follow_recorded_user_id_type:
            recorded = runner.recorded_user_id_type(url, self.settings)
            if recorded is not None:
                return MigrationSettings.from_config(
                    {"FEATURE_GATES_USER_ID_TYPE": recorded}, base=self.settings
                )
        return self.settings

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn the failures a user can fix into one clear line, not a traceback."""
        try:
            yield
        except NotOneSession as exc:
            raise click.ClickException(exc.explain(self.url_source)) from exc
        except (MigrationError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from exc
        except StorageUnavailable as exc:
            error = exc.error if exc.error is not None else exc
            raise click.ClickException(
                f"cannot reach the database named by {self.url_source}: {one_line(error)}"
            ) from exc
        except StorageError as exc:
            raise click.ClickException(f"the database refused: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise click.ClickException(
                f"cannot reach the database named by {self.url_source}: {one_line(exc)}"
            ) from exc
        except psycopg.Error as exc:
            message = exc.diag.message_primary or one_line(exc)
            hint = f" ({exc.diag.message_hint})" if exc.diag.message_hint else ""
            raise click.ClickException(f"the database refused: {message}{hint}") from exc


def _without_password(message: str, url: str) -> str:
    """``message`` with the URL's password masked: libpq quotes the part of a URL
    it cannot decode, which may be the password, and errors end up in CI logs."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return message.replace(password, "***") if password else message


class _EchoHandler(logging.Handler):
    """Shows the runner's progress and warnings on stderr while a command runs."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def _show_progress() -> None:
    logger = logging.getLogger("feature_gates.migrate")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        logger.addHandler(_EchoHandler())
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def _flask_app(ctx: click.Context) -> Flask | None:
    """The Flask application the group runs under, with its app context pushed;
    None when run as the console script."""
    if current_app:
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        return app
    # `app.cli` invoked directly (FlaskCliRunner, or a group nested in another)
    # has a ScriptInfo but no app context yet.
    info = ctx.find_object(ScriptInfo)
    if info is None:
        return None
    try:
        app = info.load_app()
    except NoAppException:
        return None
    ctx.with_resource(app.app_context())
    return app


def _urls(option: str | None, settings: Mapping[str, Any]) -> dict[str, str | None]:
    """Where the database URL may come from, in order: the option, then the
    ``FEATURE_GATES_*`` URLs of ``settings`` (an application's configuration,
    or the environment), then ``$DATABASE_URL``."""
    return {
        "--database-url": option,
        MIGRATION_URL_KEY: settings.get(MIGRATION_URL_KEY),
        "FEATURE_GATES_DATABASE_URL": settings.get("FEATURE_GATES_DATABASE_URL"),
        "DATABASE_URL": os.environ.get("DATABASE_URL"),
    }


def _context_from_app(ctx: click.Context, database_url: str | None) -> CommandContext | None:
    """The context of the application the group runs in: a Flask application's, or
    the settings an adapter passed as the context's object (Django's
    ``manage.py feature_gates``); None for the console script."""
    if isinstance(ctx.obj, Project):
        context = _context_of(ctx.obj.settings, database_url)
        context.project = ctx.obj
        return context
    app = _flask_app(ctx)
    if app is None:
        return None
    state: AppGates | None = app.extensions.get(EXTENSION_KEY)
    # The application's settings, as its extension parsed them (or would).
    settings = state.settings if state is not None else Settings.from_mapping(app.config)
    return _context_of(settings, database_url)


def _context_of(settings: Settings, database_url: str | None) -> CommandContext:
    urls = {
        MIGRATION_URL_KEY: settings.migration_database_url,
        "FEATURE_GATES_DATABASE_URL": settings.database_url,
    }
    return CommandContext(MigrationSettings.from_settings(settings), _urls(database_url, urls))


def _folders(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``--migrations NAME=PATH`` options as FEATURE_GATES_MIGRATION_FOLDERS."""
    folders = {}
    for value in values:
        name, equals, path = value.partition("=")
        if not (name and equals and path):
            raise click.BadParameter(f"{value!r} is not NAME=PATH (like app=migrations/app)")
        folders[name] = path
    return folders


def _refuse_app_override(ctx: click.Context, field: str, value: str | None, app_value: str) -> None:
    """Under flask, refuse a --schema or --user-id-type other than the app's: its
    gates use that setting at run time, so migrate must install what they use."""
    # The environment variables are the console script's; under flask the
    # application's configuration (which may read them) is what counts.
    if ctx.get_parameter_source(field) is not ParameterSource.COMMANDLINE or value == app_value:
        return
    option, key = "--" + field.replace("_", "-"), "FEATURE_GATES_" + field.upper()
    raise click.ClickException(
        f"{option} {value!r} differs from the application's {key} ({app_value!r}), "
        f"which its gates use: change {key} in its configuration instead"
    )


@click.group("feature-gates")
@click.option(
    "--database-url",
    help="PostgreSQL URL. Default: FEATURE_GATES_MIGRATION_DATABASE_URL (for migrate, status, "
    "rollback, verify, repair-counters and counter add), else FEATURE_GATES_DATABASE_URL "
    "(the app's configuration under flask, else the environment), else $DATABASE_URL.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME",
    help="A migration set to work on (repeatable). Default: FEATURE_GATES_MIGRATION_SETS, "
    "else core.",
)
@click.option(
    "--schema",
    metavar="NAME",
    envvar="FEATURE_GATES_SCHEMA",
    help="Schema of the feature-gates objects. Default: $FEATURE_GATES_SCHEMA, else public "
    "(under flask: the app's FEATURE_GATES_SCHEMA).",
)
@click.option(
    "--user-id-type",
    type=click.Choice(USER_ID_TYPES),
    envvar="FEATURE_GATES_USER_ID_TYPE",
    help="Type of user ids. Default: $FEATURE_GATES_USER_ID_TYPE, else the type the database "
    "recorded at its first migrate, else bigint (under flask: the app's "
    "FEATURE_GATES_USER_ID_TYPE).",
)
@click.option(
    "--migrations",
    "folders",
    multiple=True,
    metavar="NAME=PATH",
    callback=_folders,
    help="An application's migration folder, as set NAME (repeatable); choose it with --set NAME.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    database_url: str | None,
    sets: tuple[str, ...],
    schema: str | None,
    user_id_type: str | None,
    folders: dict[str, str],
) -> None:
    """Migrate, inspect and maintain the feature-gates objects in a PostgreSQL database."""
    try:
        command_context = _context_from_app(ctx, database_url)
    except (MigrationError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    # The options as FEATURE_GATES_* keys, read by the parser the extension uses.
    config: dict[str, Any] = {}
    if command_context is None:
        command_context = CommandContext(MigrationSettings(), _urls(database_url, os.environ))
        # Not told, follow what the database recorded: the type cannot change.
        command_context.follow_recorded_user_id_type = user_id_type is None
        if schema is not None:
            config["FEATURE_GATES_SCHEMA"] = schema
        if user_id_type is not None:
            config["FEATURE_GATES_USER_ID_TYPE"] = user_id_type
    else:
        _refuse_app_override(ctx, "schema", schema, command_context.settings.schema)
        app_type = command_context.settings.user_id_type
        _refuse_app_override(ctx, "user_id_type", user_id_type, app_type)
    if sets:
        config["FEATURE_GATES_MIGRATION_SETS"] = sets
    if folders:
        config["FEATURE_GATES_MIGRATION_FOLDERS"] = {
            **(command_context.settings.folders or {}),
            **folders,
        }
    with command_context.errors():
        command_context.settings = MigrationSettings.from_config(
            config, base=command_context.settings
        )
    _show_progress()
    ctx.obj = command_context


def _command_options(f: Callable[..., None]) -> Callable[..., None]:
    """Pass the :class:`CommandContext`, and accept ``--set`` after the command
    name too (``feature-gates migrate --set counters``)."""

    @functools.wraps(f)
    def command(
        obj: CommandContext, *args: Any, command_sets: tuple[str, ...], **kwargs: Any
    ) -> None:
        if command_sets:
            with obj.errors():
                obj.settings = replace(obj.settings, sets=command_sets)
        f(obj, *args, **kwargs)

    return click.option(
        "--set",
        "command_sets",
        multiple=True,
        metavar="NAME",
        help="A migration set to work on (repeatable); same as the group's --set.",
    )(click.pass_obj(command))  # type: ignore[arg-type]


def _describe(migration: Migration) -> str:
    kinds = sorted({step.kind for step in migration.up_steps})
    how = "one transaction" if kinds == ["transaction"] else "statement by statement"
    if "concurrent" in kinds:
        how += ", builds indexes concurrently"
    if "batched" in kinds:
        how += ", backfills in batches"
    return f"{migration.label}  ({how})"


@cli.command()
@click.option("--dry-run", is_flag=True, help="Show what would be applied; change nothing.")
@click.option("--sql", "as_sql", is_flag=True, help="Print a psql script instead; change nothing.")
@_command_options
def migrate(obj: CommandContext, dry_run: bool, as_sql: bool) -> None:
    """Apply every pending migration."""
    if dry_run and as_sql:
        raise click.UsageError("give --dry-run or --sql, not both")
    with obj.errors():
        url = obj.require_url(migration=True)
        settings = obj.migrate_settings(url)
        if as_sql:
            click.echo(runner.migration_script(url, settings), nl=False)
            return
        if dry_run:
            pending = runner.pending_migrations(url, settings)
            for migration in pending:
                click.echo(f"would apply {_describe(migration)}")
            if not pending:
                click.echo("nothing to apply: the database is up to date")
            return
        applied = runner.migrate(url, settings)
    for migration in applied:
        click.echo(f"applied {migration.label}")
    if not applied:
        click.echo("nothing to apply: the database is up to date")


@cli.command()
@click.option(
    "--check", is_flag=True, help="Exit 1 when a migration is pending or a file was changed."
)
@_command_options
def status(obj: CommandContext, check: bool) -> None:
    """Show applied and pending migrations per set."""
    with obj.errors():
        url = obj.require_url(migration=True)
        rows = runner.status(url, obj.settings)
        holder = runner.migration_lock_holder(url, obj.settings)
    for row in rows:
        when, other = "", ""
        if row.applied is not None:
            when = f"  {row.applied.applied_at:%Y-%m-%d %H:%M:%S}"
            if not row.selected:
                other = f"  (set not selected: --set {row.applied.set_name})"
        click.echo(f"{row.state:<8} {row.label}{when}{other}")
    if holder is not None:
        click.echo(f"migration lock: held by {holder}; {holder.how_to_clear}")
    with obj.errors():
        runner.refuse_changed(rows)
    if check and any(row.state != "applied" for row in rows if row.selected):
        sys.exit(1)


@cli.command()
@click.option("--to", "to", metavar="VERSION", help="Keep VERSION (SET/VERSION or VERSION).")
@click.option("--all", "everything", is_flag=True, help="Roll back every applied migration.")
@click.option("--dry-run", is_flag=True, help="Show what would be rolled back; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_command_options
def rollback(
    obj: CommandContext, to: str | None, everything: bool, dry_run: bool, yes: bool
) -> None:
    """Run rollback files, newest first (the last migration unless --to or --all)."""

    declined = False

    def confirm(targets: list[Migration]) -> bool:
        nonlocal declined
        _show_rollback(targets, "will roll back")
        declined = not (
            yes
            or click.confirm(
                f"Roll back {len(targets)} migration(s), losing the data described above?",
                default=False,
            )
        )
        return not declined

    with obj.errors():
        url = obj.require_url(migration=True)
        if dry_run:
            targets = runner.rollback(url, obj.settings, to=to, everything=everything, dry_run=True)
            _show_rollback(targets, "would roll back")
        else:
            targets = runner.rollback(
                url, obj.settings, to=to, everything=everything, confirm=confirm
            )
            for migration in targets:
                click.echo(f"rolled back {migration.label}")
    if not targets:
        click.echo("nothing rolled back" if declined else "nothing to roll back")


def _show_rollback(targets: list[Migration], verb: str) -> None:
    for migration in targets:
        click.echo(f"{verb} {migration.label}: {migration.rollback_effect}")


@cli.command()
@_command_options
def verify(obj: CommandContext) -> None:
    """Audit the database: counters vs truth, indexes valid, functions present."""
    with obj.errors():
        problems = runner.verify(obj.require_url(migration=True), obj.settings)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        click.echo(f"{len(problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(f"ok: {', '.join(obj.settings.sets)} as the migrations left them")


@cli.command("repair-counters")
@click.option("--dry-run", is_flag=True, help="Count the drifted rows; change nothing.")
@_command_options
def repair_counters(obj: CommandContext, dry_run: bool) -> None:
    """Recompute drifted counter columns, in batches."""
    with obj.errors():
        url = obj.require_url(migration=True)
        result = runner.repair_counters(url, obj.settings, dry_run=dry_run)
    verb = "differ from the truth" if dry_run else "fixed"
    for counter, rows in result.items():
        click.echo(f"{counter}: {rows} rows {verb}")


@cli.group()
def counter() -> None:
    """Counter columns on your own tables (docs/counters.md)."""


@counter.command("add")
@click.argument("target", metavar="TABLE.COLUMN")
@click.option(
    "--rows",
    metavar="CHILD_TABLE.FK_COLUMN",
    help="Count the child table's rows whose FK_COLUMN holds the row's key.",
)
@click.option(
    "--where",
    metavar="SQL_PREDICATE",
    help="With --rows: count only the child rows it accepts (deleted_at IS NULL).",
)
@click.option(
    "--jsonb-length",
    metavar="JSONB_COLUMN.KEY[.KEY...]",
    help="Count the elements of the JSON array at that path of the row's jsonb column.",
)
@click.option(
    "--index",
    metavar='"(COLUMN, ...)"',
    help='Build an index on these columns concurrently, like "(user_id, COLUMN)". Default: none.',
)
@click.option("--index-name", metavar="NAME", help="The index's name. Default: idx_TABLE_COLUMN.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="The application's migration folder; the files are numbered after its versions.",
)
@click.pass_obj
def counter_add(
    obj: CommandContext,
    target: str,
    rows: str | None,
    where: str | None,
    jsonb_length: str | None,
    index: str | None,
    index_name: str | None,
    out: str,
) -> None:
    """Write the migrations that add the counter column TABLE.COLUMN.

    The database is read (never changed) to check the tables and columns named.
    """
    definition = runner.CounterDefinition(target, rows, where, jsonb_length, index, index_name)
    with obj.errors():
        written = runner.add_counter(obj.require_url(migration=True), definition, out, obj.settings)
    for warning in written.warnings:
        click.echo(f"warning: {warning}", err=True)
    for path in written.files:
        click.echo(f"wrote {path}")
    click.echo(
        f"{written.counter}: review the files, then apply them with your set "
        "(--migrations NAME=DIR, after core) and migrate"
    )


@cli.command()
@click.option(
    "--keep-months",
    type=click.IntRange(min=0, max=MAX_KEEP_MONTHS),
    default=6,
    show_default=True,
    help="Months kept in feature_usage besides the current one.",
)
@_command_options
def archive(obj: CommandContext, keep_months: int) -> None:
    """Move old usage rows into feature_usage_archive (for cron)."""
    with obj.errors():
        result = runner.archive(obj.require_url(), obj.settings, keep_months=keep_months)
    click.echo(
        f"archived {result.moved} rows of periods before {result.kept_from:%Y-%m-%d} "
        "into feature_usage_archive"
    )
    click.echo(
        f"archived {result.alerts} delivered or dead alerts from before "
        f"{result.kept_from:%Y-%m-%d} into feature_usage_alerts_archive"
    )


@cli.command()
@_command_options
def refresh(obj: CommandContext) -> None:
    """Refresh the feature_usage_summary view (for cron)."""
    with obj.errors():
        rows = runner.refresh(obj.require_url(), obj.settings)
    click.echo(f"refreshed feature_usage_summary: {rows} rows")


@cli.command()
@click.option(
    "--keep-days",
    type=click.IntRange(min=1, max=MAX_KEEP_DAYS),
    default=30,
    show_default=True,
    help="Days an idempotency key counts once.",
)
@_command_options
def prune(obj: CommandContext, keep_days: int) -> None:
    """Delete old idempotency keys and batch records, and rolling windows that
    count nothing any more (for cron)."""
    with obj.errors():
        rows = runner.prune(obj.require_url(), obj.settings, keep_days=keep_days)
        windows = runner.prune_windows(obj.require_url(), obj.settings)
    click.echo(f"pruned {rows} idempotency keys and batch records older than {keep_days} days")
    click.echo(f"pruned {windows} rolling windows whose every use had left them")


@cli.command("close-periods")
@_command_options
def close_periods(obj: CommandContext) -> None:
    """Carry the unused allowance of every ended period into the next one, for the
    features that roll over (for cron; running it again changes nothing)."""
    state = _app_state()[1]
    if state is None:
        raise click.ClickException(
            "close-periods needs the plans of an application that uses FeatureGates"
        )
    with obj.errors():
        periods, credits = state.engine.close_periods()
    click.echo(f"carried {credits} unused uses of {periods} ended periods into the next ones")


@cli.command()
@_command_options
def audit(obj: CommandContext) -> None:
    """Recompute every grant's balance and every count's draws on grants from the
    ledger; exit 1 naming the rows that differ."""
    with obj.errors():
        problems = runner.audit_credits(obj.require_url(), obj.settings)
    if not problems:
        click.echo("audit: every balance and count agrees with the ledger")
        return
    for problem in problems:
        click.echo(problem)
    raise click.ClickException(f"audit: {len(problems)} differences with the ledger")


@cli.group(invoke_without_command=True)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1),
    help="How many alerts to list, the most recent first.",
)
@click.option(
    "--since",
    type=click.DateTime(),
    help="Only alerts that occurred at or after this time (UTC).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def alerts(ctx: click.Context, limit: int, since: datetime | None, as_json: bool) -> None:
    """List recent usage alerts and how their delivery stands; count them by state."""
    if ctx.invoked_subcommand is not None:
        return
    obj: CommandContext = ctx.obj
    since = None if since is None else since.replace(tzinfo=timezone.utc)
    with obj.errors():
        found = maintenance.recent_alerts(obj.require_url(), obj.settings, limit=limit, since=since)
        counts = maintenance.alert_counts(obj.require_url(), obj.settings)
    if as_json:
        data = {"counts": asdict(counts), "alerts": [asdict(alert) for alert in found]}
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(
        f"alerts: {counts.pending} pending, {counts.sent} sent, {counts.retried} retried, "
        f"{counts.dead} dead"
    )
    if not found:
        click.echo("no alerts recorded")
        return
    rows = [
        [
            str(alert.event_id),
            f"{alert.occurred_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}",
            alert.subject if alert.member is None else f"{alert.subject}/{alert.member}",
            alert.scope,
            alert.feature,
            f"{alert.threshold:%}",
            f"{alert.used}/{alert.limit}",
            alert.state,
            str(alert.attempts),
            alert.last_error or "",
        ]
        for alert in found
    ]
    _table(
        [
            "id",
            "occurred (UTC)",
            "subject",
            "scope",
            "feature",
            "threshold",
            "used",
            "state",
            "attempts",
            "last error",
        ],
        rows,
    )


@alerts.command("replay")
@click.option(
    "--id",
    "event_ids",
    multiple=True,
    type=click.UUID,
    help="The event id of an alert to send again (repeat for more).",
)
@click.option(
    "--since",
    type=click.DateTime(),
    help="Send again every alert that occurred at or after this time (UTC).",
)
@click.pass_obj
def alerts_replay(obj: CommandContext, event_ids: tuple[UUID, ...], since: datetime | None) -> None:
    """Send alerts again (signal and webhook, under the same event ids): the running
    applications' senders deliver them."""
    if not event_ids and since is None:
        raise click.UsageError("name the alerts to send again: --id <event id> or --since <time>")
    since = None if since is None else since.replace(tzinfo=timezone.utc)
    with obj.errors():
        replayed = maintenance.replay_alerts(
            obj.require_url(), obj.settings, event_ids=event_ids, since=since
        )
    click.echo(f"{replayed} alerts will be sent again")


@cli.command("dev-db")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".feature-gates-db",
    show_default=True,
    help="The server's data folder: made at the first start, kept afterwards.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=54320,
    show_default=True,
    help="The port on 127.0.0.1 (beside a system PostgreSQL's 5432).",
)
def dev_db(data_dir: Path, port: int) -> None:
    """Run a PostgreSQL for development until Ctrl-C, and print its URL."""
    from .devdb import DevDatabase

    try:
        database = DevDatabase(data_dir, port)
    except RuntimeError as exc:  # no server binaries (of the data's version)
        raise click.ClickException(str(exc)) from exc

    def started(version: str) -> None:
        click.echo(
            f"PostgreSQL {version} runs on 127.0.0.1:{port}, its data in {database.data_dir}\n"
            "For development only: every local account may connect without a password.\n"
            "Use it from your application's shell:\n\n"
            f"    export DATABASE_URL={database.url}\n\n"
            "Ctrl-C stops it; the data stays, and the same command starts it again."
        )

    try:
        database.run(started)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"stopped; the data stays in {database.data_dir}")


def main() -> None:
    """Entry point of the ``feature-gates`` console script."""
    cli(prog_name="feature-gates")


# -- reports on the gates ------------------------------------------------------------------


def _show(value: PlanValue) -> str:
    if value is True:
        return "yes"
    if value is False or value == 0:
        return "no"
    return "unlimited" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _app_state() -> tuple[Flask, AppGates | None]:
    """The application the command runs in, and its feature-gates (None without)."""
    if not has_app_context():
        raise click.ClickException(
            "this command reads a Flask application's gates: run it as "
            "'flask --app yourapp feature-gates ...'"
        )
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app, app.extensions.get(EXTENSION_KEY)


@cli.command("routes")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def routes_command(obj: CommandContext, as_json: bool) -> None:
    """List every gated endpoint with its feature, kind and limit per plan."""
    with obj.errors():
        if obj.project is not None:
            state = obj.project.gates_state()
            found = routes_of(state.catalogue, obj.project.gated_views())
        else:
            found = gated_routes(_app_state()[0])
    if as_json:
        click.echo(json.dumps([asdict(route) for route in found], indent=2))
        return
    if not found:
        click.echo("no gated endpoints")
        return
    plans = list(found[0].plans)
    rows = [
        [
            route.rule,
            ",".join(route.methods),
            route.endpoint,
            route.kind if route.min_tier is None else f"tier>={route.min_tier}",
            route.feature,
            *(_show(route.plans[plan]) for plan in plans),
        ]
        for route in found
    ]
    _table(["rule", "methods", "endpoint", "kind", "feature", *plans], rows)


@cli.command("usage")
@click.option(
    "--top",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="How many features to list.",
)
@click.option(
    "--near-limit",
    "near_limit",
    type=click.FloatRange(0, min_open=True),
    metavar="PCT",
    help="Also list users at or above PCT% of their plan's limit of a feature.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_obj
def usage_command(obj: CommandContext, top: int, near_limit: float | None, as_json: bool) -> None:
    """Show this month's most used features, and users near their limits.

    --near-limit needs the plans: run it as 'flask feature-gates usage'.
    """
    state: GatesState | None = _app_state()[1] if has_app_context() else None
    if obj.project is not None:
        with obj.errors():
            state = obj.project.gates_state()
    if near_limit is not None and state is None:
        raise click.ClickException(
            "--near-limit needs the plans of an application that uses FeatureGates: run "
            "it as 'flask --app yourapp feature-gates usage --near-limit PCT'"
        )
    with obj.errors():
        report = usage_report(
            obj.require_url(),
            state=state,
            top=top,
            near_limit=near_limit,
            schema=obj.settings.schema,
        )
    if as_json:
        data = {
            "period_start": report.period_start.isoformat(),
            "top": [{"feature": f, "uses": u, "users": n} for f, u, n in report.top],
            "near_limit": [asdict(n) for n in report.near_limit],
        }
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(f"usage since {report.period_start.isoformat()}")
    if report.top:
        _table(["feature", "uses", "users"], [[f, str(u), str(n)] for f, u, n in report.top])
    else:
        click.echo("no usage recorded this month")
    if near_limit is not None:
        click.echo("")
        click.echo(f"users at or above {near_limit:g}% of their limit")
        rows = [
            [str(n.user_id), n.plan, n.feature, str(n.used), str(n.limit), f"{n.percent:.0f}%"]
            for n in report.near_limit
        ]
        if rows:
            _table(["user", "plan", "feature", "used", "limit", "share"], rows)
        else:
            click.echo("none")
