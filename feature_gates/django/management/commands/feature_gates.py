"""``python manage.py feature_gates migrate|status|verify|rollback|...``.

The commands of ``flask feature-gates`` and of the ``feature-gates`` console
script: the same click group (:mod:`feature_gates.cli`), run with the project's
``settings.FEATURE_GATES`` as its settings. Everything after ``feature_gates`` is
the group's: ``python manage.py feature_gates migrate --dry-run``,
``python manage.py feature_gates --help``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

import click
from django.core.management.base import BaseCommand
from django.core.management.base import CommandError
from django.core.management.base import CommandParser

from ....core import ConfigError
from ..._project import DjangoProject
from ..._runtime import django_settings
from ..._settings import in_django_words

#: Where the command group is: ``module:attribute``.
GROUP = "feature_gates.cli:cli"


class Command(BaseCommand):
    help = (
        "Migrate, inspect and maintain the feature-gates objects in the project's "
        "PostgreSQL: the commands of the feature-gates CLI (try: feature_gates --help)."
    )
    # The group checks what it uses (FEATURE_GATES) itself; the project's other
    # checks do not stop a migration.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS]...")

    def run_from_argv(self, argv: list[str]) -> None:
        # click parses everything after the command's name, --help included.
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        try:
            code = self._run(argv[2:], prog)
        except click.UsageError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            message = in_django_words(ConfigError(exc.format_message()))
            click.echo(f"Error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except CommandError as exc:
            self.stderr.write(f"CommandError: {exc}")
            sys.exit(1)
        if code:
            sys.exit(code)

    def handle(self, *args: str, **options: Any) -> None:
        # call_command("feature_gates", "migrate", "--dry-run")
        try:
            code = self._run(list(args), "manage.py feature_gates")
        except click.ClickException as exc:
            raise CommandError(str(in_django_words(ConfigError(exc.format_message())))) from exc
        except click.Abort:
            raise CommandError("aborted") from None
        if code:
            raise CommandError(f"feature_gates {' '.join(args)} exited with status {code}")

    def _run(self, args: list[str], prog: str) -> int:
        # Loaded by name, as Flask's app.cli loads it: the adapter never imports it.
        module, _, attribute = GROUP.partition(":")
        cli: click.Group = getattr(importlib.import_module(module), attribute)
        try:
            parsed = django_settings()
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        try:
            project = DjangoProject(parsed.core)
            result = cli.main(args, prog_name=prog, obj=project, standalone_mode=False)
        except SystemExit as exc:  # status --check
            return exc.code if isinstance(exc.code, int) else 1
        return result if isinstance(result, int) else 0
