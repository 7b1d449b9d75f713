"""The migration runner: discovery, history, locking, apply, rollback, verify."""

from __future__ import annotations

from .audit import Problem as Problem
from .audit import repair_counters as repair_counters
from .audit import verify as verify
from .generate import CounterDefinition as CounterDefinition
from .generate import CounterSet as CounterSet
from .generate import add_counter as add_counter
from .lock import LockHolder as LockHolder
from .lock import NotOneSession as NotOneSession
from .maintenance import ArchiveResult as ArchiveResult
from .maintenance import archive as archive
from .maintenance import audit_credits as audit_credits
from .maintenance import prune as prune
from .maintenance import prune_windows as prune_windows
from .maintenance import refresh as refresh
from .runner import AppliedMigration as AppliedMigration
from .runner import MigrationStatus as MigrationStatus
from .runner import applied_migrations as applied_migrations
from .runner import migrate as migrate
from .runner import migration_lock_holder as migration_lock_holder
from .runner import pending_migrations as pending_migrations
from .runner import recorded_user_id_type as recorded_user_id_type
from .runner import refuse_changed as refuse_changed
from .runner import rollback as rollback
from .runner import status as status
from .script import migration_script as migration_script
from .settings import MigrationSettings as MigrationSettings
from .sources import BUNDLED_SETS as BUNDLED_SETS
from .sources import Migration as Migration
from .sources import MigrationError as MigrationError

__all__ = [
    "BUNDLED_SETS",
    "AppliedMigration",
    "ArchiveResult",
    "CounterDefinition",
    "CounterSet",
    "LockHolder",
    "Migration",
    "MigrationError",
    "MigrationSettings",
    "MigrationStatus",
    "NotOneSession",
    "Problem",
    "add_counter",
    "applied_migrations",
    "archive",
    "migrate",
    "migration_lock_holder",
    "migration_script",
    "pending_migrations",
    "prune",
    "prune_windows",
    "audit_credits",
    "recorded_user_id_type",
    "refresh",
    "refuse_changed",
    "repair_counters",
    "rollback",
    "status",
    "verify",
]
