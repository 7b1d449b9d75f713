"""The ``feature-gates`` command group on ``app.cli``, loaded when a command runs.

The group lives in :mod:`feature_gates.cli`, which imports the runner, the reports
and this adapter; the adapter never imports it. ``init_app`` adds this stand-in
under FEATURE_GATES_COMMAND_NAME, and it loads the group by its module's name the
first time a command of it runs, as Flask loads the commands of its
``flask.commands`` entry points: an application that never runs a command never
loads the runner.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["DeferredGroup"]

#: Where the real group is: ``module:attribute``.
GROUP = "feature_gates.cli:cli"


class DeferredGroup(click.Group):
    """Stands for the command group until one of its commands runs."""

    def __init__(self, name: str) -> None:
        super().__init__(
            name,
            help="Migrate, inspect and maintain the feature-gates objects in a PostgreSQL "
            "database.",
        )

    @staticmethod
    def load() -> click.Group:
        """The real group (imported on first use)."""
        module, _, attribute = GROUP.partition(":")
        group: click.Group = getattr(importlib.import_module(module), attribute)
        return group

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # The context of the real group: its options, its commands, its callback.
        return self.load().make_context(info_name, args, parent=parent, **extra)
